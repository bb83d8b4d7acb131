/**
 * The handshake drivers: {@link connectSecureChannel} (initiator) and
 * {@link listenSecureChannels} (responder) run Noise XX over routes
 * (docs/protocol.md §15) and build a {@link SecureChannel} once both ends
 * have verified each other.
 *
 * ```
 * initiator                                responder (listener address)
 *   0x01 message 1 (e)             ──▶     decryptor registered, message 2 sent
 *                                  ◀──     0x02 message 2 (e, ee, s, es; its IdentityPayload)
 *   responder verified first,
 *   then 0x03 message 3            ──▶     initiator verified; a refusal goes back as a
 *   (s, se; its IdentityPayload)           close record inside the encryption
 *                                  ◀──     0x04 record "ready": the initiator's connect resolves
 * ```
 *
 * Both drivers share one setup ({@link beginHandshake}): the Noise state
 * over one snapshot of the local static key and its attestation, the
 * decryptor that waits for exactly one handshake message, the deadline,
 * and the teardown that leaves nothing registered when the handshake
 * fails.
 *
 * @module
 */
import { HandshakeError } from "../errors.ts";
import { silentLogger } from "../log.ts";
import type { Address, Route, RoutedMessage } from "../routing/routed_message.ts";
import { encodeIdentityPayload } from "./identity_payload.ts";
import { XXHandshake } from "./noise/handshake_state.ts";
import type { SplitKeys } from "./noise/symmetric_state.ts";
import type { ChannelIdentity } from "./channel_identity.ts";
import {
  type ChannelOptions,
  frame,
  KIND,
  PROLOGUE,
  SecureChannel,
  utf8,
  WIRE,
} from "./secure_channel.ts";
import { ReceiveCipher, SendCipher } from "./transport_cipher.ts";
import { type VerifiedPeer, verifyPeer } from "./trust_policy.ts";

/** A deadline waiting in a {@link DeadlineQueue}. */
interface Pending {
  /** When it expires, `performance.now()` milliseconds. */
  readonly at: number;
  /** Expired or cancelled. */
  done: boolean;
  readonly expire: () => void;
}

/**
 * The deadlines of one duration. They expire in the order they were set,
 * so one timer, armed for the oldest, serves them all: a listener's
 * handshakes each cost an array slot instead of a timer set and cleared
 * (tens of microseconds each under load). A cancelled deadline leaves the
 * front at once; the timer stops when none is left, so nothing keeps the
 * process alive.
 */
class DeadlineQueue {
  readonly #ms: number;
  #items: Pending[] = [];
  #head = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(ms: number) {
    this.#ms = ms;
  }

  add(expire: () => void): Pending {
    const pending: Pending = { at: performance.now() + this.#ms, done: false, expire };
    this.#items.push(pending);
    if (this.#timer === undefined) this.#arm();
    return pending;
  }

  cancel(pending: Pending): void {
    pending.done = true;
    this.#drop();
  }

  #arm(): void {
    const first = this.#items[this.#head];
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, first.at - performance.now()));
  }

  #fire(): void {
    this.#timer = undefined;
    const now = performance.now();
    const due: Pending[] = [];
    for (; this.#head < this.#items.length; this.#head++) {
      const pending = this.#items[this.#head];
      if (pending.done) continue;
      if (pending.at > now) break;
      pending.done = true;
      due.push(pending);
    }
    this.#drop();
    for (const pending of due) pending.expire();
  }

  /** Drops finished deadlines from the front; stops the timer when none is left. */
  #drop(): void {
    while (this.#head < this.#items.length && this.#items[this.#head].done) this.#head++;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
      if (this.#timer !== undefined) clearTimeout(this.#timer);
      this.#timer = undefined;
      return;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    if (this.#timer === undefined) this.#arm();
  }
}

/** One queue per handshake duration in use. */
const deadlineQueues = new Map<number, DeadlineQueue>();

/**
 * A handshake deadline. `check()` lets the handshake's own steps stop after
 * an await once the deadline has passed, so no state is built after the
 * caller was told `timeout`.
 */
function deadline(ms: number): { promise: Promise<never>; cancel(): void; check(): void } {
  let queue = deadlineQueues.get(ms);
  if (queue === undefined) {
    queue = new DeadlineQueue(ms);
    deadlineQueues.set(ms, queue);
  }
  let expired = false;
  const error = () =>
    new HandshakeError("timeout", `secure channel handshake timed out after ${ms} ms`);
  const { promise, reject } = Promise.withResolvers<never>();
  promise.catch(() => {});
  const pending = queue.add(() => {
    expired = true;
    reject(error());
  });
  return {
    promise,
    cancel: () => queue.cancel(pending),
    check() {
      if (expired) throw error();
    },
  };
}

/** A message whose payload outlives the handler call (transports lend views). */
function copyOf(message: RoutedMessage): RoutedMessage {
  return { onward: message.onward, return: message.return, payload: message.payload.slice() };
}

/** The last IdentityPayload a channel identity presented, and copies of what it holds. */
interface PresentedPayload {
  readonly fields: readonly Uint8Array[];
  readonly encoded: Uint8Array;
}

const presented = new WeakMap<ChannelIdentity, PresentedPayload>();

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The encoded IdentityPayload of these fields: encoded again only when one
 * of them differs, byte for byte, from the last handshake's (a renewal, new
 * credentials), so a listener does not re-encode the same bytes for every
 * peer.
 */
function identityPayloadOf(
  local: ChannelIdentity,
  history: Uint8Array,
  attestation: Uint8Array,
  credentials: readonly Uint8Array[],
): Uint8Array {
  const fields = [history, attestation, ...credentials];
  const last = presented.get(local);
  if (
    last !== undefined && last.fields.length === fields.length &&
    fields.every((field, i) => sameBytes(field, last.fields[i]))
  ) {
    return last.encoded;
  }
  const encoded = encodeIdentityPayload({ history, attestation, credentials });
  presented.set(local, { fields: fields.map((field) => field.slice()), encoded });
  return encoded;
}

/** One handshake in progress, as both drivers use it. */
interface HandshakeRun {
  readonly noise: XXHandshake;
  /** This end's decryptor: where the peer's handshake messages and records arrive. */
  readonly decryptor: Address;
  /** The one handshake message this end waits for (copied). */
  readonly reply: Promise<RoutedMessage>;
  readonly limit: ReturnType<typeof deadline>;
  /** This end's IdentityPayload (history, attestation of the snapshot's key, credentials now). */
  identityPayload(): Uint8Array;
  /** Builds the channel from Split()'s keys; from then on the decryptor hands it records. */
  establish(init: {
    keys: SplitKeys;
    peer: VerifiedPeer;
    remote: Route;
    send?: SendCipher;
  }): SecureChannel;
  /** Tears down whatever was built; nothing stays registered. */
  abandon(): void;
}

/**
 * The setup both drivers share. The local static key and its attestation
 * are read once, here: a renewal during the handshake (channel_identity.ts)
 * must not pair this handshake's key with another key's attestation.
 */
function beginHandshake(options: ChannelOptions, initiator: boolean): HandshakeRun {
  const { node, local } = options;
  const { staticKeyPair, attestation } = local;
  const noise = new XXHandshake({ initiator, prologue: PROLOGUE, staticKeyPair });
  let channel: SecureChannel | null = null;
  const expected = initiator ? WIRE.message2 : WIRE.message3;
  const reply = Promise.withResolvers<RoutedMessage>();
  const decryptor = node.registerRandom("scd", (message) => {
    const kind = message.payload[0];
    if (channel !== null && kind === WIRE.record) {
      // A record out of an outer channel comes with that channel's lease:
      // the decryptor is its only holder, and `open` reads the record
      // before returning, so its memory can go back at once.
      return channel.receiveRecord(message.payload.subarray(1), message.local?.lease);
    }
    if (channel === null && kind === expected) reply.resolve(copyOf(message));
    return undefined;
  });
  const limit = deadline(options.handshakeTimeoutMs ?? 10_000);
  return {
    noise,
    decryptor,
    reply: reply.promise,
    limit,
    identityPayload: () =>
      identityPayloadOf(local, local.identity.history.encoded, attestation, local.credentials()),
    establish({ keys, peer, remote, send }) {
      const [out, incoming] = initiator
        ? [keys.initiatorToResponder, keys.responderToInitiator]
        : [keys.responderToInitiator, keys.initiatorToResponder];
      channel = new SecureChannel({
        node,
        policy: options.policy,
        encryptor: node.freshAddress("sce"),
        decryptor,
        remote,
        peer,
        send: send ?? SendCipher.create(out, options),
        receive: ReceiveCipher.create(incoming, options),
        idleTimeoutMs: options.idleTimeoutMs ?? 300_000,
        reorderWaitMs: options.reorderWaitMs,
        logger: options.logger ?? silentLogger,
        awaitReady: initiator,
      });
      return channel;
    },
    abandon() {
      if (channel !== null) channel.close("handshake failed");
      else node.unregister(decryptor);
    },
  };
}

/** Options for {@link connectSecureChannel}. */
export interface ConnectOptions extends ChannelOptions {
  /** Route to the peer's channel listener, e.g. `[connection, "api"]`. */
  route: Route;
}

/**
 * Opens a channel as initiator along `route` and resolves once the
 * responder has verified this end too.
 *
 * @example
 * ```ts ignore
 * const channel = await connectSecureChannel({
 *   node, local, route: [relayConnection, "forward.gw-cust-001", "api"],
 *   policy: { trust, requiredAttributes: { role: "gateway" } },
 * });
 * await channel.send(["outlet.context"], payload);
 * ```
 * @throws {HandshakeError} when the handshake fails, the peer fails the
 *   policy (nothing is sent after message 2 then), the responder refuses
 *   this end, or the handshake times out.
 */
export async function connectSecureChannel(options: ConnectOptions): Promise<SecureChannel> {
  const { node, policy } = options;
  const logger = options.logger ?? silentLogger;
  const run = beginHandshake(options, true);
  try {
    const work = (async () => {
      const message1 = await run.noise.writeMessage(new Uint8Array(0));
      const sent = await node.route({
        onward: options.route,
        return: [run.decryptor],
        payload: frame(WIRE.message1, message1),
      });
      if (!sent) throw new HandshakeError("closed", "no route to the peer");
      const reply = await run.reply;
      const payload = await run.noise.readMessage(reply.payload.subarray(1));
      // The responder is verified before anything about this end is sent.
      const peer = await verifyPeer(payload, run.noise.remoteStaticKey!, policy);
      run.limit.check();
      const message3 = await run.noise.writeMessage(run.identityPayload());
      const channel = run.establish({ keys: run.noise.split(), peer, remote: reply.return });
      await node.route({
        onward: reply.return,
        return: [run.decryptor],
        payload: frame(WIRE.message3, message3),
      });
      await channel.ready;
      return channel;
    })();
    const result = await Promise.race([work, run.limit.promise]);
    logger.info("secure channel established", { peer: result.peer.identifier, role: "initiator" });
    return result;
  } catch (error) {
    // Whatever state was built is torn down; nothing was delivered.
    run.abandon();
    throw error;
  } finally {
    run.limit.cancel();
  }
}

/** Options for {@link listenSecureChannels}. */
export interface ListenOptions extends ChannelOptions {
  /** The listener's address (where message 1 is sent). */
  address: Address;
  /** Called with each channel once the initiator passed the policy. */
  onChannel?: (channel: SecureChannel) => void;
  /** Most handshakes in progress at once (default 10,000); more are dropped. */
  maxPendingHandshakes?: number;
  /**
   * Handshakes in progress from one source: the route a message 1 came
   * by, without the initiator's own decryptor (for a channel through a
   * relay, one admitted connection at that relay; for a direct one, the
   * TCP connection). Default 16. It keeps one peer from taking the
   * listener's slots from everyone else; the policy comes only at message
   * 3, so this is the check made before any work (docs/security.md).
   */
  maxPendingPerSource?: number;
  /**
   * Whether a message 1 may start a handshake at all, asked before any
   * work: e.g. only one that came through another secure channel (an inner
   * channel nested in an outer one, docs/architecture.md §5.10). Default:
   * every message 1.
   */
  acceptFrom?: (message: RoutedMessage) => boolean;
}

/** A running channel listener. */
export interface SecureChannelListener {
  /** The address initiators send message 1 to. */
  readonly address: Address;
  /** Open channels accepted by this listener. */
  channels(): SecureChannel[];
  /**
   * The open channel whose address (its encryptor, the first hop of a
   * message's return route) is `address`; listed before the initiator
   * hears "ready", so its first request always finds it.
   */
  channel(address: Address): SecureChannel | undefined;
  /** Handshakes that failed, by code, since start. */
  readonly failures: Map<string, number>;
  /** Stops accepting; with `closeChannels`, closes the open ones too. */
  close(options?: { closeChannels?: boolean }): void;
}

/**
 * Accepts channels at `options.address` as responder.
 *
 * @example
 * ```ts ignore
 * const listener = listenSecureChannels({
 *   node, local, address: "api",
 *   policy: { trust, revocations, requiredAttributes: { customer_id: "cust_001" } },
 * });
 * listener.channels(); // the open ones
 * ```
 */
export function listenSecureChannels(options: ListenOptions): SecureChannelListener {
  const { node, policy } = options;
  const logger = options.logger ?? silentLogger;
  const open = new Map<Address, SecureChannel>();
  const failures = new Map<string, number>();
  let pending = 0;
  const maxPending = options.maxPendingHandshakes ?? 10_000;
  const maxPerSource = options.maxPendingPerSource ?? 16;
  /** Handshakes in progress by source (the return route minus its last hop); none, no entry. */
  const bySource = new Map<string, number>();

  const respond = async (first: RoutedMessage, source: string) => {
    const run = beginHandshake(options, false);
    try {
      const work = (async () => {
        const payload1 = await run.noise.readMessage(first.payload.subarray(1));
        if (payload1.length !== 0) {
          throw new HandshakeError("bad_payload", "message 1 must carry no payload");
        }
        const message2 = await run.noise.writeMessage(run.identityPayload());
        await node.route({
          onward: first.return,
          return: [run.decryptor],
          payload: frame(WIRE.message2, message2),
        });
        const reply = await run.reply;
        run.limit.check();
        const payload3 = await run.noise.readMessage(reply.payload.subarray(1));
        const keys = run.noise.split();
        const send = SendCipher.create(keys.responderToInitiator, options);
        let peer: VerifiedPeer;
        try {
          peer = await verifyPeer(payload3, run.noise.remoteStaticKey!, policy);
        } catch (error) {
          // Tell the initiator, inside the encryption only it can open, that
          // it was refused; then forget everything.
          const record = await send.seal(frame(KIND.close, utf8.encode("refused")), 1);
          record[0] = WIRE.record;
          await node.route({ onward: reply.return, return: [run.decryptor], payload: record });
          throw error;
        }
        run.limit.check();
        const channel = run.establish({ keys, peer, remote: reply.return, send });
        // Listed before the initiator hears "ready", so it is never missing
        // from channels() once the initiator's connect has resolved.
        open.set(channel.address, channel);
        channel.closed.then(() => open.delete(channel.address));
        await channel.sendReady();
        return channel;
      })();
      const accepted = await Promise.race([work, run.limit.promise]);
      logger.info("secure channel established", {
        peer: accepted.peer.identifier,
        role: "responder",
      });
      options.onChannel?.(accepted);
    } catch (error) {
      const code = error instanceof HandshakeError ? error.code : "internal";
      failures.set(code, (failures.get(code) ?? 0) + 1);
      logger.warn("secure channel handshake failed", {
        code,
        error: error instanceof Error ? error.message : String(error),
      });
      run.abandon();
    } finally {
      run.limit.cancel();
      pending--;
      const left = (bySource.get(source) ?? 1) - 1;
      if (left === 0) bySource.delete(source);
      else bySource.set(source, left);
    }
  };

  node.register(options.address, (message) => {
    if (message.payload[0] !== WIRE.message1) return;
    if (options.acceptFrom !== undefined && !options.acceptFrom(message)) {
      failures.set("not_accepted", (failures.get("not_accepted") ?? 0) + 1);
      return;
    }
    if (pending >= maxPending) {
      failures.set("overloaded", (failures.get("overloaded") ?? 0) + 1);
      return;
    }
    // Addresses are short printable names (routed_message.ts), so the
    // joined route is an unambiguous key.
    const source = message.return.slice(0, -1).join(" ");
    const fromSource = bySource.get(source) ?? 0;
    if (fromSource >= maxPerSource) {
      failures.set("too_many_pending", (failures.get("too_many_pending") ?? 0) + 1);
      return;
    }
    bySource.set(source, fromSource + 1);
    pending++;
    // Not awaited: a slow handshake must not stall the connection it came on.
    respond(copyOf(message), source);
  });

  return {
    address: options.address,
    channels: () => [...open.values()],
    channel: (address) => open.get(address),
    failures,
    close(closeOptions) {
      node.unregister(options.address);
      if (closeOptions?.closeChannels) {
        for (const channel of open.values()) channel.close("listener closed");
      }
    },
  };
}
