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
 * - Properties (fast-check, PROPERTY_SEED / PROPERTY_RUNS as elsewhere):
 *   random chunkings of random frame sequences decode identically, through
 *   `push` and through `spare`/`advance`; random bytes make the decoder
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
