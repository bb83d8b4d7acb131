/**
 * CBOR (RFC 8949) through cbor-x, with a strict gate in front of the decoder.
 *
 * cbor-x decodes leniently: it accepts indefinite lengths, tags, floats,
 * duplicate map keys and trailing bytes. Everything this project decodes
 * comes from the network or from files an attacker may have touched, so
 * {@link decodeCbor} first walks the bytes once ({@link checkStrictCbor}) and
 * refuses anything outside a small profile:
 *
 * - one data item, no trailing bytes, at most `maxBytes` in all;
 * - definite lengths only, heads in their shortest form, map keys in
 *   ascending order of their encoded bytes (RFC 8949 §4.2.1, core
 *   deterministic encoding), so every value has exactly one encoding;
 * - unsigned and negative integers within ±(2^53 − 1), byte strings, valid
 *   UTF-8 text, arrays, maps whose keys are text strings (each key once:
 *   the strict order implies it), false / true / null; no tags, floats,
 *   undefined or other simple values;
 * - nesting at most `maxDepth` deep.
 *
 * Only then does cbor-x build the JavaScript value. Callers check the exact
 * shape afterwards with the helpers in `shape.ts`.
 *
 * @module
 */
import { Decoder, Encoder } from "cbor-x/decode";
import { LimitError, MalformedError } from "./errors.ts";

/** Options for {@link decodeCbor}. */
export interface DecodeOptions {
  /** Hard upper bound on the input length, checked before anything is read. */
  maxBytes: number;
  /** Deepest nesting of arrays and maps allowed (default 8). */
  maxDepth?: number;
}

// Maps decode to Map, never to plain objects: keys such as "__proto__" stay
// data. Records (a cbor-x extension) are off in both directions. 8-byte
// integer heads decode to numbers, not bigints (`int64AsNumber`, read by
// cbor-x but missing from its types); the gate has bounded them to 2^53 - 1.
const decoderOptions = { mapsAsObjects: false, useRecords: false, int64AsNumber: true };
const decoder = new Decoder(decoderOptions);
const encoder = new Encoder({ mapsAsObjects: false, useRecords: false, tagUint8Array: false });

/**
 * Encodes a value as CBOR and returns a plain Uint8Array that owns its
 * buffer.
 *
 * cbor-x returns a view (a Node Buffer under Deno) into a buffer shared
 * between calls; handing that on would expose other data through `.buffer`
 * and be overwritten by the next call. `Buffer#slice` is a view too, and
 * `Uint8Array#slice` keeps the Buffer species, so the copy is made with the
 * Uint8Array constructor.
 *
 * The output is in the strict profile's canonical form whatever the input's
 * map order, so it always passes {@link checkStrictCbor}.
 *
 * @example
 * ```ts
 * import { decodeCbor, encodeCbor } from "./cbor.ts";
 *
 * // Maps with text keys (never plain objects); keys are written in canonical order.
 * const bytes = encodeCbor([1, "hello", new Map([["bb", 2], ["a", 1]])]);
 * const value = decodeCbor(bytes, { maxBytes: 1024, maxDepth: 2 });
 * // [1, "hello", Map { "a" => 1, "bb" => 2 }]
 * ```
 *
 * @throws {TypeError} for a value the profile cannot hold (floats, unsafe
 *   integers, undefined, plain objects, non-text map keys, ...).
 */
export function encodeCbor(value: unknown): Uint8Array {
  return new Uint8Array(encoder.encode(canonical(value)));
}

const utf8Encoder = new TextEncoder();

/** Text keys in the order of their encoded bytes: shorter first, then bytewise. */
function compareKeys(a: string, b: string): number {
  const x = utf8Encoder.encode(a);
  const y = utf8Encoder.encode(b);
  if (x.length !== y.length) return x.length - y.length;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return 0;
}

/**
 * What cbor-x must be given to write the canonical form: maps re-inserted in
 * key order (RFC 8949 §4.2.1; for text keys the length is in the head, so
 * shorter keys sort first), and integers outside the 32-bit range as
 * bigints, which cbor-x writes as 8-byte integers (their shortest form)
 * instead of float64.
 */
function canonical(value: unknown): unknown {
  if (
    value === null || typeof value === "boolean" || typeof value === "string" ||
    value instanceof Uint8Array
  ) return value;
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) {
      throw new TypeError("the CBOR profile holds safe integers only");
    }
    return value > 0xffff_ffff || value < -0x1_0000_0000 ? BigInt(value) : value;
  }
  if (Array.isArray(value)) return value.map(canonical);
  if (value instanceof Map) {
    const keys = [...value.keys()];
    if (!keys.every((key) => typeof key === "string")) {
      throw new TypeError("the CBOR profile holds text map keys only");
    }
    keys.sort(compareKeys);
    return new Map(keys.map((key) => [key, canonical(value.get(key))]));
  }
  throw new TypeError(
    `the CBOR profile cannot hold ${Object.prototype.toString.call(value)}`,
  );
}

/**
 * Decodes exactly one strict-profile CBOR item (see the module docs).
 *
 * @example
 * ```ts
 * import { decodeCbor, encodeCbor } from "./cbor.ts";
 * import { MalformedError } from "./errors.ts";
 *
 * decodeCbor(encodeCbor(["ok", true, null]), { maxBytes: 64 }); // ["ok", true, null]
 *
 * // 1 with a one-byte argument: well-formed CBOR, but not its shortest form.
 * try {
 *   decodeCbor(Uint8Array.of(0x18, 0x01), { maxBytes: 64 });
 * } catch (error) {
 *   error instanceof MalformedError && error.code; // "non_minimal"
 * }
 * ```
 *
 * @throws {LimitError} `too_large` before decoding when the input exceeds
 *   `maxBytes`; `integer_out_of_range` for integers beyond ±(2^53 − 1).
 * @throws {MalformedError} for anything outside the profile.
 */
export function decodeCbor(bytes: Uint8Array, options: DecodeOptions): unknown {
  checkStrictCbor(bytes, options);
  try {
    return decoder.decode(bytes);
  } catch (cause) {
    // Unreachable for input that passed the walk; kept so that a cbor-x
    // surprise is still a typed error and never a crash.
    throw new MalformedError("not_well_formed", "CBOR decoder refused the input", { cause });
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Text of `b[start, end)`, refusing invalid UTF-8. ASCII (every byte below
 * 0x80, the common case for keys and attribute values) is valid by
 * construction and skips the decoder.
 */
function readText(b: Uint8Array, start: number, end: number, at: number): string {
  let ascii = "";
  for (let i = start; i < end; i++) {
    const byte = b[i];
    if (byte >= 0x80) {
      try {
        return utf8.decode(b.subarray(start, end));
      } catch (cause) {
        throw new MalformedError("invalid_utf8", `text at offset ${at} is not UTF-8`, { cause });
      }
    }
    ascii += String.fromCharCode(byte);
  }
  return ascii;
}

/**
 * Walks `bytes` once and throws unless they are exactly one item of the
 * strict profile. Linear in the input; no allocation besides UTF-8 checks.
 */
export function checkStrictCbor(bytes: Uint8Array, options: DecodeOptions): void {
  if (bytes.length > options.maxBytes) {
    throw new LimitError(
      "too_large",
      `input of ${bytes.length} bytes exceeds the limit of ${options.maxBytes}`,
    );
  }
  if (bytes.length === 0) throw new MalformedError("truncated", "empty input");
  const end = walk(bytes, 0, options.maxDepth ?? 8);
  if (end !== bytes.length) {
    throw new MalformedError("trailing_bytes", `${bytes.length - end} bytes after the CBOR item`);
  }
}

interface Head {
  major: number;
  /** Argument: length, count or integer value. */
  value: number;
  /** Offset just past the head. */
  next: number;
}

function readHead(b: Uint8Array, at: number): Head {
  if (at >= b.length) throw new MalformedError("truncated", `input ends at offset ${at}`);
  const initial = b[at];
  const major = initial >> 5;
  const info = initial & 0x1f;
  if (info < 24) return { major, value: info, next: at + 1 };
  if (info === 31) {
    throw new MalformedError(
      "indefinite_length",
      `indefinite length or break at offset ${at}`,
    );
  }
  if (info > 27) {
    throw new MalformedError("not_well_formed", `reserved additional info ${info} at offset ${at}`);
  }
  // Floats and one-byte simple values: refused by the caller; no range check.
  if (major === 7) return { major, value: info, next: at + 1 + (1 << (info - 24)) };
  const size = 1 << (info - 24); // 1, 2, 4 or 8 bytes
  if (at + 1 + size > b.length) {
    throw new MalformedError("truncated", `head at offset ${at} needs ${size} more bytes`);
  }
  let value = 0;
  if (size === 8) {
    const hi = ((b[at + 1] << 24) >>> 0) + (b[at + 2] << 16) + (b[at + 3] << 8) + b[at + 4];
    const lo = ((b[at + 5] << 24) >>> 0) + (b[at + 6] << 16) + (b[at + 7] << 8) + b[at + 8];
    if (hi > 0x1fffff) {
      throw new LimitError("integer_out_of_range", `value at offset ${at} exceeds 2^53 - 1`);
    }
    value = hi * 0x1_0000_0000 + lo;
  } else {
    for (let i = 1; i <= size; i++) value = value * 256 + b[at + i];
  }
  // Shortest form only (RFC 8949 §4.2.1): each width must be needed.
  const minimum = size === 1 ? 24 : size === 2 ? 0x100 : size === 4 ? 0x1_0000 : 0x1_0000_0000;
  if (value < minimum) {
    throw new MalformedError("non_minimal", `head at offset ${at} is not in its shortest form`);
  }
  return { major, value, next: at + 1 + size };
}

/** Bytewise order of `b[a0, a1)` and `b[b0, b1)`; a shorter prefix sorts first. */
function compareBytes(b: Uint8Array, a0: number, a1: number, b0: number, b1: number): number {
  const n = Math.min(a1 - a0, b1 - b0);
  for (let i = 0; i < n; i++) {
    const d = b[a0 + i] - b[b0 + i];
    if (d !== 0) return d;
  }
  return (a1 - a0) - (b1 - b0);
}

function walk(b: Uint8Array, at: number, depth: number): number {
  const head = readHead(b, at);
  switch (head.major) {
    case 0: // unsigned integer
      return head.next;
    case 1: // negative integer: −1 − value, so the argument may be 2^53 − 2 at most
      if (head.value > Number.MAX_SAFE_INTEGER - 1) {
        throw new LimitError("integer_out_of_range", `value at offset ${at} is below -(2^53 - 1)`);
      }
      return head.next;
    case 2: // byte string
    case 3: { // text string
      const end = head.next + head.value;
      if (end > b.length) {
        throw new MalformedError("truncated", `string at offset ${at} runs past the input`);
      }
      if (head.major === 3) readText(b, head.next, end, at);
      return end;
    }
    case 4: { // array
      if (depth === 0) throw new MalformedError("too_deep", `nesting too deep at offset ${at}`);
      // Each item takes at least one byte: refuse impossible counts at once
      // instead of looping over them.
      if (head.value > b.length - head.next) {
        throw new MalformedError("truncated", `array at offset ${at} claims too many items`);
      }
      let next = head.next;
      for (let i = 0; i < head.value; i++) next = walk(b, next, depth - 1);
      return next;
    }
    case 5: { // map: text keys, each key once
      if (depth === 0) throw new MalformedError("too_deep", `nesting too deep at offset ${at}`);
      if (head.value * 2 > b.length - head.next) {
        throw new MalformedError("truncated", `map at offset ${at} claims too many entries`);
      }
      let next = head.next;
      let previousStart = -1;
      let previousEnd = -1;
      for (let i = 0; i < head.value; i++) {
        const key = readHead(b, next);
        if (key.major !== 3) {
          throw new MalformedError("unsupported_type", `map key at offset ${next} is not text`);
        }
        const keyEnd = walk(b, next, depth - 1);
        if (previousStart >= 0) {
          const order = compareBytes(b, previousStart, previousEnd, next, keyEnd);
          if (order === 0) {
            throw new MalformedError("duplicate_key", `map at offset ${at} repeats a key`);
          }
          if (order > 0) {
            throw new MalformedError(
              "non_canonical_order",
              `map at offset ${at}: key at offset ${next} is out of order`,
            );
          }
        }
        previousStart = next;
        previousEnd = keyEnd;
        next = walk(b, keyEnd, depth - 1);
      }
      return next;
    }
    case 6:
      throw new MalformedError("unsupported_type", `tag at offset ${at} is not allowed`);
    default: { // 7: simple values and floats
      const initial = b[at];
      if (initial === 0xf4 || initial === 0xf5 || initial === 0xf6) return head.next;
      throw new MalformedError(
        "unsupported_type",
        `simple value or float 0x${initial.toString(16)} at offset ${at} is not allowed`,
      );
    }
  }
}
