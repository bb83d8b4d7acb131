/**
 * The client side of a relay, for gateways and edges: connect out, pass
 * admission (admission.ts: the relay proves it is the relay at the
 * address dialled, the member proves its identity to that relay), attach
 * the connection to the node, and (for gateways) register an alias.
 *
 * @module
 */
import type { Credential } from "../credential/credential.ts";
import type { RevocationRegistry } from "../credential/revocation.ts";
import type { TrustStore } from "../credential/trust_store.ts";
import { decodeCbor, encodeCbor } from "../encoding/cbor.ts";
import { RelayError } from "../errors.ts";
import type { Identity } from "../identity/identity.ts";
import { relayRule } from "../policy/rules.ts";
import type { Node } from "../routing/node.ts";
import type { Address } from "../routing/routed_message.ts";
import type { AttachedConnection, TcpTransport } from "../transport/tcp_transport.ts";
import { connectTcp } from "../transport/tcp.ts";
import {
  challengeMessage,
  decodeChallenge,
  decodeVerdict,
  encodeAdmit,
  encodeHello,
  refreshMessage,
} from "./admission.ts";
import { verifyProof } from "./proof.ts";

/** Options of {@link connectRelay}. */
export interface ConnectRelayOptions {
  /** The node's transport; the admitted connection is attached to it as a worker. */
  transport: TcpTransport;
  /** The relay's host name or IP address. */
  hostname: string;
  /** The relay's TCP port. */
  port: number;
  /**
   * The relay's address as the configuration writes it (default
   * `hostname:port`): the relay's credential must name it among its
   * `relay_addresses`, so a relay cannot pass for another one.
   */
  address?: string;
  /** Connect with TLS, trusting `caCerts` (PEM) and checking `serverName`, as in `connectTcp`. */
  tls?: { caCerts: string[]; serverName?: string };
  /** The identity to be admitted as; its current primary key signs the admission. */
  identity: Identity;
  /** The credential to present (the current one). */
  credential: Uint8Array;
  /** The authorities whose credentials count: the relay's must come from one of them. */
  trust: TrustStore;
  /** Revocations to honour for the relay's credential. */
  revocations?: RevocationRegistry;
  /** Milliseconds for connect and admission (default 10,000). */
  timeoutMs?: number;
}

/** An admitted relay connection attached to the node. */
export interface RelayConnection extends AttachedConnection {
  /** The identifier the relay admitted. */
  readonly identifier: string;
  /** The relay: its verified identifier and credential. */
  readonly relay: { readonly identifier: string; readonly credential: Credential };
  /** The relay's nonce of this connection: what a refresh is bound to. */
  readonly relayNonce: Uint8Array;
}

/**
 * Connects to a relay and passes admission.
 *
 * @example
 * ```ts ignore
 * import { connectRelay, registerAlias } from "./relay_client.ts";
 *
 * // `transport` is the node's TcpTransport; `credential` the member's current one.
 * const relay = await connectRelay({
 *   transport,
 *   hostname: "relay.example.net",
 *   port: 4000,
 *   identity,
 *   credential: credential.encoded,
 *   trust,
 * });
 * relay.identifier; // the identifier the relay admitted
 * relay.relay.identifier; // the relay's own identifier, verified
 * // A gateway then registers its alias through the connection's address:
 * await registerAlias(node, relay.address, "gw-cust-001"); // "active" or "standby"
 * ```
 *
 * @throws {RelayError} `untrusted_relay` (the relay's proof or credential
 *   failed, or it is not the relay at this address), `admission_refused`
 *   (with the relay's reason), `protocol`, `timeout`; {TransportError}
 *   when the connection fails.
 */
export async function connectRelay(options: ConnectRelayOptions): Promise<RelayConnection> {
  const signal = AbortSignal.timeout(options.timeoutMs ?? 10_000);
  const address = options.address ?? `${options.hostname}:${options.port}`;
  const conn = await connectTcp({
    hostname: options.hostname,
    port: options.port,
    tls: options.tls,
    signal,
  });
  const frames = conn.frames();
  const next = async (what: string): Promise<Uint8Array> => {
    const timer = setTimeout(
      () => conn.close(`relay ${what} timeout`),
      options.timeoutMs ?? 10_000,
    );
    try {
      const result = await frames.next();
      if (result.done) throw new RelayError("protocol", `the relay closed during ${what}`);
      return result.value.slice();
    } finally {
      clearTimeout(timer);
    }
  };
  try {
    const memberNonce = crypto.getRandomValues(new Uint8Array(32));
    await conn.send(encodeHello(memberNonce));
    const first = await next("admission");
    let challenge;
    try {
      challenge = decodeChallenge(first);
    } catch (error) {
      // A relay that refuses at once (a limit) answers with its verdict.
      const verdict = (() => {
        try {
          return decodeVerdict(first);
        } catch {
          return null;
        }
      })();
      if (verdict !== null && !verdict.admitted) {
        throw new RelayError("admission_refused", `the relay refused admission: ${verdict.code}`);
      }
      throw error;
    }
    // The relay first: it must prove it is a relay of a trusted authority,
    // at the address this member dialled, before anything of the member's
    // is signed for it.
    const relay = await verifyProof(challenge, challengeMessage(memberNonce, challenge.nonce), {
      trust: options.trust,
      revocations: options.revocations,
    });
    if (!relay.ok) {
      throw new RelayError(
        "untrusted_relay",
        `the relay at ${address} failed to prove itself: ${relay.code}`,
      );
    }
    const subject = {
      identifier: relay.identity.identifier,
      attributes: relay.credential.attributes,
    };
    if (!relayRule(address).allows(subject)) {
      throw new RelayError(
        "untrusted_relay",
        `${relay.identity.identifier} is not the relay at ${address} (its credential names other addresses, or no relay role)`,
      );
    }
    await conn.send(
      await encodeAdmit(
        options.identity,
        options.credential,
        relay.identity.identifier,
        challenge.nonce,
        memberNonce,
      ),
    );
    const verdict = decodeVerdict(await next("admission"));
    if (!verdict.admitted) {
      throw new RelayError("admission_refused", `the relay refused admission: ${verdict.code}`);
    }
    await frames.return?.(undefined);
    const attached = options.transport.attach(conn);
    return {
      ...attached,
      identifier: verdict.identifier,
      relay: { identifier: relay.identity.identifier, credential: relay.credential },
      relayNonce: challenge.nonce,
    };
  } catch (error) {
    conn.close("admission failed");
    if (error instanceof RelayError) throw error;
    throw new RelayError("protocol", "the relay's admission exchange was malformed", {
      cause: error,
    });
  }
}

/** Sends a control request to the relay behind `connection`; resolves with its answer. */
async function ask(
  node: Node,
  connection: Address,
  request: unknown[],
  what: string,
  timeoutMs: number,
): Promise<unknown[]> {
  const answer = Promise.withResolvers<unknown[]>();
  const address = node.registerRandom("relayctl", (message) => {
    try {
      const reply = decodeCbor(message.payload, { maxBytes: 1024 });
      if (!Array.isArray(reply)) throw new TypeError("not a list");
      answer.resolve(reply);
    } catch {
      answer.reject(new RelayError("protocol", "malformed answer from the relay"));
    }
  });
  const timer = setTimeout(
    () => answer.reject(new RelayError("timeout", `no answer to ${what}`)),
    timeoutMs,
  );
  try {
    await node.route({
      onward: [connection, "relay"],
      return: [address],
      payload: encodeCbor([2, ...request]),
    });
    return await answer.promise;
  } finally {
    clearTimeout(timer);
    node.unregister(address);
  }
}

/**
 * Registers `alias` at the relay behind `connection` (an address on
 * `node`). Resolves with "active" or "standby".
 * @throws {RelayError} `alias_refused`, `timeout`.
 */
export async function registerAlias(
  node: Node,
  connection: Address,
  alias: string,
  timeoutMs = 10_000,
): Promise<"active" | "standby"> {
  const reply = await ask(node, connection, ["register", alias], `registering ${alias}`, timeoutMs);
  if (reply[1] === "registered" && (reply[3] === "active" || reply[3] === "standby")) {
    return reply[3];
  }
  throw new RelayError("alias_refused", `the relay refused alias ${alias}: ${String(reply[3])}`);
}

/**
 * Presents a fresher credential to the relay on the admitted `connection`,
 * signed by `identity` and bound to that relay and connection, so the
 * connection (and every route through it) outlives the credential it was
 * admitted with. Resolves with the new expiry.
 * @throws {RelayError} `admission_refused` (with the reason), `timeout`.
 */
export async function refreshAtRelay(
  node: Node,
  connection: RelayConnection,
  identity: Identity,
  credential: Uint8Array,
  timeoutMs = 10_000,
): Promise<number> {
  const signature = await identity.signer.sign(
    refreshMessage(connection.relay.identifier, connection.relayNonce, credential),
  );
  const reply = await ask(
    node,
    connection.address,
    ["refresh", credential, signature],
    "a credential refresh",
    timeoutMs,
  );
  if (reply[1] === "refreshed" && typeof reply[2] === "number") return reply[2];
  throw new RelayError("admission_refused", `the relay refused the refresh: ${String(reply[3])}`);
}

/**
 * Asks the relay behind `connection` whether a gateway holds `alias` there
 * now. Resolves with true or false.
 * @throws {RelayError} `protocol` (a relay that does not know the
 *   question answers nothing: `timeout`).
 */
export async function lookupAlias(
  node: Node,
  connection: Address,
  alias: string,
  timeoutMs = 5_000,
): Promise<boolean> {
  const reply = await ask(node, connection, ["lookup", alias], `looking up ${alias}`, timeoutMs);
  if (reply[1] === "alias" && typeof reply[3] === "boolean") return reply[3];
  throw new RelayError("protocol", "malformed answer to a lookup");
}

/**
 * Tells the relay behind `connection` this member is still there (no
 * answer): keeps an idle connection, and a gateway's alias, from the
 * relay's idle sweep.
 */
export function pingRelay(node: Node, connection: Address): Promise<boolean> {
  return node.route({
    onward: [connection, "relay"],
    return: [],
    payload: encodeCbor([2, "ping"]),
  });
}
