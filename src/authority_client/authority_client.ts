/**
 * A member's side of the credential authority: enroll, fetch and refresh
 * credentials, follow the revocation list, all over one secure channel.
 * Used by edges, gateways and relays (and by tests).
 *
 * The authority is recognised by its identifier (pinned from the trust
 * anchor, the authority's identity file); it holds no credential about
 * itself. When it presents a newer change history (after a key rotation)
 * that extends the anchor, the client's trust store takes it, so
 * credentials signed by the new key verify (docs/design.md §3).
 *
 * @module
 */
import { type Credential, verifyCredential } from "../credential/credential.ts";
import { type RevocationList, verifyRevocationList } from "../credential/revocation.ts";
import type { TrustStore } from "../credential/trust_store.ts";
import { AuthorityError, HandshakeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Node } from "../routing/node.ts";
import type { Address, Route } from "../routing/routed_message.ts";
import { type SecureChannel } from "../channel/secure_channel.ts";
import { type ChannelIdentity } from "../channel/channel_identity.ts";
import { connectSecureChannel } from "../channel/handshake.ts";
import {
  AUTHORITY_API,
  AUTHORITY_LISTENER,
  type AuthorityOp,
  type AuthorityReply,
  decodeReply,
  encodeRequest,
} from "./protocol.ts";

/** Options for {@link AuthorityClient.connect}. */
export interface AuthorityClientOptions {
  /** The node the channel and the client's reply worker (`authc.<hex>`) are registered on. */
  node: Node;
  /** Route to the authority's node, e.g. `[connection address]`. */
  route: Route;
  /** This member's channel identity: its identity and an attested static key. */
  local: ChannelIdentity;
  /** Trust store holding the authority's identity (updated on rotation). */
  trust: TrustStore;
  /** The authority's identifier (default: every identifier in `trust`). */
  authority?: string;
  /** Milliseconds to wait for a reply (default 10,000). */
  timeoutMs?: number;
  /** For the secure channel's logs; default silent. */
  logger?: Logger;
}

/** Called with each revocation list the authority pushes (verified). */
export type RevocationListener = (list: RevocationList) => void | Promise<void>;

/** A connection to the credential authority. */
export class AuthorityClient {
  /** The secure channel to the authority; its peer is the verified authority. */
  readonly channel: SecureChannel;
  #trust: TrustStore;
  #address: Address;
  #nextId = 1;
  #pending = new Map<number, PromiseWithResolvers<AuthorityReply>>();
  #timeoutMs: number;
  #listeners = new Set<RevocationListener>();
  #subject: string;
  #subjectKey: Uint8Array;

  private constructor(
    node: Node,
    channel: SecureChannel,
    trust: TrustStore,
    timeoutMs: number,
    subject: { identifier: string; primaryKey: Uint8Array },
  ) {
    this.#subject = subject.identifier;
    this.#subjectKey = subject.primaryKey;
    this.channel = channel;
    this.#trust = trust;
    this.#timeoutMs = timeoutMs;
    // Only what comes through this channel: a reply or a push arriving any
    // other way (over a connection directly, through another channel) could
    // claim anything, a refusal such as member_revoked included.
    this.#address = node.registerRandom("authc", (message) => {
      if (message.local?.secureChannel?.address !== channel.decryptorAddress) return;
      return this.#receive(message.payload);
    });
    channel.closed.then(() => {
      node.unregister(this.#address);
      for (const pending of this.#pending.values()) {
        pending.reject(new HandshakeError("closed", "the channel to the authority closed"));
      }
      this.#pending.clear();
    });
  }

  /**
   * Opens a secure channel to the authority, recognised by its pinned
   * identifier; no credential is asked of it. A newer change history it
   * presents (a key rotation) is taken into `trust` when it extends the one
   * held; one that does not closes the channel.
   *
   * @example
   * ```ts ignore
   * import { AuthorityClient } from "./authority_client.ts";
   *
   * // `transport` is the node's TcpTransport, `local` its channel identity,
   * // `trust` a trust store holding the authority's identity file.
   * const conn = await transport.connect({ hostname: "authority.example.net", port: 4100 });
   * const client = await AuthorityClient.connect({ node, route: [conn.address], local, trust });
   * const credential = await client.enroll({ ticket }); // verified, about this member
   * await client.subscribe((list) => console.log("revocations", list.serial));
   * const fresh = await client.credential(); // later, before expiry
   * await client.close();
   * ```
   *
   * @throws {HandshakeError} when the channel cannot be opened or the peer
   *   is not the pinned authority.
   * @throws {IdentityError} when the authority's history conflicts with the
   *   trust anchor (the channel is closed first).
   */
  static async connect(options: AuthorityClientOptions): Promise<AuthorityClient> {
    const pinned = options.authority !== undefined
      ? [options.authority]
      : options.trust.identifiers();
    const channel = await connectSecureChannel({
      node: options.node,
      route: [...options.route, AUTHORITY_LISTENER],
      local: options.local,
      // The authority holds no credential about itself: it is recognised by
      // its pinned identifier, whose history the trust store anchors.
      policy: { trust: options.trust, requireCredential: false, pinned },
      logger: options.logger,
    });
    // A newer history of the anchor (a rotation) is taken when it extends
    // the one held; anything else is refused and the channel closed.
    try {
      await options.trust.update(channel.peer.identity.history);
    } catch (error) {
      await channel.close("authority history conflicts with the trust anchor");
      throw error;
    }
    return new AuthorityClient(
      options.node,
      channel,
      options.trust,
      options.timeoutMs ?? 10_000,
      options.local.identity,
    );
  }

  async #receive(payload: Uint8Array): Promise<void> {
    let reply: AuthorityReply;
    try {
      reply = decodeReply(payload);
    } catch {
      return;
    }
    if (reply.status === "revocations") {
      const list = await this.#verifyPushedList(reply.result);
      if (list !== null) { for (const listener of this.#listeners) await listener(list); }
      return;
    }
    const pending = this.#pending.get(reply.id);
    if (pending === undefined) return;
    this.#pending.delete(reply.id);
    pending.resolve(reply);
  }

  async #verifyPushedList(
    result: ReadonlyMap<string, Uint8Array | null>,
  ): Promise<RevocationList | null> {
    const history = result.get("history");
    if (history) await this.#trust.update(history).catch(() => false);
    const encoded = result.get("list");
    if (!encoded) return null;
    try {
      return await verifyRevocationList(encoded, this.#trust);
    } catch {
      return null;
    }
  }

  async #request(op: AuthorityOp, body: Record<string, string> = {}) {
    const id = this.#nextId++;
    const pending = Promise.withResolvers<AuthorityReply>();
    this.#pending.set(id, pending);
    const timer = setTimeout(() => {
      this.#pending.delete(id);
      pending.reject(new HandshakeError("timeout", `authority did not answer ${op} in time`));
    }, this.#timeoutMs);
    try {
      await this.channel.send([AUTHORITY_API], encodeRequest(id, op, body), [this.#address]);
      const reply = await pending.promise;
      if (reply.status === "error") {
        throw new AuthorityError(reply.code as AuthorityError["code"], reply.message);
      }
      return reply.result;
    } finally {
      clearTimeout(timer);
    }
  }

  async #credential(result: ReadonlyMap<string, Uint8Array | null>): Promise<Credential> {
    const history = result.get("history");
    if (history) await this.#trust.update(history);
    const encoded = result.get("credential");
    if (!encoded) throw new AuthorityError("bad_request", "the authority sent no credential");
    // The credential must be about this member and verify under the
    // authority's current key before anyone relies on it.
    return await verifyCredential(encoded, {
      trust: this.#trust,
      subject: this.#subject,
      subjectKey: this.#subjectKey,
    });
  }

  /**
   * Redeems a one-time enrollment ticket or a license key; returns the
   * first credential.
   * @throws {AuthorityError} `ticket_unknown`, `ticket_used`, `ticket_expired`,
   *   `license_unknown`, `license_revoked`, ...
   */
  async enroll(secret: { ticket: string } | { license: string }): Promise<Credential> {
    return await this.#credential(await this.#request("enroll", secret));
  }

  /**
   * A fresh credential for this member (refresh before expiry).
   * @throws {AuthorityError} `not_member`, `member_revoked`.
   */
  async credential(): Promise<Credential> {
    return await this.#credential(await this.#request("credential"));
  }

  /** The current signed revocation list, verified, or null before the first revocation. */
  async revocations(): Promise<RevocationList | null> {
    return await this.#verifyPushedList(await this.#request("revocations"));
  }

  /**
   * Calls `listener` with every new revocation list the authority pushes,
   * starting with the current one.
   */
  async subscribe(listener: RevocationListener): Promise<void> {
    this.#listeners.add(listener);
    const list = await this.#verifyPushedList(await this.#request("subscribe"));
    if (list !== null) await listener(list);
  }

  /** Closes the channel. */
  async close(): Promise<void> {
    await this.channel.close("client done");
  }
}
