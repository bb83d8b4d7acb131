/**
 * Identity-bound secure channels over routes (docs/design.md §4, §5).
 *
 * Each channel end is two workers on its node:
 *
 * - the **encryptor** (`sce.<hex>`, the channel's public {@link SecureChannel.address}):
 *   local workers send to `[encryptor, ...route at the peer]`; it seals the
 *   inner message and routes the record to the peer's decryptor;
 * - the **decryptor** (`scd.<hex>`): receives handshake messages and
 *   records from the peer, opens them, and delivers the inner message on
 *   this node with the return route `[encryptor, ...]` and the peer's
 *   verified identity and current credential in `local.secureChannel`.
 *
 * Wire payloads between the two ends (after the routing header):
 *
 * ```
 * 0x01 noise message 1   initiator → listener address (no payload)
 * 0x02 noise message 2   responder → initiator decryptor (responder's IdentityPayload)
 * 0x03 noise message 3   initiator → responder decryptor (initiator's IdentityPayload)
 * 0x04 record            either way (transport_cipher.ts)
 * ```
 *
 * Record plaintexts start with a kind byte: 0x01 a routed message
 * (routed_message.ts layout), 0x02 a credential refresh (an encoded
 * credential), 0x03 close (UTF-8 reason), 0x05 ready (the responder
 * accepted the initiator; the initiator's connect resolves only then),
 * 0x06 keepalive (empty; sent when this end has been quiet for a third of
 * the idle timeout, so a channel carrying one-way traffic stays open and a
 * dead path is noticed on both ends), 0x07 keepalive answer (empty; sent
 * for each keepalive received, so an end with a short idle timeout learns
 * the path is alive even when the peer's own timeout is long; never
 * answered, so the two cannot loop).
 *
 * The handshake drivers that build channels (`connectSecureChannel`,
 * `listenSecureChannels`) are in handshake.ts.
 *
 * @module
 */
import type { SecureChannelInfo } from "./channel_info.ts";
import type { Credential } from "../credential/credential.ts";
import { HandshakeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Node } from "../routing/node.ts";
import {
  type Address,
  decodeRoutedMessage,
  encodeRoutedHeader,
  type PayloadLease,
  type Route,
  type RoutedMessage,
} from "../routing/routed_message.ts";
import type { ChannelIdentity } from "./channel_identity.ts";
import { ReorderBuffer } from "./reorder_buffer.ts";
import { REPLAY_WINDOW } from "./replay_window.ts";
import {
  type OpenedRecord,
  type OpenResult,
  ReceiveCipher,
  SendCipher,
} from "./transport_cipher.ts";
import { checkCredential, type TrustPolicy, type VerifiedPeer } from "./trust_policy.ts";

/** Prologue of every handshake: protocol label and version (docs/design.md §4). */
export const PROLOGUE: Uint8Array = new TextEncoder().encode("nexus.secure_channel.v1");

/**
 * How long authenticated records wait behind a missing one before it is
 * taken as lost (ms). Only when a record is missing: in-order records are
 * delivered at once, with no timer.
 */
export const DEFAULT_REORDER_WAIT_MS = 1000;

/** Records of one channel decrypting at once before its reader waits. */
export const RECEIVE_PIPELINE = 8;
/** Delivered messages of one channel on their way onward before the next record waits. */
export const DELIVERY_PIPELINE = 8;
/**
 * Largest application payload one message may carry: a record with its
 * routes must fit a transport frame (256 KiB by default) with room to
 * spare. Portals send at most 64 KiB at a time.
 */
export const MAX_MESSAGE_PAYLOAD = 192 * 1024;

/** @internal The wire kinds after the routing header. */
export const WIRE = { message1: 0x01, message2: 0x02, message3: 0x03, record: 0x04 } as const;
/** @internal The kinds of record plaintexts. */
export const KIND = {
  message: 0x01,
  refresh: 0x02,
  close: 0x03,
  ready: 0x05,
  keepalive: 0x06,
  keepaliveAnswer: 0x07,
} as const;

/** Options common to both ends. */
export interface ChannelOptions {
  /** The node whose workers the channel's encryptor and decryptor become. */
  node: Node;
  /** This end's identity, attestation and credentials, presented in the handshake. */
  local: ChannelIdentity;
  /** What the peer must satisfy, at the handshake and on every credential refresh. */
  policy: TrustPolicy;
  /** Milliseconds for the whole handshake (default 10,000). */
  handshakeTimeoutMs?: number;
  /** Milliseconds without a record from the peer before closing (default 300,000). */
  idleTimeoutMs?: number;
  /** Milliseconds records wait behind a missing one before it counts as lost (default {@link DEFAULT_REORDER_WAIT_MS}). */
  reorderWaitMs?: number;
  /** Records per key (default: transport_cipher's). */
  rekeyInterval?: number;
  /** Where the channel logs its opening, closing and dropped records (default: silent). */
  logger?: Logger;
}

/** Why a channel closed. */
export interface CloseInfo {
  /** Why, in words: e.g. `idle timeout`, `peer credential expired`, or the peer's reason. */
  readonly reason: string;
  /** True when the peer closed it. */
  readonly byPeer: boolean;
}

/** Counters of one channel. */
export interface ChannelStats {
  /** Records sealed and routed towards the peer. */
  sent: number;
  /** Records from the peer that authenticated. */
  received: number;
  /** Records dropped: replayed, too old, forged, malformed, or of an unknown kind. */
  dropped: number;
  /**
   * Records that never arrived: counters skipped after waiting for them
   * (a relay dropped them). Ordered streams over the channel (portal
   * sessions) end with an error when they miss one.
   */
  lost: number;
}

/** @internal `kind` followed by `body`, in one allocation. */
export function frame(kind: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + body.length);
  out[0] = kind;
  out.set(body, 1);
  return out;
}

/** @internal */
export const utf8: TextEncoder = new TextEncoder();
const NO_PREFIX = new Uint8Array(0);
const fromUtf8 = new TextDecoder();

/** An established channel end. */
export class SecureChannel {
  /** Send here (first address of the onward route) to reach the peer. */
  readonly address: Address;
  /** The decryptor's address: where the peer's records arrive. */
  readonly decryptorAddress: Address;
  /** The peer as verified at the handshake: its identity, attestation and credential. */
  readonly peer: VerifiedPeer;
  /** Resolves, once, when the channel closes, by either end; never rejects. */
  readonly closed: Promise<CloseInfo>;
  /** Live record counters of this channel. */
  readonly stats: ChannelStats = { sent: 0, received: 0, dropped: 0, lost: 0 };
  #node: Node;
  #policy: TrustPolicy;
  #remote: Route;
  #send: SendCipher;
  #receive: ReceiveCipher;
  #credential: Credential | null;
  #logger: Logger;
  #resolveClosed!: (info: CloseInfo) => void;
  #isClosed = false;
  /** Records are routed in counter order even when seals finish out of order. */
  #sendChain: Promise<unknown> = Promise.resolve();
  /** Records in the chain not yet routed (asynchronous seals). */
  #sealing = 0;
  #receiveChain: Promise<unknown> = Promise.resolve();
  /** Records opened but not yet handled. */
  #opening = 0;
  /** Delivered messages still on their way onward (bounded by DELIVERY_PIPELINE). */
  #delivering: Promise<boolean>[] = [];
  /** Authenticated records, delivered in counter order (reorder_buffer.ts). */
  #order = new ReorderBuffer<OpenedRecord>({ window: REPLAY_WINDOW });
  /** Set while records wait behind a gap: gives up on it after `#reorderWaitMs`. */
  #gapTimer: ReturnType<typeof setTimeout> | undefined;
  #reorderWaitMs: number;
  #idleMs: number;
  #lastReceived = Date.now();
  #lastSent = Date.now();
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #expiryTimer: ReturnType<typeof setTimeout> | undefined;
  #info: SecureChannelInfo;
  /** For the initiator: settles when the responder says ready or refuses. */
  #ready: PromiseWithResolvers<void> | null;

  /** @internal Built by the handshake drivers (handshake.ts). */
  constructor(init: {
    node: Node;
    policy: TrustPolicy;
    encryptor: Address;
    decryptor: Address;
    remote: Route;
    peer: VerifiedPeer;
    send: SendCipher;
    receive: ReceiveCipher;
    idleTimeoutMs: number;
    reorderWaitMs?: number;
    logger: Logger;
    awaitReady: boolean;
  }) {
    this.#node = init.node;
    this.#policy = init.policy;
    this.address = init.encryptor;
    this.decryptorAddress = init.decryptor;
    this.#remote = init.remote;
    this.peer = init.peer;
    this.#credential = init.peer.credential;
    this.#send = init.send;
    this.#receive = init.receive;
    this.#idleMs = init.idleTimeoutMs;
    this.#reorderWaitMs = init.reorderWaitMs ?? DEFAULT_REORDER_WAIT_MS;
    this.#logger = init.logger;
    this.#ready = init.awaitReady ? Promise.withResolvers<void>() : null;
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
    this.#info = {
      address: init.decryptor,
      peer: init.peer.identifier,
      identity: init.peer.identity,
      credential: () => this.#credential,
      closed: this.closed,
    };
    init.node.register(init.encryptor, (message) => this.#encrypt(message));
    this.#armIdle();
    this.#armExpiry();
  }

  /** The route this end's records take to the peer (its first hop: the connection they leave by). */
  get remoteRoute(): Route {
    return this.#remote;
  }

  /** The peer's current credential: the newest verified refresh, or the handshake's. */
  get credential(): Credential | null {
    return this.#credential;
  }

  /** True once closed. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** @internal Resolves when the responder accepted this initiator. */
  get ready(): Promise<void> {
    return this.#ready?.promise ?? Promise.resolve();
  }

  /** Sends `payload` to the worker at `onward` on the peer's node. */
  send(onward: Route, payload: Uint8Array, returnRoute: Route = []): Promise<void> {
    return this.#encrypt({ onward: [this.address, ...onward], return: returnRoute, payload });
  }

  /** Presents a new credential to the peer inside the channel. */
  refreshCredential(credential: Uint8Array): Promise<void> {
    return this.#sendRecord(frame(KIND.refresh, credential));
  }

  /**
   * Checks the peer's current credential again (after a revocation list or
   * trust anchor update) and closes the channel if it no longer passes.
   * Returns true when the channel stays open.
   */
  async revalidate(): Promise<boolean> {
    if (this.#isClosed) return false;
    const credential = this.#credential;
    if (credential === null) {
      if (this.#policy.requireCredential === false) return true;
      await this.close("no credential");
      return false;
    }
    try {
      await checkCredential(
        credential,
        this.peer.identifier,
        this.#policy,
        this.peer.identity.primaryKey,
      );
      return true;
    } catch (error) {
      await this.close(
        error instanceof HandshakeError ? error.message : "credential no longer valid",
      );
      return false;
    }
  }

  /**
   * Closes the channel, telling the peer why (best effort). The promise
   * settles once the close record has been handed to the route.
   */
  close(reason = "closed"): Promise<void> {
    if (this.#isClosed) return Promise.resolve();
    const told = this.#sendRecord(frame(KIND.close, utf8.encode(reason.slice(0, 200))))
      .catch(() => {});
    this.#finish(reason, false);
    return told;
  }

  #finish(reason: string, byPeer: boolean): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#expiryTimer);
    clearTimeout(this.#gapTimer);
    this.#node.unregister(this.address);
    this.#node.unregister(this.decryptorAddress);
    this.#ready?.reject(
      new HandshakeError(
        byPeer ? "refused" : "closed",
        byPeer ? `the peer refused this end: ${reason}` : `channel closed: ${reason}`,
      ),
    );
    this.#ready?.promise.catch(() => {});
    this.#logger.info("secure channel closed", {
      peer: this.peer.identifier,
      reason,
      by_peer: byPeer,
    });
    this.#resolveClosed({ reason, byPeer });
  }

  #armIdle(): void {
    const beat = Math.max(1, Math.floor(this.#idleMs / 3));
    const check = () => {
      if (this.#isClosed) return;
      const now = Date.now();
      if (now - this.#lastReceived >= this.#idleMs) {
        this.close("idle timeout");
        return;
      }
      if (now - this.#lastSent >= beat) {
        this.#sendRecord(Uint8Array.of(KIND.keepalive)).catch(() => {});
      }
      this.#idleTimer = unref(setTimeout(check, beat));
    };
    this.#idleTimer = unref(setTimeout(check, beat));
  }

  #armExpiry(): void {
    clearTimeout(this.#expiryTimer);
    const credential = this.#credential;
    if (credential === null) return;
    const skew = this.#policy.skewSeconds ?? 60;
    const now = this.#policy.now?.() ?? Date.now() / 1000;
    const ms = Math.max(0, (credential.expiresAt + skew - now) * 1000);
    // setTimeout holds at most 2^31 - 1 ms; re-arm in steps for longer credentials.
    this.#expiryTimer = unref(setTimeout(() => {
      if (ms > 0x7fff_ffff) this.#armExpiry();
      else this.close("peer credential expired");
    }, Math.min(ms, 0x7fff_ffff)));
  }

  /**
   * Seals `prefix || plaintext` as the next record and routes it to the
   * peer; settles once the route has taken it (written to the socket).
   *
   * Records leave in counter order. When nothing waits for an
   * asynchronous seal and this one seals in the call (always with a
   * synchronous backend), it is sealed and routed now: routing starts
   * synchronously, so it queues behind every earlier record, and the next
   * record need not wait for this one's write. Several records can so sit
   * in the connection's queue and leave in one write. Otherwise it waits
   * in the chain for the seals before it.
   */
  #sendRecord(plaintext: Uint8Array, prefix: Uint8Array = NO_PREFIX): Promise<void> {
    if (this.#isClosed) {
      return Promise.reject(new HandshakeError("closed", "the channel is closed"));
    }
    this.#lastSent = Date.now();
    const length = prefix.length + plaintext.length;
    if (this.#sealing === 0 && this.#send.sealsNow(length)) {
      let record: Uint8Array;
      try {
        // One byte of headroom takes the wire kind without another copy.
        record = this.#send.sealNow(plaintext, 1, prefix);
      } catch (error) {
        this.#sealFailed(error);
        return Promise.reject(error);
      }
      return this.#routeRecord(record);
    }
    this.#sealing++;
    const sealed = this.#send.seal(plaintext, 1, prefix);
    sealed.catch((error) => this.#sealFailed(error));
    let routed: Promise<void> = Promise.resolve();
    const started = this.#sendChain.then(() => sealed).then((record) => {
      routed = this.#routeRecord(record);
    }).finally(() => this.#sealing--);
    this.#sendChain = started.catch(() => {});
    return started.then(() => routed);
  }

  #sealFailed(error: unknown): void {
    if (error instanceof HandshakeError && error.code === "nonce_exhausted") {
      this.#finish("nonce space exhausted", false);
    }
  }

  #routeRecord(payload: Uint8Array): Promise<void> {
    payload[0] = WIRE.record;
    this.stats.sent++;
    return this.#node.route({ onward: this.#remote, return: [this.decryptorAddress], payload })
      .then((routed) => {
        if (!routed) this.#finish("route to the peer lost", false);
      });
  }

  #encrypt(message: RoutedMessage): Promise<void> {
    if (message.payload.length > MAX_MESSAGE_PAYLOAD) {
      return Promise.reject(
        new RangeError(
          `message of ${message.payload.length} bytes exceeds ${MAX_MESSAGE_PAYLOAD}; split it`,
        ),
      );
    }
    // The kind and the routes are sealed in front of the payload, which is
    // read where it is (no copy of it into a plaintext first).
    const header = encodeRoutedHeader(message.onward.slice(1), message.return, 1);
    header[0] = KIND.message;
    return this.#sendRecord(message.payload, header);
  }

  /**
   * @internal The decryptor's handler for records (0x04 payloads).
   *
   * Decryption is pipelined: `open` reads the record before returning, so
   * the transport may read the next frame while up to
   * {@link RECEIVE_PIPELINE} records decrypt. Authenticated plaintexts go
   * through the reorder buffer and are handled in counter order. Past that
   * depth the handler waits, which stops the transport reading:
   * backpressure instead of an unbounded queue.
   *
   * `lease`, when the record came out of another channel (this one is
   * nested in it): the record's memory, taken and given back as soon as
   * `open` has read it, which it does before returning.
   */
  receiveRecord(record: Uint8Array, lease?: PayloadLease): Promise<void> {
    if (this.#isClosed) {
      if (lease?.take()) lease.release();
      return Promise.resolve();
    }
    const opened = this.#receive.open(record);
    if (lease?.take()) lease.release();
    this.#opening++;
    const done = this.#receiveChain.then(() => opened).then((result) => this.#handle(result));
    this.#receiveChain = done.catch(() => {}).finally(() => this.#opening--);
    return this.#opening >= RECEIVE_PIPELINE
      ? this.#receiveChain.then(() => {})
      : Promise.resolve();
  }

  async #handle(result: OpenResult): Promise<void> {
    if (this.#isClosed) {
      if (result.ok) discard(result);
      return;
    }
    if (!result.ok) {
      this.stats.dropped++;
      this.#logger.debug("dropped a record", { peer: this.peer.identifier, reason: result.reason });
      return;
    }
    this.#lastReceived = Date.now();
    const { ready, lost, late } = this.#order.push(
      result.counter,
      result,
      result.plaintext.length,
    );
    if (late) {
      // Its gap was given up on and later records were delivered: it
      // cannot be delivered in order any more. Not kept by the reorder
      // buffer, not seen by anyone: its buffer can go back.
      discard(result);
      this.stats.dropped++;
      this.#logger.debug("dropped a late record", { peer: this.peer.identifier });
      return;
    }
    this.#lose(lost);
    await this.#deliver(ready);
  }

  /** Records given up on: counted and logged; ordered streams notice by their own numbers. */
  #lose(lost: number): void {
    if (lost === 0) return;
    this.stats.lost += lost;
    this.#logger.warn("records lost on the way; skipped", { peer: this.peer.identifier, lost });
  }

  /** Handles plaintexts in order, then watches the gap, if one is left. */
  async #deliver(ready: OpenedRecord[]): Promise<void> {
    for (const record of ready) {
      if (this.#isClosed) return;
      await this.#dispatch(record);
    }
    if (!this.#order.waiting) {
      clearTimeout(this.#gapTimer);
      this.#gapTimer = undefined;
    } else if (this.#gapTimer === undefined) {
      // A record that has not come within this long is taken as lost, so a
      // relay that drops one cannot hold back everything after it.
      this.#gapTimer = unref(setTimeout(() => {
        this.#gapTimer = undefined;
        this.#receiveChain = this.#receiveChain.then(() => {
          if (this.#isClosed) return;
          const { ready, lost } = this.#order.skipGap();
          this.#lose(lost);
          return this.#deliver(ready);
        }).catch(() => {});
      }, this.#reorderWaitMs));
    }
  }

  /**
   * One authenticated record's plaintext, by its kind byte.
   *
   * Who owns the plaintext, and until when: this channel, from `open`
   * (transport_cipher.ts) until here; meanwhile only the receive chain and
   * the reorder buffer hold it, and the buffer lets go of a record when it
   * returns it as ready. From here:
   *
   * - a routed message's plaintext goes to the worker it is delivered to,
   *   with the payload a view into it. That worker may keep it for good (a
   *   view kept, as CBOR decoding keeps byte strings, is safe: the memory
   *   is then never used again), or take `local.lease` (the record's loan,
   *   offered to it alone, untaken) and release it when it is done (a
   *   portal session: once the socket write completed), and only then is
   *   the buffer used again. This channel never reads the plaintext after
   *   routing it, nor takes or releases that loan itself;
   * - a credential refresh keeps its plaintext (the credential decoded
   *   from it holds views into it);
   * - a plaintext dropped here, that no one else has seen (malformed, of
   *   an unknown kind), goes back to the pool at once.
   */
  async #dispatch(record: OpenedRecord): Promise<void> {
    this.stats.received++;
    const plaintext = record.plaintext;
    const body = plaintext.subarray(1);
    switch (plaintext[0]) {
      case KIND.message: {
        let inner: RoutedMessage;
        try {
          inner = decodeRoutedMessage(body);
        } catch {
          discard(record);
          this.stats.dropped++;
          return;
        }
        // Routing starts in the call, so messages reach their workers in
        // order; up to DELIVERY_PIPELINE of them may still be on their way
        // onward (a router's next channel, a connection's queue) while the
        // next record is handled, and past that the oldest is waited for:
        // a pipeline instead of a write per record, and still a bound.
        const routed = this.#node.route({
          onward: inner.onward,
          return: [this.address, ...inner.return],
          payload: inner.payload,
          local: { secureChannel: this.#info, lease: record.lease },
        });
        this.#delivering.push(routed);
        if (this.#delivering.length >= DELIVERY_PIPELINE) await this.#delivering.shift();
        return;
      }
      case KIND.refresh:
        try {
          this.#credential = await checkCredential(
            body,
            this.peer.identifier,
            this.#policy,
            this.peer.identity.primaryKey,
          );
          this.#armExpiry();
          this.#logger.debug("peer refreshed its credential", { peer: this.peer.identifier });
        } catch (error) {
          this.close(error instanceof HandshakeError ? error.message : "bad credential refresh");
        }
        return;
      case KIND.close:
        this.#finish(fromUtf8.decode(body) || "closed by peer", true);
        return;
      case KIND.ready:
        this.#ready?.resolve();
        return;
      case KIND.keepalive:
        this.#sendRecord(Uint8Array.of(KIND.keepaliveAnswer)).catch(() => {});
        return;
      case KIND.keepaliveAnswer:
        return;
      default:
        discard(record);
        this.stats.dropped++;
    }
  }

  /** @internal Tells the initiator it was accepted. */
  sendReady(): Promise<void> {
    return this.#sendRecord(Uint8Array.of(KIND.ready));
  }
}

/**
 * A record's plaintext this channel drops before anyone else saw it: the
 * channel, its owner, takes its loan (if it has one) and gives it back.
 */
function discard(record: OpenedRecord): void {
  if (record.lease?.take()) record.lease.release();
}

/**
 * A channel's timers never keep a process alive on their own: a process
 * ends when its connections and listeners do.
 */
function unref(timer: ReturnType<typeof setTimeout>): ReturnType<typeof setTimeout> {
  Deno.unrefTimer(timer as unknown as number);
  return timer;
}
