/**
 * Property tests of the strict CBOR gate (`cbor.ts`).
 *
 * - Values built from the allowed types (safe integers, byte strings, text,
 *   arrays, maps with text keys, booleans, null) round-trip through
 *   encodeCbor and decodeCbor, checkStrictCbor accepts what encodeCbor
 *   writes, and `maxDepth` is exact.
 * - encodeCbor returns a plain Uint8Array that owns its buffer (as its doc
 *   promises).
 * - Arbitrary bytes (random, CBOR-like with every kind of head, and mutated
 *   valid encodings) never make decodeCbor throw anything but MalformedError
 *   or LimitError; whatever it accepts is in the profile and is the one
 *   encoding of its value.
 * - decodeCbor never accepts more than `maxBytes`.
 * - Text that is not well-formed UTF-16 is refused as invalid UTF-8; floats
 *   and simple values other than false, true and null are refused as
 *   unsupported types.
 *
 * Seed and run count: PROPERTY_SEED and PROPERTY_RUNS (see
 * `src/testdata/mutations.ts`).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { checkStrictCbor, decodeCbor, encodeCbor } from "./cbor.ts";
import { LimitError, MalformedError } from "./errors.ts";
import { toHex } from "./hex.ts";
import {
  applyMutation,
  assertTypedError,
  describeConfiguration,
  ENCODING_ERRORS,
  type Mutation,
  mutationArbitrary,
  propertyParameters,
  sameBytes,
} from "../testdata/mutations.ts";
import { assertThrowsWithCode } from "../testdata/test_helpers.ts";

console.log(describeConfiguration("cbor_property_test"));

// ---------------------------------------------------------------------------
// Values of the profile

/** A value of the strict profile, as decodeCbor returns it. */
type Value = null | boolean | number | string | Uint8Array | Value[] | Map<string, Value>;

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** Integers at every head-width boundary, and the ends of the safe range. */
const BOUNDARY_INTEGERS = [
  0,
  1,
  23,
  24,
  255,
  256,
  65535,
  65536,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 32 + 1,
  MAX_SAFE - 1,
  MAX_SAFE,
].flatMap((n) => n === 0 ? [0] : [n, -n, -n - 1].filter((m) => Number.isSafeInteger(m)));

const safeInteger = fc.oneof(
  fc.integer({ min: -1000, max: 1000 }),
  fc.constantFrom(...BOUNDARY_INTEGERS),
  fc.maxSafeInteger(),
).map((n) => n + 0); // never -0: CBOR has no negative zero integer

const text = fc.oneof(
  fc.string(),
  fc.string({ unit: "binary" }),
  fc.string({ unit: "grapheme", maxLength: 8 }),
  fc.string({ unit: "binary-ascii", minLength: 20, maxLength: 300 }),
  // UTF-8 longer than UTF-16: byte lengths cross the head widths that the
  // UTF-16 lengths do not.
  fc.string({ unit: fc.constantFrom("é", "€", "😀"), minLength: 5, maxLength: 100 }),
  fc.constantFrom("__proto__", "constructor", "toString", ""),
);

const byteString = fc.oneof(
  { weight: 4, arbitrary: fc.uint8Array({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 250, maxLength: 300 }) },
);

const { value: valueArbitrary } = fc.letrec<{
  value: Value;
  array: Value[];
  map: Map<string, Value>;
}>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    safeInteger,
    text,
    byteString,
    fc.boolean(),
    fc.constant(null),
    tie("array"),
    tie("map"),
  ),
  array: fc.array(tie("value"), { maxLength: 6 }),
  map: fc.uniqueArray(fc.tuple(text, tie("value")), { selector: ([key]) => key, maxLength: 6 })
    .map((entries) => new Map(entries)),
}));

/** Nesting of arrays and maps: what `maxDepth` must at least be. */
function depthOf(value: Value): number {
  if (Array.isArray(value)) return 1 + Math.max(0, ...value.map(depthOf));
  if (value instanceof Map) return 1 + Math.max(0, ...[...value.values()].map(depthOf));
  return 0;
}

/**
 * Throws unless `value` is made only of the profile's types: safe integers,
 * plain Uint8Array byte strings, text, arrays, maps with text keys, booleans
 * and null (no bigint, float, undefined, Buffer, Date, tagged value...).
 */
function assertInProfile(value: unknown, input: Uint8Array, path = "$"): void {
  const fail = (what: string): never => {
    throw new Error(
      `decodeCbor returned ${what} at ${path}, outside the profile, for ${toHex(input)}`,
    );
  };
  if (value === null || typeof value === "boolean" || typeof value === "string") return;
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value) || Object.is(value, -0)) fail(`the number ${value}`);
    return;
  }
  if (value instanceof Uint8Array) {
    if (Object.getPrototypeOf(value) !== Uint8Array.prototype) fail(`a ${value.constructor.name}`);
    return;
  }
  if (Array.isArray(value)) {
    if (Object.getPrototypeOf(value) !== Array.prototype) fail("an array subclass");
    value.forEach((item, i) => assertInProfile(item, input, `${path}[${i}]`));
    return;
  }
  if (value instanceof Map) {
    for (const [key, item] of value) {
      if (typeof key !== "string") fail(`a map key of type ${typeof key}`);
      assertInProfile(item, input, `${path}.${JSON.stringify(key)}`);
    }
    return;
  }
  fail(`${typeof value} ${String(value)}`);
}

// ---------------------------------------------------------------------------
// CBOR-like bytes: every major type, every head width (minimal or not),
// lengths that lie, tags, floats, simple values, indefinite lengths, invalid
// UTF-8, duplicate and non-text map keys, trailing bytes.

const TWO_64 = 2n ** 64n;
const BOUNDARY_ARGUMENTS = [
  0n,
  1n,
  23n,
  24n,
  255n,
  256n,
  65535n,
  65536n,
  2n ** 32n - 1n,
  2n ** 32n,
  2n ** 53n - 2n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 63n,
  TWO_64 - 1n,
];

const argument = fc.oneof(
  fc.bigInt({ min: 0n, max: 23n }),
  fc.constantFrom(...BOUNDARY_ARGUMENTS),
  fc.bigInt({ min: 0n, max: TWO_64 - 1n }),
);

/** Head width in argument bytes; `null` for the shortest form. */
const headWidth = fc.oneof(
  { weight: 12, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.constantFrom(1, 2, 4, 8) },
);

/** The head of `major` with `arg`, in `width` bytes (widened when `arg` needs more). */
function head(major: number, arg: bigint, width: number | null): number[] {
  const minimal = arg < 24n
    ? 0
    : arg < 0x100n
    ? 1
    : arg < 0x1_0000n
    ? 2
    : arg < 0x1_0000_0000n
    ? 4
    : 8;
  const size = Math.max(width ?? minimal, minimal);
  if (size === 0) return [(major << 5) | Number(arg)];
  const out = [(major << 5) | (24 + Math.log2(size))];
  for (let i = size - 1; i >= 0; i--) out.push(Number((arg >> BigInt(8 * i)) & 0xffn));
  return out;
}

/** The real count or length most of the time, otherwise a lie. */
const lie = fc.oneof(
  { weight: 10, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: argument },
);

const utf8 = new TextEncoder();

const { item: cborLikeItem } = fc.letrec<{ item: number[]; key: number[] }>((tie) => ({
  item: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    // unsigned and negative integers
    fc.tuple(fc.constantFrom(0, 1), argument, headWidth).map(([m, a, w]) => head(m, a, w)),
    // byte strings
    fc.tuple(fc.uint8Array({ maxLength: 24 }), lie, headWidth).map(([bytes, l, w]) => [
      ...head(2, l ?? BigInt(bytes.length), w),
      ...bytes,
    ]),
    // text strings, valid UTF-8 or random bytes
    fc.tuple(
      fc.oneof(
        fc.string({ unit: "binary", maxLength: 8 }).map((s) => [...utf8.encode(s)]),
        fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 8 }),
      ),
      lie,
      headWidth,
    ).map(([bytes, l, w]) => [...head(3, l ?? BigInt(bytes.length), w), ...bytes]),
    // simple values and floats of every size, and stray breaks
    fc.oneof(
      fc.constantFrom(0xf4, 0xf5, 0xf6, 0xf7, 0xe0, 0xf3, 0xfc, 0xff).map((b) => [b]),
      fc.tuple(fc.constantFrom(0xf8, 0xf9, 0xfa, 0xfb), fc.uint8Array({ maxLength: 8 }))
        .map(([initial, rest]) => [initial, ...rest.subarray(0, [1, 2, 4, 8][initial - 0xf8])]),
    ),
    // tags
    fc.tuple(argument, headWidth, tie("item")).map(([a, w, inner]) => [...head(6, a, w), ...inner]),
    // arrays
    fc.tuple(fc.array(tie("item"), { maxLength: 4 }), lie, headWidth).map(([items, l, w]) => [
      ...head(4, l ?? BigInt(items.length), w),
      ...items.flat(),
    ]),
    // maps, sometimes with a repeated entry
    fc.tuple(
      fc.array(fc.tuple(tie("key"), tie("item")), { maxLength: 3 }),
      fc.boolean(),
      lie,
      headWidth,
    ).map(([entries, repeat, l, w]) => {
      const all = repeat && entries.length > 0 ? [...entries, entries[0]] : entries;
      return [...head(5, l ?? BigInt(all.length), w), ...all.flat(2)];
    }),
    // indefinite-length strings, arrays and maps
    fc.tuple(fc.constantFrom(0x5f, 0x7f, 0x9f, 0xbf), fc.array(tie("item"), { maxLength: 3 }))
      .map(([initial, items]) => [initial, ...items.flat(), 0xff]),
  ),
  key: fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom("a", "b", "id", "é", "__proto__").map(textItem) },
    { weight: 3, arbitrary: fc.string({ maxLength: 6 }).map(textItem) },
    { weight: 1, arbitrary: tie("item") },
  ),
}));

function textItem(s: string): number[] {
  const bytes = utf8.encode(s);
  return [...head(3, BigInt(bytes.length), null), ...bytes];
}

/** A CBOR-like item, sometimes followed by stray bytes. */
const cborLikeBytes = fc.tuple(
  cborLikeItem,
  fc.oneof(
    { weight: 9, arbitrary: fc.constant(new Uint8Array(0)) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 4 }) },
  ),
).map(([item, trailing]) => Uint8Array.from([...item, ...trailing]));

/** A valid encoding with one to three mutations (blind or structure-aware). */
const mutatedEncoding = fc.tuple(
  valueArbitrary,
  fc.array(mutationArbitrary, { minLength: 1, maxLength: 3 }),
).map(([value, mutations]: [Value, Mutation[]]) => {
  const original = encodeCbor(value);
  return mutations.reduce((bytes, m) => applyMutation(bytes, m, [original]), original);
});

/** Random, CBOR-like and mutated bytes. */
const anyBytes = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  cborLikeBytes,
  mutatedEncoding,
);

// ---------------------------------------------------------------------------
// Properties

Deno.test("cbor property: encodeCbor output passes the strict gate and round-trips", () => {
  fc.assert(
    fc.property(valueArbitrary, (value) => {
      const bytes = encodeCbor(value);
      const depth = depthOf(value);
      const options = { maxBytes: bytes.length, maxDepth: depth };
      checkStrictCbor(bytes, options);
      assert.deepStrictEqual(decodeCbor(bytes, options), value);
      if (depth > 0) {
        assertThrowsWithCode(
          () => decodeCbor(bytes, { maxBytes: bytes.length, maxDepth: depth - 1 }),
          MalformedError,
          "too_deep",
        );
      }
    }),
    propertyParameters<[Value]>(10_000, [
      // Integers at the edges of each head width and of the safe range.
      ...BOUNDARY_INTEGERS.map((n): [Value] => [n]),
      [[MAX_SAFE, -MAX_SAFE, new Map([["t", 2 ** 40]])]],
    ]),
  );
});

Deno.test("cbor property: encodeCbor returns a plain Uint8Array that owns its buffer", () => {
  fc.assert(
    fc.property(valueArbitrary, (value) => {
      const bytes = encodeCbor(value);
      const other = encodeCbor(value);
      assert.ok(
        Object.getPrototypeOf(bytes) === Uint8Array.prototype,
        `a ${bytes.constructor.name}, not a plain Uint8Array`,
      );
      assert.equal(bytes.byteOffset, 0, "a view into a larger buffer");
      assert.equal(bytes.buffer.byteLength, bytes.length, "a view into a larger buffer");
      assert.notEqual(bytes.buffer, other.buffer, "two results share a buffer");
    }),
    propertyParameters<[Value]>(1000),
  );
});

Deno.test("cbor property: arbitrary bytes are refused with a typed error or are canonical", () => {
  let accepted = 0;
  fc.assert(
    fc.property(anyBytes, (bytes) => {
      let value: unknown;
      try {
        value = decodeCbor(bytes, { maxBytes: 1 << 16 });
      } catch (error) {
        assertTypedError(error, ENCODING_ERRORS, bytes);
        return;
      }
      accepted++;
      // Accepted: exactly the profile's types, and the one encoding of the
      // value (heads in shortest form, nothing trailing), so re-encoding
      // gives the same bytes.
      assertInProfile(value, bytes);
      const again = encodeCbor(value);
      if (!sameBytes(again, bytes)) {
        throw new Error(
          `decodeCbor accepted ${toHex(bytes)}, which is not the encoding of its value (${
            toHex(again)
          })`,
        );
      }
    }),
    propertyParameters<[Uint8Array]>(50_000, [
      // 8-byte integer heads that the gate lets through (safe range).
      [Uint8Array.of(0x1b, 0, 0, 0, 1, 0, 0, 0, 0)], // 2^32
      [Uint8Array.of(0x3b, 0, 0, 0, 1, 0, 0, 0, 0)], // -2^32 - 1
      [Uint8Array.of(0x1b, 0x00, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)], // 2^53 - 1
      [Uint8Array.of(0x3b, 0x00, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe)], // -(2^53 - 1)
      [Uint8Array.of(0x3b, 0x00, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)], // -2^53: not safe
    ]),
  );
  assert.ok(accepted > 0, "no generated input was accepted: the generators are too noisy");
});

Deno.test("cbor property: decodeCbor never accepts more than maxBytes", () => {
  const source = fc.oneof(valueArbitrary.map((v) => encodeCbor(v)), anyBytes)
    .filter((bytes) => bytes.length > 0);
  fc.assert(
    fc.property(source, fc.nat(), fc.nat({ max: 16 }), (bytes, below, above) => {
      const tooSmall = below % bytes.length; // 0 .. length - 1
      for (const check of [decodeCbor, checkStrictCbor]) {
        assertThrowsWithCode(() => check(bytes, { maxBytes: tooSmall }), LimitError, "too_large");
        try {
          check(bytes, { maxBytes: bytes.length + above });
        } catch (error) {
          assertTypedError(error, ENCODING_ERRORS, bytes);
          assert.ok(!(error instanceof LimitError && error.code === "too_large"));
        }
      }
    }),
    propertyParameters<[Uint8Array, number, number]>(10_000),
  );
});

Deno.test("cbor property: text that is not well-formed UTF-16 is refused, the rest round-trips", () => {
  // encodeCbor writes a lone surrogate as (invalid) UTF-8; the gate must
  // refuse it as invalid_utf8 rather than decode something else.
  const anyText = fc.string({
    unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
  });
  fc.assert(
    fc.property(anyText, (s) => {
      const bytes = encodeCbor(s);
      if (s.isWellFormed()) {
        assert.equal(decodeCbor(bytes, { maxBytes: bytes.length }), s);
      } else {
        assert.throws(
          () => decodeCbor(bytes, { maxBytes: bytes.length }),
          (e: unknown) => e instanceof MalformedError && e.code === "invalid_utf8",
        );
      }
    }),
    propertyParameters<[string]>(5000, [["\ud800"], ["a\udfff"], ["\ud83d\ude00"]]),
  );
});

Deno.test("cbor property: floats and simple values are refused as unsupported types", () => {
  // Whatever their bits, a float is not an integer out of range: the gate
  // must say it refuses the type (a float64 whose high word exceeds 2^21
  // must not be read as an integer head).
  const refused = fc.oneof(
    fc.tuple(fc.constantFrom(0xf9, 0xfa, 0xfb), fc.uint8Array({ minLength: 8, maxLength: 8 }))
      .map(([initial, bits]) => Uint8Array.of(initial, ...bits.subarray(0, 1 << (initial - 0xf8)))),
    fc.integer({ min: 0xe0, max: 0xf7 }).filter((b) => b < 0xf4 || b > 0xf6).map((b) =>
      Uint8Array.of(b)
    ),
    fc.integer({ min: 0, max: 255 }).map((b) => Uint8Array.of(0xf8, b)),
  );
  fc.assert(
    fc.property(refused, fc.boolean(), (item, nested) => {
      const bytes = nested ? Uint8Array.of(0x81, ...item) : item;
      assertThrowsWithCode(
        () => decodeCbor(bytes, { maxBytes: 64 }),
        MalformedError,
        "unsupported_type",
        `${toHex(bytes)} was not refused as unsupported_type`,
      );
    }),
    propertyParameters<[Uint8Array, boolean]>(5000, [
      [Uint8Array.of(0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0), false], // 1.5
      [Uint8Array.of(0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0), true], // NaN
    ]),
  );
});
