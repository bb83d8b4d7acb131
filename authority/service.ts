/**
 * The credential authority service (docs/design.md §3, §8): a node that accepts
 * secure channels over TCP and answers members' requests
 * (src/authority_client/protocol.ts):
 *
 * - `enroll`: redeem a one-time ticket or a license key; the caller's
 *   identity (proven by the channel) becomes a member; returns a credential;
 * - `credential`: a fresh credential for a listed, unrevoked member;
 * - `revocations` / `subscribe`: the signed revocation list, and every new
 *   one pushed as it is signed.
 *
 * Every credential and list is signed by the authority's current key inside
 * the HSM. Revocations are written to the store by `authority revoke` (or
 * any process sharing the store); the service notices a new serial within
 * `pollMs`, signs the complete list, saves it, pushes it to every
 * subscriber, and closes its own channels to revoked members.
 *
 * @module
 */
import {
  AUTHORITY_API,
  AUTHORITY_LISTENER,
  type AuthorityRequest,
  decodeRequest,
  encodeError,
  encodeResult,
} from "../src/authority_client/protocol.ts";
import { type SecureChannel } from "../src/channel/secure_channel.ts";
import { createChannelIdentity } from "../src/channel/channel_identity.ts";
import { listenSecureChannels } from "../src/channel/handshake.ts";
import type { AttributeValue } from "../src/credential/attributes.ts";
import { issueCredential } from "../src/credential/credential.ts";
import { bytesEqual } from "../src/crypto/hash.ts";
import type { VerifiedIdentity } from "../src/identity/change_history.ts";
import { createRevocationList, decodeRevocationList } from "../src/credential/revocation.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { AuthorityError } from "../src/errors.ts";
import type { Identity } from "../src/identity/identity.ts";
import { type Logger, silentLogger } from "../src/log.ts";
import { Node } from "../src/routing/node.ts";
import type { Route } from "../src/routing/routed_message.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import { Metrics } from "../src/ops/metrics.ts";
import { startOpsServer } from "../src/ops/ops_server.ts";
import { renewAttestations } from "../src/member/attestation_renewal.ts";
import type { HsmOptions } from "../hsm/pkcs11_signer.ts";
import { loadAuthority, statePaths } from "./ceremony.ts";
import { AuthorityStore, type Member, StoreBatchError } from "./store.ts";
import { Subscriber } from "./subscriber.ts";
import {
  ConnectionGuard,
  type ConnectionGuardOptions,
  type ConnectionSweep,
  guardConnections,
} from "./connection_guard.ts";

/** Options of {@link startAuthority}. */
export interface AuthorityServiceOptions {
  stateDir: string;
  /**
   * Where the store is: a PostgreSQL URL shared by replicas
   * (`postgres://user@host:port/database`), or a SQLite file (default: the
   * state directory's `authority.db`).
   */
  database?: string;
  hsm: HsmOptions;
  /** Listen address (port 0: any free port). */
  hostname: string;
  port: number;
  /** Credential lifetime in seconds by the member's `role` attribute; `default` otherwise (3600). */
  ttlSeconds?: Record<string, number>;
  /** How often to look for revocations written by other processes, ms (default 250). */
  pollMs?: number;
  /** Where to serve /metrics, /healthz and /readyz (default: not served). */
  ops?: { hostname: string; port: number };
  /** How long a revocation push may wait to be written before its subscriber is dropped, ms (default 5,000). */
  pushTimeoutMs?: number;
  /** Lifetime of the authority's channel attestation, seconds (default 30 days; renewed at two thirds). */
  attestationTtlSeconds?: number;
  /** TCP connections open at once (default 10,000). */
  maxConnections?: number;
  /** TCP connections open at once from one IPv4 address or IPv6 /64 (default 256). */
  maxConnectionsPerSource?: number;
  /** What a connection may hold before and after it carries a member (connection_guard.ts). */
  guard?: ConnectionGuardOptions;
  logger?: Logger;
}

/**
 * The largest frame a member sends the authority: a handshake message 3
 * (a change history of at most 127 changes, about 20 KiB, and its
 * credentials) or a request. A larger header closes the connection
 * before anything is reserved for it.
 */
export const AUTHORITY_MAX_RECEIVE_FRAME_BYTES = 64 * 1024;

/** Counters for metrics and tests. */
export interface AuthorityStats {
  enrollments: number;
  credentials: number;
  refused: number;
  revocationLists: number;
}

/** A running authority. */
export interface RunningAuthority {
  readonly addr: Deno.NetAddr;
  readonly identity: Identity;
  readonly stats: AuthorityStats;
  readonly store: AuthorityStore;
  /** The operations endpoint, when one was asked for. */
  readonly opsAddr: Deno.NetAddr | null;
  /** Stops listening, closes channels, the store and the HSM session. */
  close(): Promise<void>;
}

/** Starts the authority service. Fails closed on any HSM or state problem. */
export async function startAuthority(options: AuthorityServiceOptions): Promise<RunningAuthority> {
  const logger = options.logger ?? silentLogger;
  const loaded = await loadAuthority(options);
  const identity = loaded.identity;
  const store = await AuthorityStore.open(options.database ?? statePaths(options.stateDir).db);
  const ttl: Record<string, number> = { default: 3600, ...options.ttlSeconds };
  const stats: AuthorityStats = { enrollments: 0, credentials: 0, refused: 0, revocationLists: 0 };

  const node = new Node({ name: "authority", logger });
  let sweep: ConnectionSweep | null = null;
  const transport = new TcpTransport(node, {
    logger,
    onConnection: ({ address }) => sweep?.accepted(address),
  });
  const local = await createChannelIdentity(identity, {
    ttlSeconds: options.attestationTtlSeconds,
  });

  // Members enroll before they hold a credential, so the listener does not
  // require one; every request is checked against the store instead.
  const listener = listenSecureChannels({
    node,
    address: AUTHORITY_LISTENER,
    local,
    policy: { trust: new TrustStore([identity]), requireCredential: false },
    logger: logger.child("channel"),
  });

  // The issuer of every credential: the authority's identity with its
  // identifier computed once (the identity's own getter hashes the first
  // change of its history at each call, one SHA-256 per credential).
  const issuer: Identity = Object.create(identity, {
    identifier: { value: identity.identifier, enumerable: true },
  });

  /** Subscribers: members only, each with its own one-list queue (`subscriber.ts`). */
  const subscribers = new Set<Subscriber>();

  /**
   * The member's current key: the one of the history it presents now. A
   * history that extends the one last seen (a rotation) moves it forward;
   * an older prefix (a key rotated away from) is refused, so an old key
   * cannot fetch credentials.
   */
  const checkKey = async (
    presented: VerifiedIdentity,
    given?: Uint8Array | null,
  ) => {
    const known = given === undefined ? await store.memberKey(presented.identifier) : given;
    if (known === null || bytesEqual(known, presented.primaryKey)) return;
    if (presented.history.changes.some((change) => bytesEqual(change.primaryKey, known))) return;
    throw new AuthorityError(
      "stale_identity",
      "this identity presented an older history than its current one (a rotated-away key)",
    );
  };

  /**
   * Signs a credential for `presented` (one HSM signature) and records it.
   * `known` is the member's key as read before signing: a new key (the
   * first, or a rotation) is recorded first, with full durability, in its
   * own audited write; the same key again costs no write. The record goes
   * with the other records of this turn in one transaction (group commit,
   * `AuthorityStore.submitCredential`), which checks once more that the
   * member is active: a revocation that lands while the credential is
   * signed still stops it, and the credential is not handed out.
   */
  const issueFor = async (
    presented: VerifiedIdentity,
    attributes: Record<string, AttributeValue>,
    refresh: boolean,
    known: Uint8Array | null,
  ) => {
    const subject = presented.identifier;
    const role = typeof attributes.role === "string" ? attributes.role : "default";
    const credential = await issueCredential(issuer, {
      subject,
      subjectKey: presented.primaryKey,
      attributes,
      ttlSeconds: ttl[role] ?? ttl.default,
    });
    if (known === null || !bytesEqual(known, presented.primaryKey)) {
      await store.setMemberKey(subject, presented.primaryKey);
    }
    await store.submitCredential({
      id: credential.id,
      subject,
      issuedAt: credential.createdAt,
      expiresAt: credential.expiresAt,
      refresh,
    });
    stats.credentials++;
    return credential;
  };

  const currentList = async () => (await store.latestRevocationList())?.encoded ?? null;

  const handle = async (
    request: AuthorityRequest,
    presented: VerifiedIdentity,
    channel: SecureChannel,
    reply: Route,
  ): Promise<Record<string, Uint8Array | null>> => {
    const peer = presented.identifier;
    switch (request.op) {
      case "enroll": {
        // A member enrolling again (a license is reusable) does so with its
        // current key: a rotated-away prefix must not win a credential, nor
        // move the recorded key back, this way either.
        const known = await store.memberKey(peer);
        await checkKey(presented, known);
        const ticket = request.body.get("ticket");
        const license = request.body.get("license");
        let attributes;
        if (ticket !== undefined) attributes = await store.redeemTicket(ticket, peer);
        else if (license !== undefined) attributes = await store.redeemLicense(license, peer);
        else throw new AuthorityError("bad_request", "enroll needs a ticket or a license");
        stats.enrollments++;
        logger.info("member enrolled", {
          member: peer,
          via: ticket !== undefined ? "ticket" : "license",
        });
        const credential = await issueFor(presented, { ...attributes }, false, known);
        return { credential: credential.encoded, history: identity.history.encoded };
      }
      case "credential": {
        // One read for the membership and the key, both checked before signing.
        const found = await store.memberWithKey(peer);
        const member = checkActive(found?.member ?? null);
        const known = found?.key ?? null;
        await checkKey(presented, known);
        const credential = await issueFor(presented, { ...member.attributes }, true, known);
        return { credential: credential.encoded, history: identity.history.encoded };
      }
      case "revocations":
        return { list: await currentList(), history: identity.history.encoded };
      case "subscribe": {
        // Members only: pushes cost the authority a send each, so nobody
        // unenrolled may make it keep a queue.
        await activeMember(peer);
        await checkKey(presented);
        const subscriber = new Subscriber({
          node,
          channel,
          route: reply,
          from: AUTHORITY_API,
          timeoutMs: options.pushTimeoutMs ?? 5000,
          drop: () => transport.connections().get(channel.remoteRoute[0])?.close("slow subscriber"),
          logger,
        });
        subscribers.add(subscriber);
        channel.closed.then(() => subscribers.delete(subscriber));
        return { list: await currentList(), history: identity.history.encoded };
      }
    }
  };

  /** `member` when active, or the refusal a non-member (null) or revoked member gets. */
  const checkActive = (member: Member | null) => {
    if (member === null) {
      throw new AuthorityError("not_member", "this identity is not a member");
    }
    if (member.revokedAt !== null) {
      throw new AuthorityError("member_revoked", "this member has been revoked");
    }
    return member;
  };

  /** The active member `peer`, or the refusal a non-member or revoked member gets. */
  const activeMember = async (peer: string) => checkActive(await store.getMember(peer));

  node.register(AUTHORITY_API, async (message) => {
    const info = message.local?.secureChannel;
    if (info === undefined) return; // only through a secure channel
    const channel = listener.channel(message.return[0]);
    if (channel === undefined || channel.isClosed) return; // not one of this listener's
    sweep?.requested(channel.remoteRoute[0]);
    let request: AuthorityRequest;
    try {
      request = decodeRequest(message.payload);
    } catch {
      stats.refused++;
      await node.route({
        onward: message.return,
        return: [AUTHORITY_API],
        payload: encodeError(0, "bad_request", "malformed request"),
      });
      return;
    }
    let payload: Uint8Array;
    try {
      payload = encodeResult(
        request.id,
        await handle(request, info.identity, channel, message.return),
      );
    } catch (error) {
      stats.refused++;
      const code = error instanceof AuthorityError ? error.code : "bad_request";
      // A member's first request is a refresh that the authority answers
      // not_member; it then enrolls. That is the normal path, not a warning.
      if (code === "not_member" && request.op === "credential") {
        logger.debug("credential asked before enrollment", { member: info.peer });
      } else {
        logger.warn("request refused", {
          op: request.op,
          member: info.peer,
          code,
          // A failed batch: what the database (or the log) said, for the operator.
          ...(error instanceof StoreBatchError ? { cause: String(error.cause) } : {}),
        });
      }
      payload = encodeError(
        request.id,
        code,
        error instanceof AuthorityError ? error.message : "request refused",
      );
    }
    await node.route({ onward: message.return, return: [AUTHORITY_API], payload });
  });

  // Revocations. The leader among the services sharing the store signs
  // every new serial once (store/leadership.ts); every replica pushes every
  // new list kept in the store to its own subscribers and cuts the revoked
  // members' channels off, whichever replica signed it.
  const leadership = await store.leadership();
  let leading = false;
  /** The newest serial pushed (at start: what subscribers get when they subscribe). */
  let pushed = (await store.latestRevocationList())?.serial ?? 0;
  const publish = async () => {
    // Two numbers first: the state and the list (up to the whole revoked
    // set, and its signed bytes) are read only when a serial moved.
    const { allocated, kept } = await store.revocationSerials();
    leading = await leadership.check();
    let latest: { serial: number; encoded: Uint8Array } | null = null;
    if (allocated > kept && leading) {
      const state = await store.revocationState();
      const list = await createRevocationList(identity, {
        serial: state.serial,
        credentialIds: state.credentialIds,
        identifiers: state.identifiers,
      });
      stats.revocationLists++;
      try {
        await store.saveRevocationList(list.serial, list.encoded);
        logger.info("revocation list signed", { serial: list.serial });
        latest = list;
      } catch (error) {
        // Another replica kept a list for this serial first (it led a moment
        // ago): take the kept one.
        if (!(error instanceof AuthorityError && error.code === "bad_request")) throw error;
        latest = await store.latestRevocationList();
      }
    }
    if (latest === null) {
      if (kept <= pushed) return;
      latest = await store.latestRevocationList();
    }
    if (latest === null || latest.serial <= pushed) return;
    pushed = latest.serial;
    logger.info("revocation list pushed", { serial: latest.serial, subscribers: subscribers.size });
    const push = encodeResult(
      0,
      { list: latest.encoded, history: identity.history.encoded },
      "revocations",
    );
    const revoked = new Set(decodeRevocationList(latest.encoded).identifiers);
    for (const channel of listener.channels()) {
      if (revoked.has(channel.peer.identifier)) channel.close("revoked");
    }
    // Never awaited here: each subscriber has its own queue (the newest
    // list only) and its own send timeout, so one that stops reading loses
    // its channel and delays no one else.
    for (const subscriber of subscribers) subscriber.push(push);
  };
  /** Whether the last poll failed: the failure is logged when it starts and when it ends, not at every poll. */
  let failing = false;
  let polling = Promise.resolve();
  const poll = () =>
    polling = polling.then(publish).then(() => {
      if (failing) logger.info("publishing revocation lists again");
      failing = false;
    }, (error) => {
      if (!failing) {
        logger.error("publishing the revocation list failed", { error: String(error) });
      }
      failing = true;
    });
  const timer = setInterval(poll, options.pollMs ?? 250);
  await poll();

  const metrics = new Metrics();
  metrics.register(
    "nexus_authority_enrollments_total",
    "counter",
    "Members enrolled.",
    () => stats.enrollments,
  );
  metrics.register(
    "nexus_authority_credentials_total",
    "counter",
    "Credentials issued or refreshed.",
    () => stats.credentials,
  );
  metrics.register(
    "nexus_authority_refused_total",
    "counter",
    "Requests refused.",
    () => stats.refused,
  );
  metrics.register(
    "nexus_authority_revocation_lists_total",
    "counter",
    "Revocation lists signed.",
    () => stats.revocationLists,
  );
  metrics.register(
    "nexus_authority_revocation_serial",
    "gauge",
    "Serial of the newest revocation list pushed to subscribers.",
    () => pushed,
  );
  metrics.register(
    "nexus_authority_leader",
    "gauge",
    "1 when this replica signs revocation lists (the leader among those sharing the store).",
    () => leading ? 1 : 0,
  );
  metrics.register(
    "nexus_authority_store_failing",
    "gauge",
    "1 while the store cannot be read (the last poll of the revocation state failed).",
    () => failing ? 1 : 0,
  );
  metrics.register(
    "nexus_authority_attestation_expiry_seconds",
    "gauge",
    "Expiry of the authority's channel attestation, Unix seconds (renewed at two thirds).",
    () => local.attestationExpiresAt,
  );
  metrics.register(
    "nexus_authority_channels",
    "gauge",
    "Open secure channels.",
    () => listener.channels().length,
  );
  metrics.register(
    "nexus_authority_subscribers",
    "gauge",
    "Revocation list subscribers.",
    () => subscribers.size,
  );
  metrics.register(
    "nexus_authority_handshake_failures_total",
    "counter",
    "Failed secure channel handshakes by code.",
    () => [...listener.failures].map(([code, n]) => [{ code }, n] as [{ code: string }, number]),
  );
  // Not ready while the store cannot be read: a load balancer sends members elsewhere.
  const ops = options.ops
    ? startOpsServer({ ...options.ops, metrics, logger, ready: () => !failing })
    : null;

  const tcp = transport.listen({
    hostname: options.hostname,
    port: options.port,
    maxConnections: options.maxConnections ?? 10_000,
    maxConnectionsPerSource: options.maxConnectionsPerSource ?? 256,
    maxReceiveFrameBytes: AUTHORITY_MAX_RECEIVE_FRAME_BYTES,
    // Members' requests and answers are small: a 4 KiB read buffer per
    // connection (a larger frame is assembled as its bytes come,
    // frame_decoder.ts), so 10,000 connections hold 40 MiB, not 640.
    readBufferBytes: 4096,
    writeBufferBytes: 16 * 1024,
  });
  sweep = guardConnections(
    {
      connections: () => transport.connections(),
      channels: () => listener.channels(),
      isMember: async (identifier) => {
        const member = await store.getMember(identifier);
        return member !== null && member.revokedAt === null;
      },
    },
    new ConnectionGuard(options.guard),
    (verdict) => logger.debug("closing a connection", { reason: verdict }),
  );
  metrics.register(
    "nexus_authority_connections",
    "gauge",
    "Open TCP connections.",
    () => tcp.connections(),
  );
  metrics.register(
    "nexus_authority_connections_closed_total",
    "counter",
    "Connections closed by a limit: on accept (max_connections, max_per_source) or by the guard.",
    () => [
      ...Object.entries(tcp.refused()).map(([reason, n]) =>
        [{ reason: reason === "maxConnections" ? "max_connections" : "max_per_source" }, n] as [
          { reason: string },
          number,
        ]
      ),
      ...[...sweep!.closed].map(([reason, n]) => [{ reason }, n] as [{ reason: string }, number]),
    ],
  );
  logger.info("authority listening", {
    address: `${tcp.addr.hostname}:${tcp.addr.port}`,
    identifier: identity.identifier,
  });

  // The attestation is signed in the HSM; it is renewed at two thirds of
  // its lifetime, so the authority never needs a restart to keep serving.
  const stopRenewing = new AbortController();
  const renewing = renewAttestations(local, { signal: stopRenewing.signal, logger });

  return {
    addr: tcp.addr,
    identity,
    stats,
    store,
    opsAddr: ops?.addr ?? null,
    async close() {
      clearInterval(timer);
      sweep?.stop();
      stopRenewing.abort();
      await renewing;
      await ops?.close();
      await polling;
      await leadership.close();
      listener.close({ closeChannels: true });
      await transport.close();
      await store.close();
      loaded.session.close();
    },
  };
}
