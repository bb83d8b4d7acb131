/**
 * A framed connection over a byte stream (TCP or TLS): the interface the
 * channel and routing layers use, and its implementation over a `Deno.Conn`.
 *
 * Flow control is end to end, with no unbounded buffer in between:
 *
 * - Reading is pulled by the consumer. `frames()` reads from the socket
 *   only when the consumer asks for the next frame, so a consumer that stops
 *   stops the reading, the kernel's receive buffer fills, TCP's window
 *   closes, and the peer's `send()` stops resolving.
 * - `send()` resolves when the frame has been written to the socket (handed
 *   to the kernel), so a sender that awaits its sends is held back by a
 *   slow peer. A sender that does not await can queue without bound; it can
 *   watch {@link FramedConnection.bufferedAmount}.
 *
 * Memory a peer can make the receiver hold, per connection, before it has
 * proved anything: the read buffer (allocated on the first read), and the
 * frame decoder's buffer, which grows with the bytes of a frame as they
 * arrive rather than with the length its header claims (see
 * `frame_decoder.ts`); a header alone costs a few hundred bytes. And a peer
 * that is not yet authenticated needs no large frames: a connection can
 * hold frames it receives to a lower limit until then
 * ({@link FramedConnection.setMaxReceiveFrameBytes}, initially
 * `maxReceiveFrameBytes` in the options), and a larger header closes the
 * connection, `oversized`, before any of its body is read. So what an
 * unauthenticated peer can make the receiver keep is bounded by that limit
 * and by what it actually sends.
 *
 * @module
 */
import { TransportError } from "../errors.ts";
import {
  checkMaxFrameBytes,
  encodeFrameHeader,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameError,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
} from "./frame_decoder.ts";

/** How and why a connection ended: the value of {@link FramedConnection.closed}. */
export interface CloseInfo {
  /**
   * Why it closed. The transport's own reasons:
   * - the argument of `close(reason)`, `"closed"` when none was given;
   * - `"peer_closed"`: the peer ended the stream between frames, or reset
   *   it (then `error` is the reset);
   * - a {@link FrameError} code (`"bad_version"`, `"oversized"`,
   *   `"empty_frame"`, `"truncated"`): the peer broke the framing, `error`
   *   is the FrameError;
   * - `"socket_error"`: reading or writing failed, `error` is the cause;
   * - `"listener_closed"`: the listener that accepted it was closed;
   * - `"handler_error"`: the listener's `onConnection` threw.
   */
  reason: string;
  /** The error behind the close; absent for a deliberate or clean close. */
  error?: Error;
}

/**
 * The event a connection dispatches on {@link FramedConnection.events} when
 * it closes (type `"close"`), exactly once, right after `closed` resolves.
 */
export class ConnectionCloseEvent extends Event {
  /** Why the connection closed; see {@link CloseInfo.reason}. */
  readonly reason: string;
  /** The error behind the close, if any. */
  readonly error?: Error;
  /** A `"close"` event carrying `info`'s reason and error. */
  constructor(info: CloseInfo) {
    super("close");
    this.reason = info.reason;
    if (info.error !== undefined) this.error = info.error;
  }
}

/**
 * A connection carrying frames both ways.
 *
 * Lifecycle: a connection is open when you receive it (from `connectTcp`,
 * or `listenTcp`'s `onConnection`, after any TLS handshake). It closes once,
 * for one reason: then `closed` resolves and `events` dispatches a
 * {@link ConnectionCloseEvent} named `"close"`. There is no `"open"` event:
 * receiving the connection is the open event.
 */
export interface FramedConnection {
  /** A random 64-bit id in hex, for logs and routing tables (collisions are negligible). */
  readonly id: string;
  /** This end's address. */
  readonly localAddr: Deno.NetAddr;
  /** The peer's address. */
  readonly remoteAddr: Deno.NetAddr;
  /** Plain TCP or TLS (the frames inside are the same). */
  readonly transport: "tcp" | "tls";
  /**
   * The hard maximum frame length, in both directions: `send()` refuses
   * longer frames, and the receive limit ({@link maxReceiveFrameBytes}) is
   * never above it.
   */
  readonly maxFrameBytes: number;
  /**
   * The current limit on the length of frames received from the peer, at
   * most {@link maxFrameBytes}; a larger header closes the connection,
   * `oversized`. Initially the `maxReceiveFrameBytes` option (default
   * `maxFrameBytes`); changed by {@link setMaxReceiveFrameBytes}.
   */
  readonly maxReceiveFrameBytes: number;
  /** Bytes accepted by `send()` and not yet written to the socket (headers included). */
  readonly bufferedAmount: number;
  /** True once the connection has closed. */
  readonly isClosed: boolean;
  /** Dispatches one {@link ConnectionCloseEvent} (`"close"`); listeners must not throw. */
  readonly events: EventTarget;
  /** Resolves (never rejects) when the connection has closed, with why. */
  readonly closed: Promise<CloseInfo>;

  /**
   * Sends one frame: writes its header and body to the socket. Resolves when
   * they are written, so awaiting it is the sender's backpressure.
   * Concurrent sends are written in call order, never interleaved.
   *
   * The frame is not copied up front: leave its bytes unchanged until the
   * promise settles.
   *
   * With `tail`, the frame is `frame || tail`, written from both where
   * they are: a small header built for this frame and a large body the
   * sender already holds, without copying them together first.
   *
   * Rejects with a {@link FrameError} (`empty_frame`, `oversized`) for a
   * frame of length 0 or above `maxFrameBytes` (the connection stays open),
   * and with a {@link TransportError} `closed` when the connection is or
   * becomes closed before the frame is written.
   */
  send(frame: Uint8Array, tail?: Uint8Array): Promise<void>;

  /**
   * The frames the peer sends, in order. The next frame is read from the
   * socket only when the consumer asks for it, so the consumer's pace is the
   * connection's pace.
   *
   * Each frame is a view into the connection's buffers, valid until the
   * consumer asks for the next one (in a `for await` loop: until the loop
   * body finishes). Use `frame.slice()` to keep one.
   *
   * The iteration ends, without throwing, when the connection closes for
   * any reason; `closed` tells why. Breaking out of it leaves the connection
   * open: frames not yet consumed stay, and `frames()` may be called again.
   * Only one iteration may run at a time: a second one throws a
   * {@link TransportError} `reader_busy` on its first step.
   */
  frames(): AsyncIterableIterator<Uint8Array>;

  /**
   * Sets the limit on the length of frames received from the peer, from 1
   * to {@link maxFrameBytes}, lower or higher than before. It applies to
   * every frame whose header has not been read yet, frames already received
   * but not yet consumed from `frames()` included; a frame whose header was
   * already accepted (one partly received) completes under the old limit.
   *
   * Use: keep the limit low while the peer is not authenticated (what it
   * needs to authenticate: a relay admission, a channel's first messages),
   * so that an anonymous peer cannot make this side buffer large frames;
   * raise it once the peer has proved who it is. Frames the peer sends
   * above the limit close the connection with reason `oversized` (a
   * {@link FrameError}), as for `maxFrameBytes`. The limit does not bind
   * this side's sends. On a closed connection it has no effect.
   *
   * @throws {RangeError} unless it is an integer from 1 to `maxFrameBytes`.
   */
  setMaxReceiveFrameBytes(maxReceiveFrameBytes: number): void;

  /**
   * A hint that the connection has gone quiet: it may wait for the peer's
   * next bytes with less memory, at the price of one more read when what
   * arrives first is large. For the owner of many mostly idle connections
   * (a relay, whose sweep parks those that read nothing since its last
   * round). What it does, if anything, is the implementation's
   * ({@link SocketConnection.park}); frames are unaffected.
   */
  park(): void;

  /**
   * Closes the connection now, with `reason` (default `"closed"`). Sends not
   * yet written reject. Frames already written reach the peer, except when
   * data from the peer is still unread on this side: the OS then resets the
   * connection, and the peer may lose what it had not read yet. To be sure
   * a last frame arrives, have the peer acknowledge it before closing.
   * Idempotent: only the first reason counts.
   */
  close(reason?: string): void;
}

/** Options of a {@link SocketConnection}. */
export interface SocketConnectionOptions {
  /** Whether the conn is plain TCP or TLS; reported as {@link FramedConnection.transport}. */
  transport: "tcp" | "tls";
  /** Hard maximum frame length; default {@link MAX_FRAME_BYTES}. */
  maxFrameBytes?: number;
  /**
   * The initial limit on frames received, from 1 to `maxFrameBytes`
   * (default `maxFrameBytes`): the peer may send no larger frame until
   * {@link FramedConnection.setMaxReceiveFrameBytes} raises it.
   */
  maxReceiveFrameBytes?: number;
  /** Size of the one read buffer; default 64 KiB. */
  readBufferBytes?: number;
  /**
   * A smaller read buffer for a parked connection, from 64 bytes to
   * `readBufferBytes`; default none (the one read buffer is kept, and
   * {@link SocketConnection.park} does nothing). With it, a connection
   * starts parked, and {@link SocketConnection.park} parks it again: a
   * parked connection waits for bytes with a read into a buffer this small,
   * having given back its `readBufferBytes` one to a pool that all
   * connections share, and its frame decoder's buffer between frames. The
   * first read that fills the small buffer (more was waiting) unparks it:
   * from then on it reads into a `readBufferBytes` buffer from the pool,
   * and keeps it, exactly as without this option, until it is parked
   * again. So a connection pays for parking once per quiet spell (one more
   * read, when what arrives first exceeds the small buffer), never per
   * frame, and a quiet one holds this buffer only: for listeners whose
   * connections are mostly idle (a relay), whose owner parks the ones that
   * have gone quiet (the relay's sweep). Frames are views valid until the
   * next one is asked for, as without it.
   */
  idleReadBufferBytes?: number;
  /** Size of the one write buffer, where small frames are coalesced; default 64 KiB. */
  writeBufferBytes?: number;
}

/** Default size of the read and of the write buffer. */
export const IO_BUFFER_BYTES = 64 * 1024;

/**
 * Write buffers not in use, by size: a connection takes one when it starts
 * writing and gives it back when its queue is empty, so an idle connection
 * holds none (at 10,000 idle relay connections, 16 KiB each is 160 MiB).
 */
const spareWriteBuffers = new Map<number, Uint8Array[]>();
/** Most spare write buffers kept per size. */
const MAX_SPARE_WRITE_BUFFERS = 16;

/**
 * The write buffer of a batch that fits it (at most this many bytes queued,
 * headers included): most writes are one small frame (admission messages,
 * control messages, a keepalive), and a burst of them from many
 * connections at once should not take a full-size buffer each.
 */
const SMALL_WRITE_BUFFER_BYTES = 2048;

function takeWriteBuffer(size: number): Uint8Array {
  return spareWriteBuffers.get(size)?.pop() ?? new Uint8Array(size);
}

function giveBackWriteBuffer(buffer: Uint8Array): void {
  let spares = spareWriteBuffers.get(buffer.length);
  if (spares === undefined) spareWriteBuffers.set(buffer.length, spares = []);
  if (spares.length < MAX_SPARE_WRITE_BUFFERS) spares.push(buffer);
}

/**
 * Read buffers of `readBufferBytes` not in use, by size, for connections
 * with an idle read buffer: one is taken when a connection is unparked,
 * and given back at its first wait for bytes once it is parked again (the
 * consumer has then asked for the next frame, so no frame still points
 * into it).
 */
const spareReadBuffers = new Map<number, Uint8Array[]>();
/** Bytes of spare read buffers kept per size (at least four buffers). */
const SPARE_READ_BYTES = 1024 * 1024;

function takeReadBuffer(size: number): Uint8Array {
  return spareReadBuffers.get(size)?.pop() ?? new Uint8Array(size);
}

function giveBackReadBuffer(buffer: Uint8Array): void {
  let spares = spareReadBuffers.get(buffer.length);
  if (spares === undefined) spareReadBuffers.set(buffer.length, spares = []);
  if (spares.length < Math.max(4, SPARE_READ_BYTES / buffer.length)) spares.push(buffer);
}

/** Least length of the part of a large frame written from the caller's bytes. */
const MIN_DIRECT_WRITE = 16 * 1024;

const NO_TAIL = new Uint8Array(0);

interface PendingSend {
  frame: Uint8Array;
  /** The frame's second part, or an empty array. */
  tail: Uint8Array;
  /** Bytes of both parts. */
  length: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

const HEX_DIGITS = "0123456789abcdef";

/**
 * A random 64-bit id in hex, as one flat string: built with `+=`, a string
 * stays a chain of pieces that the connection would keep for its life.
 */
function newId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  const codes = new Array<number>(16);
  for (let i = 0; i < 8; i++) {
    codes[2 * i] = HEX_DIGITS.charCodeAt(bytes[i] >> 4);
    codes[2 * i + 1] = HEX_DIGITS.charCodeAt(bytes[i] & 15);
  }
  return String.fromCharCode(...codes);
}

/**
 * Checks a receive limit given by a caller against the connection's
 * `maxFrameBytes`.
 * @throws {RangeError} unless it is an integer from 1 to `maxFrameBytes`.
 */
export function checkMaxReceiveFrameBytes(value: number, maxFrameBytes: number): number {
  if (!Number.isInteger(value) || value < 1 || value > maxFrameBytes) {
    throw new RangeError(
      `maxReceiveFrameBytes must be an integer from 1 to maxFrameBytes (${maxFrameBytes}), got ${value}`,
    );
  }
  return value;
}

/**
 * Checks a read or write buffer size given by a caller.
 * @throws {RangeError} unless it is an integer from 64 bytes to 16 MiB.
 */
export function checkBufferBytes(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 64 || value > 16 * 1024 * 1024) {
    throw new RangeError(`${name} must be an integer from 64 to 16 MiB, got ${value}`);
  }
  return value;
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ value: undefined, done: true });

// Set by SocketConnection's static block: its reading, for FrameIterator.
let startIteration: (connection: SocketConnection, iterator: FrameIterator) => boolean;
let nextFrame: (
  connection: SocketConnection,
  iterator: FrameIterator,
) => Promise<IteratorResult<Uint8Array>>;
let endIteration: (connection: SocketConnection, iterator: FrameIterator) => void;

/**
 * {@link FramedConnection} over a `Deno.Conn`. It owns the conn: closing the
 * connection closes it.
 *
 * Per connection: one read buffer, one write buffer (each allocated on
 * first use; the write buffer comes from a pool and goes back when nothing
 * is left to write) and one {@link FrameDecoder}. Frames whole inside a
 * read are handed out as views of the read buffer; of a frame larger than
 * the read buffer, the rest is read straight into the decoder's buffer as
 * soon as that buffer may grow by a read buffer's worth (it grows with the
 * bytes received, so after the first read or two of a large frame). With
 * `idleReadBufferBytes`, the read buffer too is pooled and held only while
 * the connection is not parked (see the option and {@link park}). On the
 * way out, frames are copied into the write buffer behind their header, and
 * frames queued together go out in one write: small frames cost one system
 * call per batch, not two per frame. A frame that does not fit the buffer
 * goes out as its header and first part, then the rest straight from the
 * caller's bytes.
 *
 * What a connection waiting for bytes keeps is small on purpose (a relay
 * holds thousands): one pending read, with one promise reaction, into the
 * buffer above; `id`, `closed` and `events` are made when first asked for.
 *
 * Errors never escape as unhandled rejections: the read and write paths
 * catch everything and turn it into a close with a reason.
 */
export class SocketConnection implements FramedConnection {
  /** This end's address (the conn's `localAddr`). */
  readonly localAddr: Deno.NetAddr;
  /** The peer's address (the conn's `remoteAddr`). */
  readonly remoteAddr: Deno.NetAddr;
  /** Plain TCP or TLS, as given in the options. */
  readonly transport: "tcp" | "tls";
  /** The hard maximum frame length, in both directions. */
  readonly maxFrameBytes: number;

  #id: string | null = null;
  #events: EventTarget | null = null;
  #closed: Promise<CloseInfo> | null = null;
  #resolveClosed: ((info: CloseInfo) => void) | null = null;
  #onClose: ((connection: SocketConnection) => void) | null;

  #conn: Deno.Conn;
  #decoder: FrameDecoder;
  #readBufferBytes: number;
  /** 0: none (the read buffer is the connection's own, and kept). */
  #idleReadBufferBytes: number;
  #writeBufferBytes: number;
  /** The read buffer of `readBufferBytes`: own, or from the pool while reads come back full. */
  #readBuffer: Uint8Array | null = null;
  /** The idle read buffer (with `idleReadBufferBytes`). */
  #idleBuffer: Uint8Array | null = null;
  #writeBuffer: Uint8Array | null = null;
  /**
   * Parked: the next wait for bytes reads into the idle buffer (with
   * `idleReadBufferBytes` only; see the option).
   */
  #parked: boolean;
  /** What the read in flight reads into, and whether that is the decoder's buffer. */
  #target: Uint8Array = NO_TAIL;
  #direct = false;
  #ended = false;
  /** The iteration of `frames()` that owns the reading, if any. */
  #iterator: FrameIterator | null = null;
  /** The step of that iteration that is reading now; later `next()` calls wait for it. */
  #inFlight: Promise<IteratorResult<Uint8Array>> | null = null;

  /** Sends in call order; `#head` is the first not yet written. */
  #queue: PendingSend[] = [];
  #head = 0;
  #bufferedAmount = 0;
  #writing = false;
  #versionSent = false;

  #closeInfo: CloseInfo | null = null;

  /**
   * Wraps `conn`, which the connection then owns. Buffers are allocated on
   * first use, not here. `onClose` (for a listener's own accounting) is
   * called once, synchronously, as the connection closes; it must not throw.
   * @throws {RangeError} for an invalid `maxFrameBytes` or buffer size.
   */
  constructor(
    conn: Deno.Conn,
    options: SocketConnectionOptions,
    onClose?: (connection: SocketConnection) => void,
  ) {
    this.#conn = conn;
    this.#onClose = onClose ?? null;
    this.transport = options.transport;
    this.maxFrameBytes = checkMaxFrameBytes(options.maxFrameBytes ?? MAX_FRAME_BYTES);
    this.#readBufferBytes = checkBufferBytes(
      "readBufferBytes",
      options.readBufferBytes ?? IO_BUFFER_BYTES,
    );
    this.#idleReadBufferBytes = options.idleReadBufferBytes === undefined
      ? 0
      : checkIdleReadBufferBytes(options.idleReadBufferBytes, this.#readBufferBytes);
    this.#parked = this.#idleReadBufferBytes !== 0;
    this.#writeBufferBytes = checkBufferBytes(
      "writeBufferBytes",
      options.writeBufferBytes ?? IO_BUFFER_BYTES,
    );
    const receive = checkMaxReceiveFrameBytes(
      options.maxReceiveFrameBytes ?? this.maxFrameBytes,
      this.maxFrameBytes,
    );
    this.#decoder = new FrameDecoder({ maxFrameBytes: receive });
    this.localAddr = conn.localAddr as Deno.NetAddr;
    this.remoteAddr = conn.remoteAddr as Deno.NetAddr;
  }

  /** A random 64-bit id in hex, for logs and routing tables (made when first asked for). */
  get id(): string {
    return this.#id ??= newId();
  }

  /** Dispatches one {@link ConnectionCloseEvent} (`"close"`) when the connection closes. */
  get events(): EventTarget {
    return this.#events ??= new EventTarget();
  }

  /** Resolves (never rejects) when the connection has closed, with why. */
  get closed(): Promise<CloseInfo> {
    if (this.#closed === null) {
      if (this.#closeInfo !== null) this.#closed = Promise.resolve(this.#closeInfo);
      else {
        const { promise, resolve } = Promise.withResolvers<CloseInfo>();
        this.#closed = promise;
        this.#resolveClosed = resolve;
      }
    }
    return this.#closed;
  }

  /** Bytes accepted by `send()` and not yet written to the socket (headers included). */
  get bufferedAmount(): number {
    return this.#bufferedAmount;
  }

  /** The current limit on frames received; see {@link FramedConnection.maxReceiveFrameBytes}. */
  get maxReceiveFrameBytes(): number {
    return this.#decoder.maxFrameBytes;
  }

  /**
   * Memory this connection holds for reading, in bytes: its read buffers
   * (those allocated or taken from the pool now) and its decoder's buffer
   * ({@link FrameDecoder.reservedBytes}), filled or not. Frames already
   * handed out are the consumer's.
   */
  get readBufferedBytes(): number {
    return (this.#readBuffer?.length ?? 0) + (this.#idleBuffer?.length ?? 0) +
      this.#decoder.reservedBytes;
  }

  /**
   * Whether the connection is parked: it waits, or will wait from its next
   * read on, with its small idle read buffer (see
   * {@link SocketConnectionOptions.idleReadBufferBytes}). Always false
   * without that option.
   */
  get parked(): boolean {
    return this.#parked;
  }

  /**
   * Parks the connection, for one that has gone quiet (a relay's sweep
   * parks those that read no frame since its last round): from its next
   * wait for bytes, it reads into its small idle read buffer, and gives
   * back its pooled read buffer and its decoder's buffer (between frames).
   * A read already waiting is left as it is, and the parking applies from
   * the read after it. The first read that fills the small buffer unparks
   * the connection. Cheap, and idempotent; without `idleReadBufferBytes`,
   * or on a closed connection, it does nothing.
   */
  park(): void {
    if (this.#idleReadBufferBytes !== 0 && this.#closeInfo === null) this.#parked = true;
  }

  /**
   * Sets the limit on frames received, for every header not read yet; see
   * {@link FramedConnection.setMaxReceiveFrameBytes}.
   * @throws {RangeError} unless it is an integer from 1 to `maxFrameBytes`.
   */
  setMaxReceiveFrameBytes(maxReceiveFrameBytes: number): void {
    this.#decoder.setMaxFrameBytes(
      checkMaxReceiveFrameBytes(maxReceiveFrameBytes, this.maxFrameBytes),
    );
  }

  /** True once the connection has closed. */
  get isClosed(): boolean {
    return this.#closeInfo !== null;
  }

  /**
   * Sends one frame, resolving once it is written to the socket; leave its
   * bytes unchanged until then. Rejects with a {@link FrameError}
   * (`empty_frame`, `oversized`) or a {@link TransportError} `closed`; see
   * {@link FramedConnection.send}.
   */
  send(frame: Uint8Array, tail: Uint8Array = NO_TAIL): Promise<void> {
    if (this.#closeInfo !== null) return Promise.reject(this.#closedError());
    const length = frame.length + tail.length;
    if (length === 0) {
      return Promise.reject(new FrameError("empty_frame", "cannot send an empty frame"));
    }
    if (length > this.maxFrameBytes) {
      return Promise.reject(
        new FrameError(
          "oversized",
          `cannot send a frame of ${length} bytes, the maximum is ${this.maxFrameBytes}`,
        ),
      );
    }
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#queue.push({ frame, tail, length, resolve, reject });
    this.#bufferedAmount += FRAME_HEADER_BYTES + length;
    if (!this.#writing) {
      this.#writing = true;
      this.#writeLoop();
    }
    return promise;
  }

  /**
   * The peer's frames, read only as the consumer asks; each is a view valid
   * until the next is asked for. One iteration at a time; see
   * {@link FramedConnection.frames}.
   */
  frames(): AsyncIterableIterator<Uint8Array> {
    return new FrameIterator(this);
  }

  /**
   * Closes the connection and its conn now, with `reason`; sends not yet
   * written reject. Idempotent: only the first reason counts.
   */
  close(reason = "closed"): void {
    this.#finish({ reason });
  }

  // The reading side, as FrameIterator drives it (through the accessors
  // set in the static block below: these are private to the module).

  static {
    startIteration = (connection, iterator) => {
      if (connection.#iterator !== null) return false;
      connection.#iterator = iterator;
      return true;
    };
    nextFrame = (connection, iterator) => connection.#next(iterator);
    endIteration = (connection, iterator) => {
      // A read in flight finishes first: it clears the owner when it does.
      if (connection.#iterator === iterator && connection.#inFlight === null) {
        connection.#iterator = null;
      }
    };
  }

  /**
   * The next frame for `iterator` (the owner of the reading): one the
   * decoder already holds, or one read for it. Never rejects.
   */
  #next(iterator: FrameIterator): Promise<IteratorResult<Uint8Array>> {
    if (this.#inFlight !== null) {
      // An earlier next() is still reading: this one waits its turn, so
      // that two reads never run at once.
      return this.#inFlight.then(() => iterator.active ? this.#next(iterator) : DONE);
    }
    const frame = this.#decoded();
    if (frame !== undefined) return Promise.resolve(this.#result(frame));
    const step = this.#read().then(this.#onRead, this.#onReadFailed);
    this.#inFlight = step;
    return step;
  }

  /** A read completed: the frame it completed, or the end, or (a frame still cut) more reads. */
  #onRead = (
    n: number | null,
  ): IteratorResult<Uint8Array> | Promise<IteratorResult<Uint8Array>> => {
    const frame = this.#consume(n);
    return frame === undefined ? this.#readOn() : this.#result(frame);
  };

  #onReadFailed = (error: unknown): IteratorResult<Uint8Array> => {
    if (this.#closeInfo === null) this.#finishOnError(error);
    return this.#result(null);
  };

  /**
   * Reads until a frame is complete, for a frame that one read did not
   * complete: a loop, so that a peer sending a frame a byte at a time
   * costs one pending read at a time, not a promise per byte.
   */
  async #readOn(): Promise<IteratorResult<Uint8Array>> {
    for (;;) {
      let n: number | null;
      try {
        n = await this.#read();
      } catch (error) {
        return this.#onReadFailed(error);
      }
      const frame = this.#consume(n);
      if (frame !== undefined) return this.#result(frame);
    }
  }

  /**
   * What an iteration's step resolves with; the step in flight, if any, is
   * over. The end of the frames ends the owner's iteration; an iteration
   * ended (returned) while this step was reading lets go of the reading.
   */
  #result(frame: Uint8Array | null): IteratorResult<Uint8Array> {
    this.#inFlight = null;
    const iterator = this.#iterator;
    if (frame === null) {
      iterator?.finish();
      this.#iterator = null;
      return DONE;
    }
    if (iterator !== null && !iterator.active) this.#iterator = null;
    return { value: frame, done: false };
  }

  /**
   * A frame already decoded (no I/O), or null when the connection has
   * closed (or its framing failed, which closes it), or undefined when a
   * read is needed.
   */
  #decoded(): Uint8Array | null | undefined {
    if (this.#closeInfo !== null) return null;
    let frame: Uint8Array | null;
    try {
      frame = this.#decoder.next();
    } catch (error) {
      this.#failFraming(error);
      return null;
    }
    if (frame !== null) return frame;
    return this.#ended ? null : undefined;
  }

  /**
   * Starts one read from the socket. Into the decoder's buffer when what is
   * still missing of a frame fills a whole read buffer or more: reading into
   * ours and copying would be pure overhead. The decoder offers that room
   * only as far as the bytes already received let its buffer grow, so a
   * header that claims a large frame reserves nothing ahead of its bytes.
   * Otherwise into the read buffer: the connection's own, or with an idle
   * read buffer, one from the pool while it is not parked and the small
   * one while it is.
   */
  #read(): Promise<number | null> {
    const size = this.#readBufferBytes;
    const spare = this.#decoder.spareAtLeast(size);
    let target: Uint8Array;
    if (spare !== null) target = spare;
    else if (!this.#parked) {
      target = this.#readBuffer ??= this.#idleReadBufferBytes === 0
        ? new Uint8Array(size)
        : takeReadBuffer(size);
    } else {
      // Parked: the pooled buffer is needed by no read now, and no frame
      // points into it any more (the consumer asked for the next one), so
      // back it goes; wait with the small buffer, and without the
      // decoder's between frames (the next cut frame starts a new one).
      if (this.#readBuffer !== null) {
        giveBackReadBuffer(this.#readBuffer);
        this.#readBuffer = null;
      }
      this.#decoder.release();
      target = this.#idleBuffer ??= new Uint8Array(this.#idleReadBufferBytes);
    }
    this.#target = target;
    this.#direct = target === spare;
    return this.#conn.read(target);
  }

  /**
   * Hands what a read brought to the decoder: then the next frame, null when
   * the connection closed instead (end of stream, a framing error, a local
   * close), or undefined when more bytes are needed.
   */
  #consume(n: number | null): Uint8Array | null | undefined {
    const target = this.#target;
    this.#target = NO_TAIL;
    if (this.#closeInfo !== null) return null;
    if (n === null) {
      this.#ended = true;
      try {
        this.#decoder.end();
        this.#finish({ reason: "peer_closed" });
      } catch (error) {
        this.#failFraming(error);
      }
      return null;
    }
    // A read that filled the small buffer: more is waiting, frames flow
    // again. Unparked, the next reads take a full-size buffer.
    if (n === target.length && target === this.#idleBuffer) this.#parked = false;
    try {
      if (this.#direct) this.#decoder.advance(n);
      else this.#decoder.push(target.subarray(0, n));
    } catch (error) {
      this.#failFraming(error);
      return null;
    }
    return this.#decoded();
  }

  /**
   * Writes queued frames until the queue is empty; never rejects. It starts
   * one microtask late, so that frames sent in the same turn of the event
   * loop go out together in one write.
   */
  async #writeLoop(): Promise<void> {
    try {
      await Promise.resolve();
      while (this.#closeInfo === null && this.#head < this.#queue.length) {
        const end = await this.#writeBatch();
        // Resolve what was written, unless a close already rejected it.
        if (this.#closeInfo !== null) return;
        for (let i = this.#head; i < end; i++) {
          const pending = this.#queue[i];
          this.#bufferedAmount -= FRAME_HEADER_BYTES + pending.length;
          pending.resolve();
        }
        this.#head = end;
        if (this.#head === this.#queue.length) {
          this.#queue.length = 0;
          this.#head = 0;
        }
      }
    } catch (error) {
      if (this.#closeInfo === null) this.#finishOnError(error);
    } finally {
      this.#writing = false;
      // Nothing left to write: the buffer goes back to the pool (no write
      // is in flight, so nothing still reads it).
      if (this.#writeBuffer !== null) {
        giveBackWriteBuffer(this.#writeBuffer);
        this.#writeBuffer = null;
      }
    }
  }

  /**
   * Packs queued frames, from `#head` on, into the write buffer and writes
   * them; returns the index after the last frame written.
   */
  async #writeBatch(): Promise<number> {
    // A small buffer when what is queued fits one, else the full one; a
    // batch that finds more queued than its small buffer takes the full one.
    const pending = this.#bufferedAmount + (this.#versionSent ? 0 : 1);
    const size = pending <= SMALL_WRITE_BUFFER_BYTES
      ? Math.min(SMALL_WRITE_BUFFER_BYTES, this.#writeBufferBytes)
      : this.#writeBufferBytes;
    if (this.#writeBuffer !== null && this.#writeBuffer.length < size) {
      giveBackWriteBuffer(this.#writeBuffer);
      this.#writeBuffer = null;
    }
    const buffer = this.#writeBuffer ??= takeWriteBuffer(size);
    const queue = this.#queue;
    let used = 0;
    if (!this.#versionSent) {
      buffer[used++] = PROTOCOL_VERSION;
      this.#versionSent = true;
    }
    let index = this.#head;
    let rest: Uint8Array | null = null;
    let restTail: Uint8Array | null = null;
    while (index < queue.length) {
      const { frame, tail, length } = queue[index];
      const room = buffer.length - used - FRAME_HEADER_BYTES;
      if (length <= room) {
        encodeFrameHeader(length, buffer, used);
        buffer.set(frame, used + FRAME_HEADER_BYTES);
        if (tail.length > 0) buffer.set(tail, used + FRAME_HEADER_BYTES + frame.length);
        used += FRAME_HEADER_BYTES + length;
        index++;
        continue;
      }
      // It does not fit. A frame that would fit an empty buffer waits for
      // the next batch; a larger one goes out as header + first part here,
      // then the rest straight from the caller's bytes. The rest is kept at
      // least MIN_DIRECT_WRITE long, so a frame just over the buffer's size
      // is not followed by a write of a few bytes.
      if (FRAME_HEADER_BYTES + length <= buffer.length || room < 0) break;
      // (room >= 0 whenever the buffer is empty, so every batch progresses.)
      const head = Math.max(0, Math.min(room, length - MIN_DIRECT_WRITE));
      encodeFrameHeader(length, buffer, used);
      const fromFrame = Math.min(head, frame.length);
      buffer.set(frame.subarray(0, fromFrame), used + FRAME_HEADER_BYTES);
      if (head > fromFrame) {
        buffer.set(tail.subarray(0, head - fromFrame), used + FRAME_HEADER_BYTES + fromFrame);
      }
      used += FRAME_HEADER_BYTES + head;
      if (head < frame.length) {
        rest = frame.subarray(head);
        restTail = tail;
      } else {
        rest = tail.subarray(head - frame.length);
      }
      index++;
      break;
    }
    await this.#writeAll(buffer.subarray(0, used));
    if (rest !== null && rest.length > 0) await this.#writeAll(rest);
    if (restTail !== null && restTail.length > 0) await this.#writeAll(restTail);
    return index;
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      if (this.#closeInfo !== null) return;
      offset += await this.#conn.write(offset === 0 ? bytes : bytes.subarray(offset));
    }
  }

  #failFraming(error: unknown): void {
    if (error instanceof FrameError) this.#finish({ reason: error.code, error });
    else this.#finishOnError(error);
  }

  #finishOnError(error: unknown): void {
    const cause = error instanceof Error ? error : new Error(String(error));
    // A reset or an end without TLS close_notify is how peers usually hang
    // up; it is still a close by the peer.
    const reason = cause instanceof Deno.errors.ConnectionReset ||
        cause instanceof Deno.errors.UnexpectedEof ||
        cause instanceof Deno.errors.BrokenPipe
      ? "peer_closed"
      : "socket_error";
    this.#finish({ reason, error: cause });
  }

  #closedError(): TransportError {
    const info = this.#closeInfo;
    return new TransportError(
      "closed",
      `connection ${this.id} is closed (${info?.reason ?? "closed"})`,
      info?.error ? { cause: info.error } : undefined,
    );
  }

  #finish(info: CloseInfo): void {
    if (this.#closeInfo !== null) return;
    this.#closeInfo = info;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the runtime (e.g. after a reset): nothing to free.
    }
    if (this.#head < this.#queue.length) {
      const error = this.#closedError();
      for (let i = this.#head; i < this.#queue.length; i++) this.#queue[i].reject(error);
    }
    this.#queue = [];
    this.#head = 0;
    this.#bufferedAmount = 0;
    // Dropped, not pooled: a read may still be in flight into one, or a
    // frame the consumer holds point into it.
    this.#readBuffer = null;
    this.#idleBuffer = null;
    this.#writeBuffer = null;
    if (this.#onClose !== null) {
      const onClose = this.#onClose;
      this.#onClose = null;
      try {
        onClose(this);
      } catch {
        // It must not throw; the close goes on regardless.
      }
    }
    this.#resolveClosed?.(info);
    this.#resolveClosed = null;
    this.#events?.dispatchEvent(new ConnectionCloseEvent(info));
  }
}

/**
 * Checks an `idleReadBufferBytes` given by a caller.
 * @throws {RangeError} unless it is an integer from 64 bytes to `readBufferBytes`.
 */
export function checkIdleReadBufferBytes(value: number, readBufferBytes: number): number {
  if (!Number.isInteger(value) || value < 64 || value > readBufferBytes) {
    throw new RangeError(
      `idleReadBufferBytes must be an integer from 64 to readBufferBytes (${readBufferBytes}), got ${value}`,
    );
  }
  return value;
}

/**
 * The iterator `frames()` returns. Hand-written rather than an async
 * generator: when the decoder already holds the next frame (several frames
 * arrived in one read), `next()` hands it over without the generator's
 * suspend and resume, which is most of the per-frame cost for small
 * frames; and a connection waiting for bytes holds no suspended generator.
 * The connection keeps the reading's state (which iteration owns it, the
 * step in flight); overlapping `next()` calls are chained there, so they
 * never run two reads at once.
 */
class FrameIterator implements AsyncIterableIterator<Uint8Array> {
  #connection: SocketConnection;
  #state: "new" | "active" | "done" = "new";

  constructor(connection: SocketConnection) {
    this.#connection = connection;
  }

  /** True while this iteration runs (started, not ended). */
  get active(): boolean {
    return this.#state === "active";
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<Uint8Array>> {
    if (this.#state === "done") return Promise.resolve(DONE);
    if (this.#state === "new") {
      if (!startIteration(this.#connection, this)) {
        this.#state = "done";
        return Promise.reject(
          new TransportError("reader_busy", "another iteration of frames() is running"),
        );
      }
      this.#state = "active";
    }
    return nextFrame(this.#connection, this);
  }

  /**
   * Ends this iteration (a `break` out of `for await` calls it). The
   * connection stays open; a read still in flight finishes first, and only
   * then may another iteration start.
   */
  return(): Promise<IteratorResult<Uint8Array>> {
    const wasActive = this.#state === "active";
    this.#state = "done";
    if (wasActive) endIteration(this.#connection, this);
    return Promise.resolve(DONE);
  }

  /** The frames have ended (the connection closed). */
  finish(): void {
    this.#state = "done";
  }
}
