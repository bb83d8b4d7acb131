/**
 * Unit and property tests of the framing (`frame_decoder.ts`).
 *
 * - Every chunk boundary: a stream of frames cut at every byte, in two and
 *   in one-byte pieces, decodes to the same frames.
 * - Limits: a frame of exactly `maxFrameBytes`, one byte more (refused from
 *   its header alone), length zero, a wrong version byte; errors are sticky.
 * - The zero-copy contract: a frame whole inside a chunk is a view of that
 *   chunk; a cut frame is assembled in one reused buffer; a drained chunk
 *   may be overwritten by the caller.
 * - Memory follows the bytes: the header of a maximal frame and a few bytes
 *   reserve a small buffer, which grows geometrically with the bytes
 *   received (`reservedBytes`, `spareAtLeast`); the limit can be lowered
 *   and raised between headers (`setMaxFrameBytes`).
 * - Properties (fast-check, PROPERTY_SEED / PROPERTY_RUNS as elsewhere):
 *   random chunkings of random frame sequences decode identically, through
 *   `push` and through `spare`/`advance`, and never make the decoder hold
 *   more than the growth bound allows; random bytes make the decoder
 *   throw nothing but FrameError, and what it does return re-encodes to a
 *   prefix of the input.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { TransportError } from "../errors.ts";
import { describeConfiguration, propertyParameters, sameBytes } from "../testdata/mutations.ts";
import {
  encodeFrameHeader,
  FrameDecoder,
  FrameError,
  type FrameErrorCode,
  MAX_FRAME_BYTES,
  MIN_PARTIAL_BYTES,
  PROTOCOL_VERSION,
} from "./frame_decoder.ts";

console.log(describeConfiguration("frame_decoder_test"));

/** Runs of each property when PROPERTY_RUNS is not set. */
const RUNS = 10_000;

/** The wire bytes of `frames`, opened by the version byte unless `version` is false. */
function encodeStream(frames: Uint8Array[], version = true): Uint8Array {
  const total = frames.reduce((n, f) => n + 4 + f.length, version ? 1 : 0);
  const out = new Uint8Array(total);
  let at = 0;
  if (version) out[at++] = PROTOCOL_VERSION;
  for (const frame of frames) {
    encodeFrameHeader(frame.length, out, at);
    out.set(frame, at + 4);
    at += 4 + frame.length;
  }
  return out;
}

/** Frame `i` of a test stream: `length` bytes derived from `i`. */
function frameOf(i: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let j = 0; j < length; j++) out[j] = (i * 31 + j * 7) & 0xff;
  return out;
}

/** Pushes each chunk and drains; returns copies of the frames. */
function decodeChunks(decoder: FrameDecoder, chunks: Uint8Array[]): Uint8Array[] {
  const frames: Uint8Array[] = [];
  for (const chunk of chunks) {
    decoder.push(chunk);
    for (let f = decoder.next(); f !== null; f = decoder.next()) frames.push(f.slice());
  }
  return frames;
}

function assertFrames(actual: Uint8Array[], expected: Uint8Array[], what: string): void {
  assert.equal(actual.length, expected.length, `${what}: frame count`);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(sameBytes(actual[i], expected[i]), `${what}: frame ${i} differs`);
  }
}

function assertFrameError(fn: () => unknown, code: FrameErrorCode): FrameError {
  let caught: FrameError | undefined;
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof FrameError, `expected a FrameError, got ${error}`);
    assert.ok(error instanceof RangeError, "a FrameError is a RangeError");
    assert.equal(error.code, code, error.message);
    caught = error;
    return true;
  });
  return caught!;
}

Deno.test("encodeFrameHeader writes 4 big-endian bytes, into a target at an offset", () => {
  assert.deepEqual([...encodeFrameHeader(1)], [0, 0, 0, 1]);
  assert.deepEqual([...encodeFrameHeader(0x01020304)], [1, 2, 3, 4]);
  assert.deepEqual([...encodeFrameHeader(0xffffffff)], [255, 255, 255, 255]);
  assert.deepEqual([...encodeFrameHeader(MAX_FRAME_BYTES)], [0, 4, 0, 0]);
  const target = new Uint8Array(7).fill(9);
  assert.equal(encodeFrameHeader(258, target, 2), target);
  assert.deepEqual([...target], [9, 9, 0, 0, 1, 2, 9]);
  assertFrameError(() => encodeFrameHeader(0), "empty_frame");
  assertFrameError(() => encodeFrameHeader(2 ** 32), "oversized");
  assert.throws(() => encodeFrameHeader(-1), RangeError);
  assert.throws(() => encodeFrameHeader(1.5), RangeError);
  assert.throws(() => encodeFrameHeader(5, new Uint8Array(7), 4), RangeError);
});

Deno.test("the constructor refuses maxFrameBytes outside 1 .. 2^32 - 1", () => {
  for (const bad of [0, -1, 1.5, 2 ** 32, NaN, Infinity]) {
    assert.throws(() => new FrameDecoder({ maxFrameBytes: bad }), RangeError, String(bad));
  }
  assert.equal(new FrameDecoder().maxFrameBytes, MAX_FRAME_BYTES);
  assert.equal(new FrameDecoder({ maxFrameBytes: 1 }).maxFrameBytes, 1);
});

Deno.test("the version byte opens the stream; anything else is bad_version, for good", () => {
  const decoder = new FrameDecoder();
  decoder.push(new Uint8Array([PROTOCOL_VERSION]));
  assert.equal(decoder.next(), null);
  assert.equal(decoder.buffered, 0);
  decoder.end(); // a stream of just the version byte is a clean end

  for (const version of [0, 2, 0xff]) {
    const bad = new FrameDecoder();
    bad.push(encodeStream([frameOf(0, 3)]).map((b, i) => i === 0 ? version : b));
    const error = assertFrameError(() => bad.next(), "bad_version");
    assert.match(error.message, new RegExp(`${version}`));
    // Sticky: the stream has lost its framing.
    assert.equal(assertFrameError(() => bad.next(), "bad_version"), error);
    assert.equal(assertFrameError(() => bad.push(new Uint8Array(1)), "bad_version"), error);
    assert.equal(assertFrameError(() => bad.end(), "bad_version"), error);
    assert.equal(bad.error, error);
  }

  // Without the version byte, 0x01 would be the first header byte.
  const bare = new FrameDecoder({ expectVersion: false });
  assertFrames(decodeChunks(bare, [encodeStream([frameOf(1, 5)], false)]), [frameOf(1, 5)], "bare");
});

Deno.test("many frames in one chunk, and every single-cut and byte-by-byte chunking", () => {
  const max = 300;
  const frames = [1, 2, 3, 4, 5, 100, max, 1, max, 7].map((n, i) => frameOf(i, n));
  const stream = encodeStream(frames);
  assertFrames(decodeChunks(new FrameDecoder({ maxFrameBytes: max }), [stream]), frames, "one");
  for (let cut = 0; cut <= stream.length; cut++) {
    const decoder = new FrameDecoder({ maxFrameBytes: max });
    const chunks = [stream.subarray(0, cut), stream.subarray(cut)];
    assertFrames(decodeChunks(decoder, chunks), frames, `cut at ${cut}`);
    assert.equal(decoder.buffered, 0);
    decoder.end();
  }
  for (let a = 0; a < 40; a++) {
    // Two cuts, the first inside the first few frames' headers.
    for (let b = a; b <= stream.length; b += 13) {
      const chunks = [stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)];
      const decoded = decodeChunks(new FrameDecoder({ maxFrameBytes: max }), chunks);
      assertFrames(decoded, frames, `cuts at ${a}, ${b}`);
    }
  }
  const bytes = Array.from(stream, (_, i) => stream.subarray(i, i + 1));
  assertFrames(decodeChunks(new FrameDecoder({ maxFrameBytes: max }), bytes), frames, "bytes");
});

Deno.test("a frame of exactly maxFrameBytes passes; one byte more is refused from its header", () => {
  for (const max of [1, 2, 255, 256, 65536, MAX_FRAME_BYTES]) {
    const frame = frameOf(max, max);
    const decoder = new FrameDecoder({ maxFrameBytes: max });
    assertFrames(decodeChunks(decoder, [encodeStream([frame, frame])]), [frame, frame], `${max}`);

    const over = new FrameDecoder({ maxFrameBytes: max });
    // Only the version byte and the header: nothing of the body is needed
    // (or buffered) to refuse it.
    const header = encodeStream([new Uint8Array(max + 1)]).subarray(0, 5);
    over.push(header.subarray(0, 3));
    assert.equal(over.next(), null);
    over.push(header.subarray(3));
    const error = assertFrameError(() => over.next(), "oversized");
    assert.match(error.message, new RegExp(`${max + 1}`));
    assert.equal(over.buffered, 0, "nothing kept after the error");
  }
  // The largest length a header can carry.
  const huge = new FrameDecoder();
  huge.push(new Uint8Array([PROTOCOL_VERSION, 0xff, 0xff, 0xff, 0xff]));
  assertFrameError(() => huge.next(), "oversized");
});

Deno.test("a zero length is empty_frame, also after good frames and when cut", () => {
  const zero = new FrameDecoder();
  zero.push(new Uint8Array([PROTOCOL_VERSION, 0, 0, 0, 0]));
  assertFrameError(() => zero.next(), "empty_frame");

  const later = new FrameDecoder();
  const stream = encodeStream([frameOf(0, 2)]);
  later.push(Uint8Array.from([...stream, 0, 0]));
  assert.ok(sameBytes(later.next()!, frameOf(0, 2)));
  assert.equal(later.next(), null);
  later.push(new Uint8Array([0, 0, 9]));
  assertFrameError(() => later.next(), "empty_frame");
});

Deno.test("end() reports a stream that stopped inside a frame as truncated", () => {
  const stream = encodeStream([frameOf(0, 10)]);
  for (let cut = 2; cut < stream.length; cut++) {
    const decoder = new FrameDecoder();
    decodeChunks(decoder, [stream.subarray(0, cut)]);
    assert.equal(decoder.buffered, cut - 1);
    assertFrameError(() => decoder.end(), "truncated");
  }
  const empty = new FrameDecoder();
  empty.end(); // nothing at all is a clean end too
});

Deno.test("push() before the previous chunk is drained is refused, and loses nothing", () => {
  const decoder = new FrameDecoder();
  const frames = [frameOf(0, 3), frameOf(1, 4)];
  decoder.push(encodeStream(frames));
  assert.ok(sameBytes(decoder.next()!, frames[0]));
  assert.throws(() => decoder.push(new Uint8Array(1)), (error: unknown) => {
    assert.ok(error instanceof TransportError);
    assert.equal(error.code, "decoder_not_drained");
    return true;
  });
  assert.throws(() => decoder.end(), TransportError);
  assert.ok(sameBytes(decoder.next()!, frames[1]));
  assert.equal(decoder.next(), null);
});

Deno.test("whole frames are views of the chunk; cut frames reuse one buffer", () => {
  const decoder = new FrameDecoder({ maxFrameBytes: 1000 });
  const frames = [frameOf(0, 10), frameOf(1, 20)];
  const chunk = encodeStream(frames);
  decoder.push(chunk);
  const first = decoder.next()!;
  assert.equal(first.buffer, chunk.buffer, "not a view of the chunk");
  assert.equal(first.byteOffset, chunk.byteOffset + 5);
  decoder.next();
  assert.equal(decoder.next(), null);

  // Cut frames: the second is assembled where the first was.
  const cut = encodeStream([frameOf(2, 500), frameOf(3, 400)], false);
  decoder.push(cut.subarray(0, 100));
  assert.equal(decoder.next(), null);
  decoder.push(cut.subarray(100, 600));
  const a = decoder.next()!;
  assert.ok(sameBytes(a, frameOf(2, 500)));
  const buffer = a.buffer;
  assert.notEqual(buffer, cut.buffer);
  assert.equal(decoder.next(), null);
  decoder.push(cut.subarray(600));
  const b = decoder.next()!;
  assert.ok(sameBytes(b, frameOf(3, 400)));
  assert.equal(b.buffer, buffer, "the assembly buffer was not reused");
});

Deno.test("the caller may overwrite a drained chunk: what was left of it was copied", () => {
  const frames = [frameOf(0, 50), frameOf(1, 60), frameOf(2, 70)];
  const stream = encodeStream(frames);
  const decoder = new FrameDecoder();
  const buffer = new Uint8Array(64); // one reusable read buffer, as a connection has
  const out: Uint8Array[] = [];
  for (let at = 0; at < stream.length; at += buffer.length) {
    const n = Math.min(buffer.length, stream.length - at);
    buffer.set(stream.subarray(at, at + n));
    decoder.push(buffer.subarray(0, n));
    for (let f = decoder.next(); f !== null; f = decoder.next()) out.push(f.slice());
    buffer.fill(0xee); // scribble over it
  }
  assertFrames(out, frames, "reused buffer");
});

Deno.test("spare() and advance() let a reader fill a cut frame in place", () => {
  const frame = frameOf(9, 10_000);
  const stream = encodeStream([frame, frameOf(10, 3)]);
  const decoder = new FrameDecoder();
  assert.equal(decoder.spare(), null);
  decoder.push(stream.subarray(0, 3)); // version + part of the header
  assert.equal(decoder.spare(), null, "spare offered while the chunk is not drained");
  assert.equal(decoder.next(), null);
  assert.equal(decoder.spare(), null, "spare offered before the header is known");
  decoder.push(stream.subarray(3, 105));
  assert.equal(decoder.next(), null);
  let at = 105;
  const end = 5 + frame.length;
  while (at < end) {
    const spare = decoder.spare()!;
    assert.equal(spare.length, end - at);
    const n = Math.min(777, spare.length);
    spare.set(stream.subarray(at, at + n));
    decoder.advance(n);
    at += n;
    if (at < end) assert.equal(decoder.next(), null);
  }
  assert.throws(() => decoder.advance(1), RangeError);
  assert.ok(sameBytes(decoder.next()!, frame));
  assert.equal(decoder.spare(), null);
  decoder.push(stream.subarray(end));
  assert.ok(sameBytes(decoder.next()!, frameOf(10, 3)));
  assert.equal(decoder.next(), null);

  const over = new FrameDecoder();
  over.push(stream.subarray(0, 100));
  over.next();
  assert.throws(() => over.advance(-1), RangeError);
  assert.throws(() => over.advance(1e6), RangeError);
});

// ---------------------------------------------------------------------------
// Memory follows the bytes, and the limit can change

/** The most the decoder may hold while `received` bytes of a frame (header included) are in. */
function allowedFor(received: number): number {
  return Math.max(1.5 * MIN_PARTIAL_BYTES, 3 * received);
}

Deno.test("a maximal frame's header and a few bytes reserve a small buffer, not the frame", () => {
  const decoder = new FrameDecoder();
  assert.equal(decoder.reservedBytes, 0);
  const head = new Uint8Array(1 + 4 + 10);
  head[0] = PROTOCOL_VERSION;
  encodeFrameHeader(MAX_FRAME_BYTES, head, 1);
  head.fill(7, 5);
  decoder.push(head);
  assert.equal(decoder.next(), null);
  assert.equal(decoder.buffered, 14);
  assert.ok(
    decoder.reservedBytes <= MIN_PARTIAL_BYTES,
    `a header and 10 bytes reserved ${decoder.reservedBytes} bytes`,
  );
  // Nor does a reader asking for room to read into get it ahead of the bytes.
  assert.equal(decoder.spareAtLeast(64 * 1024), null);
  assert.ok(decoder.reservedBytes <= MIN_PARTIAL_BYTES);
  const room = decoder.spareAtLeast(16);
  assert.ok(room !== null && room.length >= 16);
  assert.ok(decoder.reservedBytes <= MIN_PARTIAL_BYTES);

  // The header of a maximal frame alone, cut anywhere: the same.
  for (let cut = 1; cut <= 5; cut++) {
    const alone = new FrameDecoder();
    alone.push(head.subarray(0, cut));
    assert.equal(alone.next(), null);
    alone.push(head.subarray(cut, 5));
    assert.equal(alone.next(), null);
    assert.ok(alone.reservedBytes <= MIN_PARTIAL_BYTES, `cut at ${cut}`);
  }
});

Deno.test("the buffer of a large frame grows with its bytes, geometrically, and is reused", () => {
  const frame = frameOf(5, MAX_FRAME_BYTES);
  const stream = encodeStream([frame, frameOf(6, MAX_FRAME_BYTES)]);
  for (const step of [1000, 4096, 65_536]) {
    for (const inPlace of [false, true]) {
      const decoder = new FrameDecoder();
      const sizes = new Set<number>();
      const out: Uint8Array[] = [];
      let at = 0;
      let frameStart = 1;
      while (at < stream.length) {
        // As a connection reads: into the decoder when it offers a read's
        // worth of room, else into a read buffer of `step` bytes.
        const spare = inPlace ? decoder.spareAtLeast(step) : null;
        let n: number;
        if (spare !== null) {
          n = Math.min(spare.length, stream.length - at);
          spare.set(stream.subarray(at, at + n));
          decoder.advance(n);
        } else {
          n = Math.min(step, stream.length - at);
          decoder.push(stream.subarray(at, at + n));
        }
        at += n;
        for (let f = decoder.next(); f !== null; f = decoder.next()) {
          out.push(f.slice());
          frameStart += 4 + f.length;
        }
        if (out.length === 0) {
          const received = Math.min(at, frameStart + 4 + MAX_FRAME_BYTES) - frameStart;
          assert.ok(
            decoder.reservedBytes <= allowedFor(received),
            `step ${step}: ${decoder.reservedBytes} bytes reserved for ${received} received`,
          );
        }
        sizes.add(decoder.reservedBytes);
      }
      assertFrames(out, [frame, frameOf(6, MAX_FRAME_BYTES)], `step ${step}`);
      // Doubling from 256 bytes to 256 KiB: a dozen sizes at most, and the
      // second frame reused the first one's buffer.
      assert.ok(sizes.size <= 12, `${sizes.size} buffer sizes: ${[...sizes]}`);
      assert.equal(decoder.reservedBytes, 4 + MAX_FRAME_BYTES);
    }
  }
});

Deno.test("spareAtLeast offers room only within the frame and the growth bound", () => {
  const decoder = new FrameDecoder();
  for (const bad of [0, -1, 1.5, NaN]) assert.throws(() => decoder.spareAtLeast(bad), RangeError);
  assert.equal(decoder.spareAtLeast(1), null, "nothing in progress");
  const stream = encodeStream([frameOf(1, 3000)]);
  decoder.push(stream.subarray(0, 1001)); // version, header, 996 bytes
  assert.equal(decoder.spareAtLeast(1), null, "offered while the chunk is not drained");
  assert.equal(decoder.next(), null);
  const held = 1000;
  const room = decoder.spareAtLeast(500)!;
  assert.ok(room.length >= 500);
  assert.ok(decoder.reservedBytes <= allowedFor(held));
  assert.equal(decoder.spareAtLeast(3000), null, "more than is left of the frame");
  assert.throws(() => decoder.advance(room.length + 1), RangeError);
  room.set(stream.subarray(1001, 1001 + room.length));
  decoder.advance(room.length);
  let at = 1001 + room.length;
  while (at < stream.length) {
    const left = stream.length - at;
    const spare = decoder.spareAtLeast(Math.min(left, 100))!;
    assert.ok(spare.length <= left, "room beyond the frame's end");
    const n = Math.min(spare.length, left);
    spare.set(stream.subarray(at, at + n));
    decoder.advance(n);
    at += n;
  }
  assert.ok(sameBytes(decoder.next()!, frameOf(1, 3000)));
  assert.equal(decoder.spareAtLeast(1), null, "offered between frames");
});

Deno.test("setMaxFrameBytes: lowered and raised for every header not read yet", () => {
  const decoder = new FrameDecoder({ maxFrameBytes: 100 });
  assert.equal(decoder.maxFrameBytes, 100);
  for (const bad of [0, -1, 1.5, 2 ** 32]) {
    assert.throws(() => decoder.setMaxFrameBytes(bad), RangeError);
  }
  assert.equal(decoder.maxFrameBytes, 100);

  // Raised: a frame above the old limit passes, also one already pushed.
  const frames = [frameOf(0, 100), frameOf(1, 500), frameOf(2, 50)];
  const stream = encodeStream(frames);
  decoder.push(stream);
  assert.ok(sameBytes(decoder.next()!, frames[0]));
  decoder.setMaxFrameBytes(1000);
  assert.ok(sameBytes(decoder.next()!, frames[1]));
  // Lowered: applies to the next header, even one already pushed.
  decoder.setMaxFrameBytes(49);
  assertFrameError(() => decoder.next(), "oversized");

  // A frame whose header was already accepted completes under the old limit.
  const partial = new FrameDecoder({ maxFrameBytes: 1000 });
  const long = encodeStream([frameOf(3, 800), frameOf(4, 800)]);
  partial.push(long.subarray(0, 400));
  assert.equal(partial.next(), null);
  partial.setMaxFrameBytes(500);
  partial.push(long.subarray(400));
  assert.ok(sameBytes(partial.next()!, frameOf(3, 800)));
  assertFrameError(() => partial.next(), "oversized");

  // A header cut in two is judged by the limit when it is complete.
  const cut = new FrameDecoder({ maxFrameBytes: 1000 });
  cut.push(long.subarray(0, 3));
  assert.equal(cut.next(), null);
  cut.setMaxFrameBytes(799);
  cut.push(long.subarray(3, 10));
  assertFrameError(() => cut.next(), "oversized");
});

// ---------------------------------------------------------------------------
// Properties

/** Cut points, as fractions, turned into chunk boundaries of `bytes`. */
function chunk(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = cuts.map((c) => Math.floor(c * (bytes.length + 1))).sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const point of points) {
    out.push(bytes.subarray(from, point));
    from = point;
  }
  out.push(bytes.subarray(from));
  return out;
}

const cutsArbitrary = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 });

Deno.test("property: random chunkings of random frame sequences decode identically", () => {
  const scenario = fc.integer({ min: 1, max: 96 }).chain((max) =>
    fc.record({
      max: fc.constant(max),
      frames: fc.array(fc.uint8Array({ minLength: 1, maxLength: max }), { maxLength: 16 }),
      cuts: cutsArbitrary,
      inPlace: fc.boolean(),
    })
  );
  fc.assert(
    fc.property(scenario, ({ max, frames, cuts, inPlace }) => {
      const stream = encodeStream(frames);
      const decoder = new FrameDecoder({ maxFrameBytes: max });
      const out: Uint8Array[] = [];
      for (const piece of chunk(stream, cuts)) {
        let rest = piece;
        // Alternately, write what fits straight into spare(), as a reader
        // of large frames does.
        const spare = inPlace ? decoder.spare() : null;
        if (spare !== null) {
          const n = Math.min(spare.length, rest.length);
          spare.set(rest.subarray(0, n));
          decoder.advance(n);
          rest = rest.subarray(n);
          for (let f = decoder.next(); f !== null; f = decoder.next()) out.push(f.slice());
        }
        decoder.push(rest);
        for (let f = decoder.next(); f !== null; f = decoder.next()) out.push(f.slice());
      }
      assertFrames(out, frames, "decoded");
      assert.equal(decoder.buffered, 0);
      decoder.end();
    }),
    propertyParameters(RUNS),
  );
});

Deno.test("property: the decoder's buffer stays within the growth bound of the bytes received", () => {
  const scenario = fc.record({
    frames: fc.array(fc.integer({ min: 1, max: 20_000 }), { minLength: 1, maxLength: 6 }),
    cuts: cutsArbitrary,
    minimum: fc.integer({ min: 1, max: 8192 }),
    inPlace: fc.boolean(),
  });
  fc.assert(
    fc.property(scenario, ({ frames: lengths, cuts, minimum, inPlace }) => {
      const frames = lengths.map((length, i) => frameOf(i, length));
      const stream = encodeStream(frames);
      const decoder = new FrameDecoder({ maxFrameBytes: 20_000 });
      // What the buffer may have kept from completed frames (they arrived
      // whole), and where the frame in progress starts in the stream.
      let kept = 0;
      let start = 1;
      let at = 0;
      const out: Uint8Array[] = [];
      const drain = () => {
        for (let f = decoder.next(); f !== null; f = decoder.next()) {
          out.push(f.slice());
          start += 4 + f.length;
          kept = Math.max(kept, allowedFor(4 + f.length));
        }
        const bound = Math.max(kept, allowedFor(Math.max(0, at - start)));
        assert.ok(decoder.reservedBytes <= bound, `${decoder.reservedBytes} > ${bound}`);
      };
      for (const piece of chunk(stream, cuts)) {
        let rest = piece;
        const spare = inPlace ? decoder.spareAtLeast(minimum) : null;
        if (spare !== null) {
          const n = Math.min(spare.length, rest.length);
          spare.set(rest.subarray(0, n));
          decoder.advance(n);
          at += n;
          rest = rest.subarray(n);
          drain();
        }
        decoder.push(rest);
        at += rest.length;
        drain();
      }
      assertFrames(out, frames, "decoded");
    }),
    propertyParameters(RUNS / 10),
  );
});

Deno.test("property: random bytes make the decoder throw FrameError only", () => {
  const scenario = fc.record({
    max: fc.integer({ min: 1, max: 64 }),
    // Half the inputs start with the right version byte, so the rest of
    // the bytes reach the length checks.
    versioned: fc.boolean(),
    bytes: fc.uint8Array({ maxLength: 200 }),
    cuts: cutsArbitrary,
    end: fc.boolean(),
  });
  let errors = 0;
  fc.assert(
    fc.property(scenario, ({ max, versioned, bytes, cuts, end }) => {
      const input = versioned ? Uint8Array.from([PROTOCOL_VERSION, ...bytes]) : bytes;
      const decoder = new FrameDecoder({ maxFrameBytes: max });
      const out: Uint8Array[] = [];
      try {
        for (const piece of chunk(input, cuts)) {
          decoder.push(piece);
          for (let f = decoder.next(); f !== null; f = decoder.next()) {
            assert.ok(f.length >= 1 && f.length <= max, `frame of ${f.length} bytes`);
            out.push(f.slice());
          }
        }
        if (end) decoder.end();
      } catch (error) {
        if (!(error instanceof FrameError) || typeof error.code !== "string") {
          throw new Error(`untyped rejection: ${error}`, { cause: error });
        }
        errors++;
        // Sticky, and the same error.
        assert.throws(() => decoder.next(), (again: unknown) => again === error);
      }
      // Whatever came out is exactly how the input starts.
      const prefix = encodeStream(out);
      assert.ok(out.length === 0 || sameBytes(input.subarray(0, prefix.length), prefix));
    }),
    propertyParameters(RUNS),
  );
  assert.ok(errors > 0, "no input was refused: the property tested nothing");
});
