/**
 * The relay (docs/design.md §5): a rendezvous that edges and gateways both reach
 * with outbound connections. It admits a connection only after a signed
 * challenge proves an identity with a valid, unrevoked credential; lets a
 * gateway register an alias its credential allows; and forwards routed
 * messages between connections by their first onward address. It holds no
 * channel keys: it reads the routing header (docs/protocol.md §14) and
 * copies the rest, ciphertext it cannot open.
 *
 * Addresses on the relay:
 * - `relay`: control messages (register an alias, refresh the credential,
 *   look an alias up, ping);
 * - `forward.<alias>`: the active connection registered for the alias;
 * - `c.<hex>`: a connection, as pushed onto return routes.
 *
 * Backpressure: a frame is forwarded by awaiting the destination's send,
 * and the source is not read meanwhile, so a slow reader slows its writer
 * through TCP and the relay buffers at most one frame per direction.
 *
 * @module
 */
import { type Credential, verifyCredential } from "../src/credential/credential.ts";
import { DEFAULT_SKEW_SECONDS } from "../src/identity/attestation.ts";
import type { RevocationList } from "../src/credential/revocation.ts";
import { RevocationRegistry } from "../src/credential/revocation.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { verifyEd25519 } from "../src/crypto/ed25519.ts";
import { decodeCbor, encodeCbor } from "../src/encoding/cbor.ts";
import { fromHex } from "../src/encoding/hex.ts";
import type { Attributes } from "../src/credential/attributes.ts";
import { ConfigError, CredentialError } from "../src/errors.ts";
import { formatHostPort, parseHostPort } from "../src/config/host_port.ts";
import { importIdentity } from "../src/identity/identity_file.ts";
import type { Identity } from "../src/identity/identity.ts";
import { loadOrCreateIdentity } from "../src/identity/identity_store.ts";
import { type Logger, silentLogger } from "../src/log.ts";
import { whenAborted } from "../src/member/backoff.ts";
import { type Member, startMember } from "../src/member/member.ts";
import { Node } from "../src/routing/node.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import type { CheckedRelayConfig } from "./config.ts";
import { Metrics } from "../src/ops/metrics.ts";
import { type OpsServer, startOpsServer } from "../src/ops/ops_server.ts";
import type { Policy } from "../src/policy/policy.ts";
import { aliasRule } from "../src/policy/rules.ts";
import { MAX_ADMISSION_BYTES, refreshMessage } from "../src/relay_client/admission.ts";
import {
  type AdmissionContext,
  type AdmissionRefusal,
  admit,
  type Admitted,
  sendAdmitted,
  sendRefused,
} from "./admission.ts";
import {
  decodeRoutedMessage,
  encodeRoutedMessage,
  firstOnwardAddress,
  forwardRoutedHeader,
} from "../src/routing/routed_message.ts";
import {
  connectionSource,
  type FramedConnection,
  type FramedListener,
  listenTcp,
} from "../src/transport/mod.ts";
import { readSecretLine } from "../src/config/secret_file.ts";

/** Options of {@link startRelay}. */
export interface RelayOptions {
  hostname: string;
  port: number;
  tls?: { cert: string; key: string };
  /** Authorities whose members may connect. */
  trust: TrustStore;
  /** The relay's own identity: it proves it to every member in admission. */
  identity: Identity;
  /**
   * The relay's current credential (role `relay`, its `relay_addresses`),
   * read at each admission; null before it has one (it admits no one then).
   */
  credential: () => Credential | null;
  /** Admissions in progress at once from one source address (IPv6: its /64; default 32). */
  maxPendingPerSource?: number;
  /** Most connections at once (default 20,000). */
  maxConnections?: number;
  /** Largest frame (default the transport's 256 KiB). */
  maxFrameBytes?: number;
  /** Most connections of one identity (default 64). */
  maxConnectionsPerIdentity?: number;
  /** Bytes per second one identity may send through the relay (default 256 MiB/s). */
  bytesPerSecondPerIdentity?: number;
  /** Close a connection silent for this long, ms (default 300,000). */
  idleTimeoutMs?: number;
  /**
   * Close a destination that has not taken a forwarded frame within this
   * long, ms (default 10,000): a member that stops reading must not stall,
   * through backpressure, the sources that share a connection with others.
   */
  slowConsumerTimeoutMs?: number;
  /** Time allowed for admission, ms (default 5,000). */
  admissionTimeoutMs?: number;
  /**
   * Read buffer of a connection while frames flow, bytes (default 4 KiB),
   * taken from a pool shared by all connections and given back when the
   * connection is parked.
   */
  readBufferBytes?: number;
  /**
   * Read buffer of a parked connection, bytes (default 512, at most
   * `readBufferBytes`): a connection is parked when admitted and whenever
   * the sweep finds that it read no frame since the sweep before, and is
   * unparked by the first read that fills this buffer (the transport's
   * `idleReadBufferBytes`). 0: never parked, each connection keeps its
   * `readBufferBytes` one.
   */
  idleReadBufferBytes?: number;
  /** Where to serve /metrics, /healthz, /readyz. */
  ops?: { hostname: string; port: number };
  /** More metrics on the same endpoint: the relay process's member runtime registers its own. */
  moreMetrics?: (metrics: Metrics) => void;
  logger?: Logger;
  /** Test hook: each connection as it is admitted, with its address (`c.<hex>`). */
  onAdmitted?: (connection: FramedConnection, address: string) => void;
  /** Test hook: every frame the relay reads, after admission, as it reads it. */
  tap?: (frame: Uint8Array) => void;
  /** Test hook: may change a frame before it is forwarded (a compromised relay). */
  tamper?: (frame: Uint8Array) => Uint8Array;
}

/** Refusal reasons counted in metrics. */
export type { AdmissionRefusal };

/** Counters of a relay. */
export interface RelayStats {
  admitted: number;
  refused: Map<AdmissionRefusal, number>;
  framesForwarded: number;
  bytesForwarded: number;
  dropped: number;
  aliasRefused: number;
}

/**
 * What the relay keeps of a credential it has verified: what its checks
 * read afterwards, and nothing else (not its bytes, signature or keys):
 * the subject, issuer and id, which revocation is judged by; the expiry,
 * which the sweep checks; and the attributes alias rights are decided by.
 * A relay holds one per connection, or two after a refresh, for thousands
 * of connections, so the strings are shared where they can be.
 */
interface HeldCredential {
  /** The member's identifier: the peer's own string. */
  readonly subject: string;
  /** The authority's identifier: one string for all it issued (see `issuers`). */
  readonly issuer: string;
  readonly id: string;
  readonly expiresAt: number;
  /**
   * The attributes {@link allows} decides by: `relay` alone, the one the
   * alias rule reads (src/policy/rules.ts, `aliasRule`), shared between
   * credentials with the same value.
   */
  readonly attributes: Attributes;
}

interface Peer {
  readonly address: string;
  readonly conn: FramedConnection;
  readonly identifier: string;
  /** The member's current key when admitted: refreshes are checked against it. */
  readonly primaryKey: Uint8Array;
  /** The credential it was admitted with: alias rights are decided by it alone. */
  readonly admittedWith: HeldCredential;
  /** The newest credential it presented (expiry and revocation follow it). */
  credential: HeldCredential;
  /** This connection's relay nonce, in hex: what the member's refreshes sign. */
  readonly relayNonce: string;
  /** The aliases it registered; null before the first. */
  aliases: Set<string> | null;
  lastActive: number;
  /** When the send now pending to this connection began (0: none pending). */
  sendingSince: number;
  /** Sends pending to this connection. */
  sending: number;
}

/** A running relay. */
export interface Relay {
  readonly addr: Deno.NetAddr;
  readonly stats: RelayStats;
  readonly opsAddr: Deno.NetAddr | null;
  /** Admitted connections now. */
  connections(): number;
  /** Aliases and the identifier of their active connection. */
  aliases(): Map<string, string>;
  /** Applies a revocation list (verified against the trust store) and cuts revoked members off. */
  applyRevocations(list: Uint8Array | RevocationList): Promise<void>;
  /** Stops accepting and closes every connection. */
  close(): Promise<void>;
}

/** Alias rules already parsed, by alias (few: one per gateway registering here). */
const aliasRules = new Map<string, Policy>();
const MAX_ALIAS_RULES = 4096;

/**
 * Whether `credential` allows registering `alias`: the alias rule
 * (src/policy/rules.ts), decided by the policy engine like every other
 * authorization, so `nexus-gateway policy check --alias` explains it.
 */
function allows(credential: Pick<Credential, "subject" | "attributes">, alias: string): boolean {
  let rule = aliasRules.get(alias);
  if (rule === undefined) {
    if (aliasRules.size >= MAX_ALIAS_RULES) aliasRules.delete(aliasRules.keys().next().value!);
    aliasRules.set(alias, rule = aliasRule(alias));
  }
  return rule.allows({ identifier: credential.subject, attributes: credential.attributes });
}

/** Attributes without `relay`: no alias rights (shared by every such credential). */
const NO_ALIAS_RIGHTS: Attributes = Object.freeze(Object.create(null));
/** Attributes holding only `relay`, by its value (as JSON), shared; bounded like the rules. */
const aliasRights = new Map<string, Attributes>();

/**
 * The part of `attributes` that alias rights are decided by: `relay`, the
 * only attribute `aliasRule` reads (a rule that read another would find
 * it missing, and refuse). Null-prototype and frozen, as credentials'
 * attributes are.
 */
function aliasAttributes(attributes: Attributes): Attributes {
  const relay = Object.hasOwn(attributes, "relay") ? attributes.relay : undefined;
  if (relay === undefined) return NO_ALIAS_RIGHTS;
  const key = JSON.stringify(relay);
  let held = aliasRights.get(key);
  if (held === undefined) {
    if (aliasRights.size >= MAX_ALIAS_RULES) aliasRights.delete(aliasRights.keys().next().value!);
    const only: Record<string, Attributes[string]> = Object.create(null);
    only.relay = relay;
    aliasRights.set(key, held = Object.freeze(only));
  }
  return held;
}

const HEX_DIGITS = "0123456789abcdef";

/**
 * `prefix` and the hex of `bytes` as one flat string. Strings built with
 * `+=` stay chains of pieces (toHex's are), which every connection would
 * keep for its life; `String.fromCharCode` makes one.
 */
function flatHex(prefix: string, bytes: Uint8Array): string {
  const codes = new Array<number>(prefix.length + 2 * bytes.length);
  for (let i = 0; i < prefix.length; i++) codes[i] = prefix.charCodeAt(i);
  for (let i = 0, at = prefix.length; i < bytes.length; i++, at += 2) {
    codes[at] = HEX_DIGITS.charCodeAt(bytes[i] >> 4);
    codes[at + 1] = HEX_DIGITS.charCodeAt(bytes[i] & 15);
  }
  return String.fromCharCode(...codes);
}

/** `text` as one flat string (see {@link flatHex}). */
function flat(text: string): string {
  const codes = new Array<number>(text.length);
  for (let i = 0; i < text.length; i++) codes[i] = text.charCodeAt(i);
  return String.fromCharCode(...codes);
}

const ALIAS = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
/** Version of the control messages to the relay's address `relay`. */
const CONTROL_VERSION = 2;

/** Starts a relay. */
export function startRelay(options: RelayOptions): Relay {
  const logger = options.logger ?? silentLogger;
  const trust = options.trust;
  const revocations = new RevocationRegistry();
  const peers = new Map<string, Peer>();
  /**
   * Per identifier: its admitted connections (for maxConnectionsPerIdentity),
   * and the identifier as one flat string that its peers share.
   */
  const perIdentity = new Map<string, { readonly identifier: string; connections: number }>();
  /**
   * Issuers of credentials held, as one flat string each: the trusted
   * authorities, a handful (bounded all the same).
   */
  const issuers = new Map<string, string>();
  /** alias → registrations in order: the first is active, the rest standby. */
  const aliases = new Map<string, Peer[]>();
  const stats: RelayStats = {
    admitted: 0,
    refused: new Map(),
    framesForwarded: 0,
    bytesForwarded: 0,
    dropped: 0,
    aliasRefused: 0,
  };
  const idleMs = options.idleTimeoutMs ?? 300_000;
  const slowConsumerMs = options.slowConsumerTimeoutMs ?? 10_000;
  const rate = options.bytesPerSecondPerIdentity ?? 256 * 1024 * 1024;
  const buckets = new Map<string, { tokens: number; at: number }>();

  /** What is kept of `credential`, verified for `identifier` (its subject). */
  const hold = (credential: Credential, identifier: string): HeldCredential => {
    let issuer = issuers.get(credential.issuer);
    if (issuer === undefined) {
      if (issuers.size >= MAX_ALIAS_RULES) issuers.clear();
      issuers.set(credential.issuer, issuer = flat(credential.issuer));
    }
    return {
      subject: credential.subject === identifier ? identifier : flat(credential.subject),
      issuer,
      id: flat(credential.id),
      expiresAt: credential.expiresAt,
      attributes: aliasAttributes(credential.attributes),
    };
  };

  const refuse = (reason: AdmissionRefusal) => {
    stats.refused.set(reason, (stats.refused.get(reason) ?? 0) + 1);
  };

  /** Token bucket per identity: waits (never drops) when a sender is over its rate. */
  const throttle = async (identifier: string, bytes: number) => {
    const now = performance.now();
    let bucket = buckets.get(identifier);
    if (bucket === undefined) buckets.set(identifier, bucket = { tokens: rate, at: now });
    bucket.tokens = Math.min(rate, bucket.tokens + (now - bucket.at) / 1000 * rate);
    bucket.at = now;
    bucket.tokens -= bytes;
    if (bucket.tokens < 0) {
      await new Promise((resolve) => setTimeout(resolve, -bucket.tokens / rate * 1000));
    }
  };

  /** Admissions in progress, by source (an IPv4 address, an IPv6 /64). */
  const pendingBySource = new Map<string, number>();
  const maxPendingPerSource = options.maxPendingPerSource ?? 32;
  const admission: AdmissionContext = {
    identity: options.identity,
    credential: options.credential,
    trust,
    revocations,
    timeoutMs: options.admissionTimeoutMs ?? 5000,
  };

  const admitPeer = async (conn: FramedConnection): Promise<Peer | null> => {
    const remote = `${conn.remoteAddr.hostname}:${conn.remoteAddr.port}`;
    const fail = (reason: AdmissionRefusal) => {
      refuse(reason);
      // A silent peer is counted, not logged: scanners would fill the log.
      if (reason !== "timeout") logger.warn("admission refused", { remote, reason });
      conn.close(`admission refused: ${reason}`);
      return null;
    };
    // Cheapest first: a source with too many admissions in progress waits
    // for none of the work below.
    // The transport's notion of a source (an IPv4 address, IPv4-mapped
    // IPv6 as IPv4, an IPv6 /64 in canonical form), so no spelling of one
    // address escapes the count.
    const source = connectionSource(conn.remoteAddr.hostname);
    const pending = pendingBySource.get(source) ?? 0;
    if (pending >= maxPendingPerSource) {
      await sendRefused(conn, "too_many_pending");
      return fail("too_many_pending");
    }
    pendingBySource.set(source, pending + 1);
    let outcome: Admitted | AdmissionRefusal;
    try {
      outcome = await admit(conn, admission);
    } finally {
      const left = (pendingBySource.get(source) ?? 1) - 1;
      if (left === 0) pendingBySource.delete(source);
      else pendingBySource.set(source, left);
    }
    if (typeof outcome === "string") return fail(outcome);
    const { identity, credential, relayNonce } = outcome;
    const mine = perIdentity.get(identity.identifier);
    if ((mine?.connections ?? 0) >= (options.maxConnectionsPerIdentity ?? 64)) {
      await sendRefused(conn, "too_many_connections");
      return fail("too_many_connections");
    }
    const counted = mine ?? { identifier: flat(identity.identifier), connections: 0 };
    counted.connections++;
    perIdentity.set(counted.identifier, counted);
    const identifier = counted.identifier;
    const held = hold(credential, identifier);
    const peer: Peer = {
      address: flatHex("c.", crypto.getRandomValues(new Uint8Array(8))),
      conn,
      identifier,
      primaryKey: identity.primaryKey,
      admittedWith: held,
      credential: held,
      relayNonce: flatHex("", relayNonce),
      aliases: null,
      lastActive: Date.now(),
      sendingSince: 0,
      sending: 0,
    };
    peers.set(peer.address, peer);
    stats.admitted++;
    conn.setMaxReceiveFrameBytes(conn.maxFrameBytes);
    // A member gone by now is seen by the frames loop, which removes it:
    // throwing here would leave it in the tables for good.
    await sendAdmitted(conn, identifier).catch(() => {});
    logger.info("connection admitted", { member: identity.identifier, address: peer.address });
    return peer;
  };

  const reply = async (peer: Peer, back: readonly string[], body: unknown[]) => {
    if (back.length === 0) return;
    await peer.conn.send(encodeRoutedMessage(back, ["relay"], encodeCbor([2, ...body])))
      .catch(() => {});
  };

  const control = async (peer: Peer, frame: Uint8Array) => {
    let message;
    let request;
    try {
      message = decodeRoutedMessage(frame);
      request = decodeCbor(message.payload, { maxBytes: 16 * 1024 }) as unknown[];
    } catch {
      stats.dropped++;
      return;
    }
    if (!Array.isArray(request) || request[0] !== CONTROL_VERSION) {
      stats.dropped++;
      return;
    }
    // [2, "ping"]: a member with nothing to forward keeps its connection
    // (and a gateway its alias) from the idle sweep.
    if (request[1] === "ping") return;
    // [2, "refresh", credential, signature]: a fresher credential for this
    // connection, so it outlives the one it was admitted with (return
    // routes name this connection; reconnecting would break every channel
    // through it). Signed by the admitted member's key and bound to this
    // relay and connection (refreshMessage): nobody else can present one.
    // It changes expiry and revocation, never alias rights: those are the
    // admission's.
    if (request[1] === "refresh") {
      const [, , encoded, signature] = request;
      let code = "bad_signature";
      if (
        encoded instanceof Uint8Array && signature instanceof Uint8Array &&
        await verifyEd25519(
          peer.primaryKey,
          refreshMessage(options.identity.identifier, fromHex(peer.relayNonce), encoded),
          signature,
        )
      ) {
        try {
          const fresh = await verifyCredential(encoded, {
            trust,
            subject: peer.identifier,
            subjectKey: peer.primaryKey,
            revocations,
          });
          peer.credential = hold(fresh, peer.identifier);
          await reply(peer, message.return, ["refreshed", peer.credential.expiresAt]);
          return;
        } catch (error) {
          code = error instanceof CredentialError ? error.code : "bad_credential";
        }
      }
      logger.warn("credential refresh refused", { member: peer.identifier, code });
      await reply(peer, message.return, ["refused", "refresh", code]);
      return;
    }
    // [2, "lookup", alias]: whether a gateway holds the alias here, so an
    // edge tries the next relay at once instead of waiting out a handshake
    // whose frames this relay would drop. It tells no more than such a
    // handshake attempt would.
    if (request[1] === "lookup" && typeof request[2] === "string") {
      const holders = aliases.get(request[2]);
      const present = holders !== undefined && holders.some((p) => !p.conn.isClosed);
      await reply(peer, message.return, ["alias", request[2].slice(0, 64), present]);
      return;
    }
    if (request[1] !== "register") {
      stats.dropped++;
      return;
    }
    const alias = request[2];
    if (typeof alias !== "string" || !ALIAS.test(alias) || !allows(peer.admittedWith, alias)) {
      stats.aliasRefused++;
      logger.warn("alias registration refused", { member: peer.identifier, alias: String(alias) });
      await reply(peer, message.return, ["refused", String(alias).slice(0, 64), "not_allowed"]);
      return;
    }
    const list = aliases.get(alias) ?? [];
    if (!list.includes(peer)) list.push(peer);
    aliases.set(alias, list);
    (peer.aliases ??= new Set()).add(alias);
    const role = list[0] === peer ? "active" : "standby";
    logger.info("alias registered", { alias, member: peer.identifier, role });
    await reply(peer, message.return, ["registered", alias, role]);
  };

  const forward = async (peer: Peer, frame: Uint8Array) => {
    options.tap?.(frame);
    const first = firstOnwardAddress(frame);
    if (first === null) {
      // A malformed header closes this connection only.
      peer.conn.close("malformed message");
      return;
    }
    if (first === "relay") return await control(peer, frame);
    let destination: Peer | undefined;
    if (first.startsWith("forward.")) destination = aliases.get(first.slice(8))?.[0];
    else destination = peers.get(first);
    if (destination === undefined || destination.conn.isClosed) {
      stats.dropped++;
      return;
    }
    const split = forwardRoutedHeader(frame, peer.address);
    if (split === null) {
      peer.conn.close("malformed message");
      return;
    }
    // Written as the new header and the payload where it lies in the
    // source's read buffer: no copy. The view stays valid because this
    // source is not read again until the send below has settled.
    let { header, payload } = split;
    if (options.tamper) {
      const whole = new Uint8Array(header.length + payload.length);
      whole.set(header);
      whole.set(payload, header.length);
      header = options.tamper(whole);
      payload = new Uint8Array(0);
    }
    await throttle(peer.identifier, frame.length);
    // No timer per frame: the sweep closes a destination whose pending send
    // has waited longer than the slow-consumer timeout.
    if (destination.sending++ === 0) destination.sendingSince = Date.now();
    try {
      await destination.conn.send(header, payload);
      stats.framesForwarded++;
      stats.bytesForwarded += frame.length;
    } catch {
      stats.dropped++;
    } finally {
      if (--destination.sending === 0) destination.sendingSince = 0;
      else destination.sendingSince = Date.now();
    }
  };

  const remove = (peer: Peer) => {
    peers.delete(peer.address);
    const counted = perIdentity.get(peer.identifier);
    if (counted !== undefined && --counted.connections === 0) perIdentity.delete(peer.identifier);
    for (const alias of peer.aliases ?? []) {
      const list = aliases.get(alias)?.filter((p) => p !== peer) ?? [];
      if (list.length === 0) aliases.delete(alias);
      else {
        aliases.set(alias, list);
        logger.info("standby took over alias", { alias, member: list[0].identifier });
      }
    }
  };

  const ended = (error: unknown) => {
    logger.debug("connection ended", {
      error: error instanceof Error ? error.message : String(error),
    });
  };

  /**
   * Forwards `peer`'s frames, one at a time, until its connection ends,
   * then removes it. Callbacks on the one pending `next()` rather than an
   * async loop: most of a relay's connections are waiting for bytes, and a
   * suspended async function would cost each of them some 600 bytes more
   * than these two callbacks. Neither throws (a throw would be an
   * unhandled rejection).
   */
  const relayFrames = (peer: Peer): void => {
    // Admitted: nothing is known to be waiting, so it waits for its first
    // frame parked (reading that frame unparks it if more than the small
    // buffer's worth came). Admission's own frames do not count as traffic.
    options.onAdmitted?.(peer.conn, peer.address);
    peer.conn.park();
    const frames = peer.conn.frames();
    const end = (error?: unknown) => {
      try {
        if (error !== undefined) ended(error);
        remove(peer);
      } catch (error) {
        ended(error);
      } finally {
        peer.conn.close("closed");
      }
    };
    // Called with nothing: ask for the next frame; with a result: forward it.
    const step = (result: IteratorResult<Uint8Array> | void): void => {
      try {
        if (result === undefined) frames.next().then(step, end);
        else if (result.done) end();
        else {
          peer.lastActive = Date.now();
          forward(peer, result.value).then(step, end);
        }
      } catch (error) {
        end(error);
      }
    };
    step();
  };

  const serve = async (conn: FramedConnection) => {
    let peer: Peer | null = null;
    try {
      peer = await admitPeer(conn);
    } catch (error) {
      ended(error);
    }
    if (peer === null) conn.close("closed");
    else relayFrames(peer);
  };

  const listener: FramedListener = listenTcp({
    hostname: options.hostname,
    port: options.port,
    tls: options.tls,
    maxFrameBytes: options.maxFrameBytes,
    maxConnections: options.maxConnections ?? 20_000,
    // Before admission a peer's frames are admission messages, at most
    // 48 KiB: a header declaring more closes the connection at once
    // instead of making the relay reserve for it (raised on admission).
    maxReceiveFrameBytes: Math.min(MAX_ADMISSION_BYTES, options.maxFrameBytes ?? Infinity),
    readBufferBytes: options.readBufferBytes ?? 4096,
    // Parked connections (quiet since the sweep before, or just admitted)
    // wait with 512 bytes; the others keep a pooled 4 KiB buffer, so a
    // connection with traffic reads as if there were no parking.
    idleReadBufferBytes: options.idleReadBufferBytes === 0
      ? undefined
      : Math.min(options.idleReadBufferBytes ?? 512, options.readBufferBytes ?? 4096),
    writeBufferBytes: 16 * 1024,
    onConnection: (conn) => void serve(conn),
  });

  // The sweep closes idle connections and those whose credential expired
  // (60 s skew, as verifiers allow): a credential admits a connection only
  // while it is valid; members present a fresh one on the connection with
  // a signed refresh (control message "refresh") before it expires. And it
  // parks connections that read no frame since the sweep before: they wait
  // for bytes with a small buffer (one timer for all, not one per
  // connection; a busy connection is never parked, so never pays for it).
  let lastSweep = Date.now();
  const sweep = setInterval(() => {
    const now = Date.now();
    const quietBefore = lastSweep;
    lastSweep = now;
    for (const peer of peers.values()) {
      if (now - peer.lastActive > idleMs) {
        logger.info("closing idle connection", { member: peer.identifier });
        peer.conn.close("idle timeout");
      } else if (peer.sendingSince !== 0 && now - peer.sendingSince > slowConsumerMs) {
        logger.warn("closing a slow consumer", { member: peer.identifier });
        peer.conn.close("slow consumer");
      } else if (now / 1000 > peer.credential.expiresAt + 60) {
        logger.info("closing a connection whose credential expired", { member: peer.identifier });
        peer.conn.close("credential expired");
      } else if (peer.lastActive < quietBefore) {
        peer.conn.park();
      }
    }
  }, Math.max(100, Math.min(Math.floor(idleMs / 4), Math.floor(slowConsumerMs / 4), 5000)));

  const metrics = new Metrics();
  metrics.register("nexus_relay_connections", "gauge", "Admitted connections.", () => peers.size);
  metrics.register("nexus_relay_aliases", "gauge", "Registered aliases.", () => aliases.size);
  metrics.register(
    "nexus_relay_admitted_total",
    "counter",
    "Connections admitted.",
    () => stats.admitted,
  );
  metrics.register(
    "nexus_relay_admissions_refused_total",
    "counter",
    "Admissions refused, by reason.",
    () => [...stats.refused].map(([reason, n]) => [{ reason }, n] as [{ reason: string }, number]),
  );
  metrics.register(
    "nexus_relay_frames_forwarded_total",
    "counter",
    "Frames forwarded.",
    () => stats.framesForwarded,
  );
  metrics.register(
    "nexus_relay_bytes_forwarded_total",
    "counter",
    "Bytes forwarded.",
    () => stats.bytesForwarded,
  );
  metrics.register(
    "nexus_relay_frames_dropped_total",
    "counter",
    "Frames with no destination.",
    () => stats.dropped,
  );
  metrics.register(
    "nexus_relay_alias_refused_total",
    "counter",
    "Alias registrations refused.",
    () => stats.aliasRefused,
  );
  options.moreMetrics?.(metrics);
  const ops: OpsServer | null = options.ops
    ? startOpsServer({ ...options.ops, metrics, logger })
    : null;

  logger.info("relay listening", { address: `${listener.addr.hostname}:${listener.addr.port}` });

  return {
    addr: listener.addr,
    stats,
    opsAddr: ops?.addr ?? null,
    connections: () => peers.size,
    aliases: () => new Map([...aliases].map(([alias, list]) => [alias, list[0].identifier])),
    async applyRevocations(list) {
      const changed = await revocations.apply(list, trust);
      if (!changed) return;
      for (const peer of [...peers.values()]) {
        // The admission credential too: it decides the connection's alias
        // rights, which a refresh does not replace, so its revocation must
        // end them even after the connection took a fresher credential.
        if (revocations.isRevoked(peer.credential) || revocations.isRevoked(peer.admittedWith)) {
          logger.info("closing a revoked member's connection", { member: peer.identifier });
          peer.conn.close("revoked");
        }
      }
    },
    async close() {
      clearInterval(sweep);
      await ops?.close();
      await listener.close();
    },
  };
}

/** Options of {@link run}. */
export interface RunOptions {
  /** Stops the relay when it aborts. */
  signal: AbortSignal;
  logger?: Logger;
  /** Called once with the LISTENING line, when the relay listens. */
  announce?: (line: string) => void;
}

/** Where the relay keeps its last credential (public data; 0600 anyway). */
const CREDENTIAL_FILE = "relay.credential";

/**
 * The relay's membership: its identity (from its state directory), its
 * credential (role `relay` and its addresses), kept fresh by the member
 * runtime when an authority is configured, and the revocation list.
 * Without an authority the credential stored in the state directory is
 * used as long as it is valid (a provisioned relay, as in tests).
 */
async function membership(
  config: CheckedRelayConfig,
  trust: TrustStore,
  logger: Logger,
): Promise<
  {
    identity: Identity;
    member: Member | null;
    credential: () => Credential | null;
    close(): Promise<void>;
  }
> {
  const identity = await loadOrCreateIdentity(config.state, "relay");
  const credentialFile = `${config.state}/${CREDENTIAL_FILE}`;
  if (config.authority === undefined) {
    let stored: Credential;
    try {
      stored = await verifyCredential(await Deno.readFile(credentialFile), {
        trust,
        subject: identity.identifier,
        subjectKey: identity.primaryKey,
      });
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable) throw error;
      throw new ConfigError(
        "invalid",
        `the relay has no valid credential in ${credentialFile}: give it "authority" and ` +
          `"ticket-file" (role=relay, relay_addresses=[this relay's addresses]) to enroll`,
      );
    }
    // As long as it is valid, and not a moment longer: an expired one would
    // be refused by every member anyway, and offering it hides the cause.
    let warned = false;
    const credential = () => {
      if (Date.now() / 1000 <= stored.expiresAt + DEFAULT_SKEW_SECONDS) return stored;
      if (!warned) {
        warned = true;
        logger.error("the relay's stored credential has expired; it admits no one", {
          file: credentialFile,
        });
      }
      return null;
    };
    return { identity, member: null, credential, close: async () => {} };
  }
  const ticket = config["ticket-file"] === undefined
    ? undefined
    : await readSecretLine(config["ticket-file"], "ticket-file", { refuse: 0o077 });
  const node = new Node({ name: "relay-authority" });
  const transport = new TcpTransport(node);
  const member = await startMember({
    role: "relay",
    identity,
    trust,
    node,
    transport,
    authorities: config.authority.map((a) => parseHostPort(a, "authority")),
    enrollment: () => ticket ? { ticket } : undefined,
    credentialFile,
    attestationTtlSeconds: config["attestation-ttl"],
    logger,
  });
  try {
    await member.firstCredential;
  } catch (error) {
    await member.close();
    await transport.close();
    throw error;
  }
  return {
    identity,
    member,
    credential: () => member.credential,
    async close() {
      await member.close();
      await transport.close();
    },
  };
}

/**
 * Runs the relay until `signal` aborts: reads its trust anchors and TLS
 * files, takes its identity and credential (enrolling with its ticket on
 * the first start), listens, announces `LISTENING host:port
 * [metrics=host:port]`, follows the authority's revocations, then stops.
 */
export async function run(config: CheckedRelayConfig, options: RunOptions): Promise<void> {
  const logger = options.logger ?? silentLogger;
  const trust = new TrustStore();
  for (const file of config.trust) trust.add(await importIdentity(await Deno.readTextFile(file)));
  const tls = config["tls-cert"] !== undefined && config["tls-key"] !== undefined
    ? {
      cert: await Deno.readTextFile(config["tls-cert"]),
      key: await Deno.readTextFile(config["tls-key"]),
    }
    : undefined;
  const joined = await membership(config, trust, logger);
  const relay = startRelay({
    ...parseHostPort(config.listen, "listen"),
    tls,
    trust,
    identity: joined.identity,
    credential: joined.credential,
    maxConnections: config["max-connections"],
    maxConnectionsPerIdentity: config["max-per-identity"],
    maxPendingPerSource: config["max-pending-per-source"],
    bytesPerSecondPerIdentity: config.rate,
    idleTimeoutMs: config["idle-timeout"] * 1000,
    ops: config.metrics === "off" ? undefined : parseHostPort(config.metrics, "metrics"),
    // Its credential, attestation, authority link and revocation serial
    // (nexus_relay_credential_expiry_seconds, …_authority_connected,
    // …_revocation_serial), as the other services show theirs.
    moreMetrics: (metrics) => joined.member?.registerMetrics(metrics, "nexus_relay"),
    logger,
  });
  joined.member?.onRevocations(async (list) => {
    await relay.applyRevocations(list);
    logger.info("revocation list applied", { serial: list.serial });
  });
  // A list the member runtime applied before the relay existed.
  for (const issuer of trust.identifiers()) {
    const held = joined.member?.revocations.current(issuer);
    if (held !== undefined) await relay.applyRevocations(held);
  }
  options.announce?.(
    `LISTENING ${formatHostPort(relay.addr)} ${joined.identity.identifier}` +
      (relay.opsAddr ? ` metrics=${formatHostPort(relay.opsAddr)}` : ""),
  );
  await whenAborted(options.signal);
  logger.info("shutting down");
  await relay.close();
  await joined.close();
}
