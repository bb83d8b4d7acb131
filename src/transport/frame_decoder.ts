/**
 * The framing of a transport connection, sans I/O.
 *
 * Wire format, in each direction of a connection: one version byte,
 * {@link PROTOCOL_VERSION}, then frames. A frame is a 4-byte big-endian
 * length N, 1 <= N <= maxFrameBytes, followed by N bytes. The transport
 * never looks inside a frame: the relay forwards frames without decoding
 * them (docs/design.md §5).
 *
 * {@link FrameDecoder} turns chunks of bytes, cut anywhere, back into frames.
 * It is the hot path of every connection, so it copies and allocates as
 * little as it can:
 *
 * - A frame that lies whole inside a pushed chunk is returned as a view of
 *   that chunk: no copy.
 * - Only a frame cut by a chunk boundary is assembled in the decoder's own
 *   buffer, which is then reused for later cut frames. A reader can fill
 *   that buffer directly ({@link FrameDecoder.spareAtLeast}), so large
 *   frames are read straight into it rather than copied from a read buffer.
 * - The length is read with shifts, not a DataView, and the only object
 *   made per frame is the returned view.
 *
 * Memory follows the bytes, not the headers. A header is only a claim: a
 * peer that sends the header of a 256 KiB frame and nothing more must not
 * make the receiver set aside 256 KiB (300 such idle peers held 46 MiB when
 * the decoder allocated the declared length up front). So the buffer of a
 * partial frame starts small ({@link MIN_PARTIAL_BYTES}) and grows
 * geometrically as the frame's bytes arrive, capped at the declared
 * length: it is never grown beyond three times what the peer has really
 * sent of the frame (or 1.5 × {@link MIN_PARTIAL_BYTES}), so what a peer
 * makes the receiver hold is in proportion to what it sends (see
 * {@link FrameDecoder.reservedBytes}). Doubling keeps the copying of that
 * growth linear in the frame's size, and since the buffer is reused, bulk
 * traffic of similar frames pays for it once per connection, not per
 * frame. The limit itself can be lowered and
 * raised while decoding ({@link FrameDecoder.setMaxFrameBytes}): a
 * connection keeps it low until its peer is authenticated.
 *
 * The price is a lifetime rule, the same as Go's `bufio.Scanner`: a frame
 * returned by {@link FrameDecoder.next} is valid until the next call to
 * `next`, `push` or `advance`. Keep it longer with `frame.slice()`.
 *
 * @module
 */
import { TransportError } from "../errors.ts";

/** The version byte that opens each direction of a connection. */
export const PROTOCOL_VERSION = 1;

/** The default hard maximum of a frame's length, in bytes (256 KiB). */
export const MAX_FRAME_BYTES = 256 * 1024;

/** Bytes of the length prefix of a frame. */
export const FRAME_HEADER_BYTES = 4;

/** The largest length the 4-byte header can carry. */
const MAX_HEADER_LENGTH = 0xffff_ffff;

/** Why bytes from a peer were refused as framing. */
export type FrameErrorCode =
  | "bad_version"
  | "oversized"
  | "empty_frame"
  | "truncated";

/**
 * The bytes are not the framing: a wrong version byte, a zero length, a
 * length above the maximum, or (from {@link FrameDecoder.end}) a stream that
 * ended inside a frame. A RangeError, like every size and number refused by
 * the encoding layer, with a machine-readable `code`.
 */
export class FrameError extends RangeError {
  /** Which check failed; also the connection's close reason. */
  readonly code: FrameErrorCode;
  /** An error with `code`; `options.cause` as for any Error. */
  constructor(code: FrameErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = "FrameError";
  }
}

/** Options of a {@link FrameDecoder}. */
export interface FrameDecoderOptions {
  /** Hard maximum of a frame's length; default {@link MAX_FRAME_BYTES}. */
  maxFrameBytes?: number;
  /**
   * Whether the stream starts with the version byte (default true). False
   * decodes bare frames, e.g. frames stored back to back.
   */
  expectVersion?: boolean;
}

/**
 * Checks a maximum frame size given by a caller.
 * @throws {RangeError} unless it is an integer from 1 to 2^32 - 1.
 */
export function checkMaxFrameBytes(maxFrameBytes: number): number {
  if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 1 || maxFrameBytes > MAX_HEADER_LENGTH) {
    throw new RangeError(
      `maxFrameBytes must be an integer from 1 to ${MAX_HEADER_LENGTH}, got ${maxFrameBytes}`,
    );
  }
  return maxFrameBytes;
}

/**
 * Writes the 4-byte big-endian header of a frame of `length` bytes into
 * `target` at `offset` (a new 4-byte array when `target` is omitted) and
 * returns `target`.
 *
 * @throws {FrameError} `empty_frame` for 0, `oversized` above 2^32 - 1.
 * @throws {RangeError} when `length` is not a non-negative integer, or
 * `target` has no room for the header at `offset`.
 */
export function encodeFrameHeader(
  length: number,
  target: Uint8Array = new Uint8Array(FRAME_HEADER_BYTES),
  offset = 0,
): Uint8Array {
  if (!Number.isInteger(length) || length < 0) {
    throw new RangeError(`a frame length must be a non-negative integer, got ${length}`);
  }
  if (length === 0) throw new FrameError("empty_frame", "a frame may not be empty");
  if (length > MAX_HEADER_LENGTH) {
    throw new FrameError("oversized", `a frame of ${length} bytes exceeds the 4-byte header`);
  }
  if (!Number.isInteger(offset) || offset < 0 || offset + FRAME_HEADER_BYTES > target.length) {
    throw new RangeError(`no room for a frame header at offset ${offset}`);
  }
  target[offset] = length >>> 24;
  target[offset + 1] = (length >>> 16) & 0xff;
  target[offset + 2] = (length >>> 8) & 0xff;
  target[offset + 3] = length & 0xff;
  return target;
}

const EMPTY = new Uint8Array(0);

/**
 * The first size of the buffer of a partial frame (bytes), so that tiny cut
 * frames never regrow it; all a peer gets for sending a header alone.
 */
export const MIN_PARTIAL_BYTES = 256;

/** Reads a big-endian uint32; `>>> 0` keeps lengths of 2^31 and above positive. */
function readLength(bytes: Uint8Array, at: number): number {
  return ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]) >>> 0;
}

/**
 * Decodes the framing of one direction of a connection.
 *
 * ```ts ignore
 * const decoder = new FrameDecoder({ maxFrameBytes: 1024 });
 * decoder.push(chunk);
 * for (let frame = decoder.next(); frame !== null; frame = decoder.next()) {
 *   handle(frame); // a view: valid until the next next(), push() or advance()
 * }
 * ```
 *
 * Contract:
 * - `push(chunk)` hands over a chunk; the decoder reads it during later
 *   `next()` calls, so the caller must leave its bytes alone until `next()`
 *   has returned null. After that, anything left of it has been copied and
 *   the caller may reuse its memory (a connection reads into one buffer
 *   again and again).
 * - `next()` returns the next whole frame, or null when it needs more bytes.
 * - A returned frame is a view, valid until the next `next()`, `push()` or
 *   `advance()`.
 * - The first malformed byte makes `next()` throw a {@link FrameError}, and
 *   every later call throws the same error: a stream that has lost its
 *   framing cannot be resynchronised, so the connection must close.
 *
 * Memory: one buffer of its own, allocated when a frame is first cut by a
 * chunk boundary and reused after. For the frame being received it grows
 * with the bytes that arrive: while the frame is incomplete, to no more
 * than max(3 × the bytes of the frame received so far, 1.5 ×
 * {@link MIN_PARTIAL_BYTES}), and never beyond the frame's header and
 * declared length (or MIN_PARTIAL_BYTES, for tiny frames). Between frames
 * it keeps its size, which only bytes that did arrive grew: at most the
 * largest cut frame so far, header included (see {@link reservedBytes}).
 */
export class FrameDecoder {
  #maxFrameBytes: number;
  #expectVersion: boolean;
  /** The chunk being decoded, and where its unread bytes start. */
  #chunk: Uint8Array = EMPTY;
  #offset = 0;
  /** A frame cut by a chunk boundary: its bytes so far (header included). */
  #partial: Uint8Array = EMPTY;
  #partialLength = 0;
  /** Header plus body of the partial frame once its header is known, else 0. */
  #need = 0;
  #error: FrameError | null = null;

  /**
   * A decoder holding no bytes yet; its buffer is allocated only when a
   * frame is first cut by a chunk boundary.
   * @throws {RangeError} for an invalid `maxFrameBytes`.
   */
  constructor(options: FrameDecoderOptions = {}) {
    this.#maxFrameBytes = checkMaxFrameBytes(options.maxFrameBytes ?? MAX_FRAME_BYTES);
    this.#expectVersion = options.expectVersion ?? true;
  }

  /**
   * The maximum length of a frame, checked against each frame's header when
   * the decoder reads it; see {@link setMaxFrameBytes}.
   */
  get maxFrameBytes(): number {
    return this.#maxFrameBytes;
  }

  /**
   * Changes the maximum length of a frame, down or up, for every frame whose
   * header the decoder has not read yet: frames still waiting in a pushed
   * chunk included, the frame being assembled (its header already accepted)
   * excluded. A connection starts low before its peer is authenticated and
   * raises it after.
   * @throws {RangeError} unless it is an integer from 1 to 2^32 - 1.
   */
  setMaxFrameBytes(maxFrameBytes: number): void {
    this.#maxFrameBytes = checkMaxFrameBytes(maxFrameBytes);
  }

  /** Bytes received and not yet returned as frames. */
  get buffered(): number {
    return this.#partialLength + (this.#chunk.length - this.#offset);
  }

  /**
   * Bytes the decoder has allocated of its own (its partial-frame buffer),
   * whether filled or not; pushed chunks are the caller's and not counted.
   */
  get reservedBytes(): number {
    return this.#partial.length;
  }

  /** The error that ended decoding, if any. */
  get error(): FrameError | null {
    return this.#error;
  }

  /**
   * Hands over the next chunk of the stream. An empty chunk is allowed.
   *
   * @throws {TransportError} `decoder_not_drained` when `next()` has not yet
   * returned null for the previous chunk (its remaining frames would be
   * lost).
   * @throws {FrameError} the error that ended decoding, if any.
   */
  push(chunk: Uint8Array): void {
    if (this.#error !== null) throw this.#error;
    if (this.#offset < this.#chunk.length) {
      throw new TransportError(
        "decoder_not_drained",
        "push() before next() returned null for the previous chunk",
      );
    }
    this.#chunk = chunk;
    this.#offset = 0;
  }

  /**
   * The next whole frame, or null when more bytes are needed.
   *
   * @throws {FrameError} `bad_version`, `empty_frame` or `oversized`, as
   * soon as the offending byte arrives (an oversized length is refused from
   * its header alone, before any of its body is buffered).
   */
  next(): Uint8Array | null {
    if (this.#error !== null) throw this.#error;
    const chunk = this.#chunk;
    let offset = this.#offset;
    if (this.#expectVersion) {
      if (offset >= chunk.length) return this.#drained();
      const version = chunk[offset];
      if (version !== PROTOCOL_VERSION) {
        throw this.#fail("bad_version", `unsupported protocol version byte ${version}`);
      }
      this.#expectVersion = false;
      this.#offset = ++offset;
    }
    if (this.#partialLength > 0) return this.#continuePartial();
    const available = chunk.length - offset;
    if (available === 0) return this.#drained();
    if (available >= FRAME_HEADER_BYTES) {
      const length = this.#checkLength(readLength(chunk, offset));
      const end = offset + FRAME_HEADER_BYTES + length;
      if (end <= chunk.length) {
        this.#offset = end;
        return chunk.subarray(offset + FRAME_HEADER_BYTES, end);
      }
      this.#need = FRAME_HEADER_BYTES + length;
    } else {
      this.#need = 0;
    }
    // The frame runs past this chunk: keep what there is of it.
    this.#reserve(available, 0);
    this.#partial.set(chunk.subarray(offset), 0);
    this.#partialLength = available;
    return this.#drained();
  }

  /**
   * When a frame is partly received, its header known and its body not yet
   * complete: the whole rest of the frame, in the decoder's buffer, to fill.
   * A reader may read straight into it and then call {@link advance}
   * instead of `push()`. Null otherwise (including while a pushed chunk is
   * not drained).
   *
   * This allocates the rest of the frame at once, as its header declares
   * it, before the bytes arrive: use it only for a source whose bytes are
   * known to be there (a file). A reader of a peer uses
   * {@link spareAtLeast}, which keeps memory in step with the bytes.
   */
  spare(): Uint8Array | null {
    if (this.#error !== null || this.#need === 0 || this.#offset < this.#chunk.length) return null;
    this.#reserve(this.#need, this.#partialLength);
    return this.#partial.subarray(this.#partialLength, this.#need);
  }

  /**
   * Like {@link spare}, but bounded: room of at least `minimum` bytes for
   * the rest of the partial frame, growing the decoder's buffer only as far
   * as the bytes already received allow (to about twice what it holds, see
   * the class's memory rule). Null when that room cannot be offered (no
   * frame in progress with a known header, a chunk not drained, less than
   * `minimum` left of the frame, or too few bytes received yet): then read
   * into your own buffer and `push()` it. A connection asks for its read
   * buffer's size, so a large frame is read straight into its place once
   * that saves a copy, and only then.
   * @throws {RangeError} unless `minimum` is a positive integer.
   */
  spareAtLeast(minimum: number): Uint8Array | null {
    if (!Number.isInteger(minimum) || minimum < 1) {
      throw new RangeError(`spareAtLeast(${minimum}): not a positive integer`);
    }
    const need = this.#need;
    const have = this.#partialLength;
    if (this.#error !== null || need === 0 || this.#offset < this.#chunk.length) return null;
    if (need - have < minimum) return null;
    if (this.#partial.length - have < minimum) {
      const grown = this.#allowance(have);
      if (grown - have < minimum) return null;
      this.#resize(grown, have);
    }
    return this.#partial.subarray(have, Math.min(need, this.#partial.length));
  }

  /**
   * Records that `n` bytes were written into the space {@link spare} or
   * {@link spareAtLeast} offered. Call `next()` afterwards: it returns the
   * frame once it is complete.
   * @throws {RangeError} when `n` is more than was offered.
   */
  advance(n: number): void {
    const room = this.#error !== null || this.#need === 0 || this.#offset < this.#chunk.length
      ? -1
      : Math.min(this.#need, this.#partial.length) - this.#partialLength;
    if (room < 0 || !Number.isInteger(n) || n < 0 || n > room) {
      throw new RangeError(`advance(${n}) beyond the spare space`);
    }
    this.#partialLength += n;
  }

  /**
   * Gives up the decoder's own buffer when no frame is in progress (between
   * frames), so that a connection gone quiet holds none; the next cut frame
   * starts a new one at {@link MIN_PARTIAL_BYTES}. A frame returned before
   * stays valid (the caller holds its view, and so the memory). Returns
   * whether a buffer was given up; a frame in progress keeps its buffer.
   */
  release(): boolean {
    if (this.#partialLength > 0 || this.#partial.length === 0) return false;
    this.#partial = EMPTY;
    return true;
  }

  /**
   * Declares the end of the stream.
   * @throws {FrameError} `truncated` when it ended inside a frame (a
   * stream that ends right after the version byte, or before it, is a clean
   * end), or the error that ended decoding.
   * @throws {TransportError} `decoder_not_drained` when whole frames are
   * still waiting in a pushed chunk.
   */
  end(): void {
    if (this.#error !== null) throw this.#error;
    if (this.#offset < this.#chunk.length) {
      throw new TransportError("decoder_not_drained", "end() before next() returned null");
    }
    if (this.#partialLength > 0) {
      throw this.#fail(
        "truncated",
        `the stream ended inside a frame (${this.#partialLength} bytes of it received)`,
      );
    }
  }

  /** Completes the partial frame from the current chunk. */
  #continuePartial(): Uint8Array | null {
    const chunk = this.#chunk;
    let offset = this.#offset;
    let have = this.#partialLength;
    if (this.#need === 0) {
      // The header itself was cut: complete it first.
      const take = Math.min(FRAME_HEADER_BYTES - have, chunk.length - offset);
      for (let i = 0; i < take; i++) this.#partial[have++] = chunk[offset++];
      this.#offset = offset;
      this.#partialLength = have;
      if (have < FRAME_HEADER_BYTES) return this.#drained();
      const length = this.#checkLength(readLength(this.#partial, 0));
      this.#need = FRAME_HEADER_BYTES + length;
    }
    const take = Math.min(this.#need - have, chunk.length - offset);
    if (take > 0) {
      this.#reserve(have + take, have);
      this.#partial.set(chunk.subarray(offset, offset + take), have);
      have += take;
      offset += take;
      this.#offset = offset;
      this.#partialLength = have;
    }
    if (have < this.#need) return this.#drained();
    const frame = this.#partial.subarray(FRAME_HEADER_BYTES, this.#need);
    this.#partialLength = 0;
    this.#need = 0;
    return frame;
  }

  /**
   * Ensures the partial buffer can hold `size` bytes of the current frame
   * (bytes that have arrived), keeping its first `keep`. It grows to the
   * allowance for `size` bytes: geometric, so repeated growth copies
   * linearly.
   */
  #reserve(size: number, keep: number): void {
    if (this.#partial.length >= size) return;
    this.#resize(Math.max(size, this.#allowance(size)), keep);
  }

  /**
   * The most the buffer may hold for the current frame when `have` of its
   * bytes have arrived: twice that (at least {@link MIN_PARTIAL_BYTES}), or
   * the whole frame (at least MIN_PARTIAL_BYTES) once that is within half
   * as much again, so that a frame just over a power of two (its 4-byte
   * header!) is not regrown for its last bytes. Hence never more than
   * max(1.5 × MIN_PARTIAL_BYTES, 3 × `have`), nor than the whole frame or
   * MIN_PARTIAL_BYTES.
   */
  #allowance(have: number): number {
    const need = this.#need;
    const doubled = Math.max(MIN_PARTIAL_BYTES, 2 * have);
    if (need === 0 || doubled + (doubled >>> 1) < need) return doubled;
    return Math.max(need, MIN_PARTIAL_BYTES);
  }

  /** Replaces the partial buffer by one of `size` bytes, keeping its first `keep`. */
  #resize(size: number, keep: number): void {
    const next = new Uint8Array(size);
    if (keep > 0) next.set(this.#partial.subarray(0, keep));
    this.#partial = next;
  }

  /** The chunk is used up: drop it so the caller's buffer is not retained. */
  #drained(): null {
    this.#chunk = EMPTY;
    this.#offset = 0;
    return null;
  }

  #checkLength(length: number): number {
    if (length === 0) throw this.#fail("empty_frame", "a frame of length 0");
    if (length > this.#maxFrameBytes) {
      throw this.#fail(
        "oversized",
        `a frame of ${length} bytes exceeds the maximum of ${this.#maxFrameBytes}`,
      );
    }
    return length;
  }

  #fail(code: FrameErrorCode, message: string): FrameError {
    this.#error = new FrameError(code, message);
    this.#chunk = EMPTY;
    this.#offset = 0;
    this.#partial = EMPTY;
    this.#partialLength = 0;
    this.#need = 0;
    return this.#error;
  }
}
