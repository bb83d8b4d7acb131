/**
 * The strict CBOR gate: what it accepts, and a typed error with the exact
 * code for everything outside the profile.
 */
import assert from "node:assert/strict";
import { checkStrictCbor, decodeCbor, encodeCbor } from "./cbor.ts";
import { type LimitCode, LimitError, type MalformedCode, MalformedError } from "./errors.ts";
import { fromHex, toHex } from "./hex.ts";
import { signedMessage } from "./domain.ts";
import { expectArray, expectBytes, expectText, expectUint, expectVersion } from "./shape.ts";
import { assertThrowsWithCode } from "../testdata/test_helpers.ts";

const LIMIT = { maxBytes: 1 << 20 };

function bytes(...values: number[]): Uint8Array {
  return Uint8Array.from(values);
}

function assertMalformed(input: Uint8Array, code: MalformedCode, maxDepth?: number): void {
  const error = assertThrowsWithCode(
    () => decodeCbor(input, { maxBytes: 1 << 20, maxDepth }),
    MalformedError,
    code,
    toHex(input),
  );
  assert.ok(error instanceof TypeError);
}

function assertLimit(input: Uint8Array, code: LimitCode, maxBytes = 1 << 20): void {
  const error = assertThrowsWithCode(
    () => decodeCbor(input, { maxBytes }),
    LimitError,
    code,
    toHex(input),
  );
  assert.ok(error instanceof RangeError);
}

function nested(depth: number): Uint8Array {
  // `depth` arrays of one item each, the innermost empty: 0x81 ... 0x81 0x80.
  const out = new Uint8Array(depth).fill(0x81);
  out[depth - 1] = 0x80;
  return out;
}

Deno.test("decodeCbor: accepts integers in their shortest form up to ±(2^53 - 1)", () => {
  const cases: [string, number][] = [
    ["00", 0],
    ["17", 23],
    ["1818", 24],
    ["18ff", 255],
    ["190100", 256],
    ["19ffff", 65535],
    ["1a00010000", 65536],
    ["1affffffff", 0xffff_ffff],
    ["20", -1],
    ["37", -24],
    ["3818", -25],
    ["38ff", -256],
    ["390100", -257],
    ["3affffffff", -0x1_0000_0000],
  ];
  for (const [hex, value] of cases) {
    assert.equal(decodeCbor(fromHex(hex), LIMIT), value, hex);
  }
});

Deno.test("decodeCbor: accepts strings, arrays, maps and simple values", () => {
  assert.deepEqual(decodeCbor(fromHex("43010203"), LIMIT), bytes(1, 2, 3));
  assert.equal(decodeCbor(fromHex("40"), LIMIT) instanceof Uint8Array, true);
  assert.equal(decodeCbor(fromHex("63616263"), LIMIT), "abc");
  assert.equal(decodeCbor(fromHex("62c3a9"), LIMIT), "é");
  assert.equal(decodeCbor(fromHex("60"), LIMIT), "");
  assert.deepEqual(decodeCbor(fromHex("8301820203f6"), LIMIT), [1, [2, 3], null]);
  assert.equal(decodeCbor(fromHex("f4"), LIMIT), false);
  assert.equal(decodeCbor(fromHex("f5"), LIMIT), true);
  assert.equal(decodeCbor(fromHex("f6"), LIMIT), null);
  assert.deepEqual(
    decodeCbor(fromHex("a2616101616282f5f4"), LIMIT),
    new Map<string, unknown>([["a", 1], ["b", [true, false]]]),
  );
});

Deno.test("decodeCbor: maps decode to Map, so __proto__ stays data", () => {
  const decoded = decodeCbor(
    encodeCbor(new Map<string, unknown>([["__proto__", "x"], ["constructor", 1]])),
    LIMIT,
  );
  assert.ok(decoded instanceof Map);
  assert.equal(decoded.get("__proto__"), "x");
  assert.equal(decoded.get("constructor"), 1);
  assert.equal(({} as Record<string, unknown>).x, undefined);
});

Deno.test("encodeCbor/decodeCbor: round trip across head widths", () => {
  for (const length of [0, 1, 23, 24, 255, 256, 65535, 65536]) {
    const text = "a".repeat(length);
    assert.equal(decodeCbor(encodeCbor(text), LIMIT), text, `text of ${length}`);
    const blob = new Uint8Array(length).fill(7);
    const decoded = decodeCbor(encodeCbor(blob), LIMIT);
    assert.ok(decoded instanceof Uint8Array);
    assert.equal(toHex(decoded), toHex(blob), `bytes of ${length}`);
  }
  for (const length of [0, 23, 24, 255, 256, 1000]) {
    const array = Array.from({ length }, (_, i) => i);
    assert.deepEqual(decodeCbor(encodeCbor(array), LIMIT), array, `array of ${length}`);
    const map = new Map(array.map((i) => [`k${i}`, i]));
    assert.deepEqual(decodeCbor(encodeCbor(map), LIMIT), map, `map of ${length}`);
  }
  for (
    const value of [0, 23, 24, 255, 256, 65535, 65536, 0xffff_ffff, -1, -24, -25, -0x1_0000_0000]
  ) {
    assert.equal(decodeCbor(encodeCbor(value), LIMIT), value);
  }
  for (const text of ["é", "€", "𝄞", "\u0000"]) {
    assert.equal(decodeCbor(encodeCbor(text.repeat(30)), LIMIT), text.repeat(30));
  }
});

Deno.test("encodeCbor: a later call does not change an earlier result", () => {
  const first = encodeCbor([1, "abc", bytes(1, 2)]);
  const snapshot = toHex(first);
  for (let i = 0; i < 2000; i++) encodeCbor([i, "xyz".repeat(i % 50), new Uint8Array(i % 300)]);
  assert.equal(toHex(first), snapshot);
  assert.equal(snapshot, "8301636162634201" + "02");
});

Deno.test("decodeCbor: the input is checked against maxBytes before anything is read", () => {
  assertLimit(fromHex("83010203"), "too_large", 3);
  assert.deepEqual(decodeCbor(fromHex("83010203"), { maxBytes: 4 }), [1, 2, 3]);
  // Garbage is refused for its size first, not for its content.
  assertLimit(new Uint8Array(100).fill(0xff), "too_large", 99);
});

Deno.test("decodeCbor: truncated input", () => {
  assertMalformed(bytes(), "truncated");
  assertMalformed(bytes(0x18), "truncated");
  assertMalformed(bytes(0x19, 0x01), "truncated");
  assertMalformed(bytes(0x1a, 0x01, 0x02, 0x03), "truncated");
  assertMalformed(bytes(0x1b, 0, 0, 0, 0, 0, 0, 1), "truncated");
  assertMalformed(bytes(0x42, 0x01), "truncated");
  assertMalformed(bytes(0x62, 0x61), "truncated");
  assertMalformed(bytes(0x82, 0x01), "truncated");
  assertMalformed(bytes(0x83, 0x01, 0x02), "truncated");
  assertMalformed(bytes(0xa1, 0x61, 0x61), "truncated");
  // Counts that cannot fit in the input are refused without looping.
  assertMalformed(bytes(0x9a, 0xff, 0xff, 0xff, 0xff), "truncated");
  assertMalformed(bytes(0xba, 0xff, 0xff, 0xff, 0xff), "truncated");
  assertMalformed(bytes(0x5b, 0, 0, 0, 1, 0, 0, 0, 0), "truncated");
  // Every proper prefix of a valid item is truncated.
  const valid = encodeCbor([1, "text", bytes(1, 2, 3), new Map([["k", [true, null]]])]);
  for (let i = 0; i < valid.length; i++) assertMalformed(valid.subarray(0, i), "truncated");
});

Deno.test("decodeCbor: trailing bytes", () => {
  assertMalformed(bytes(0x01, 0x02), "trailing_bytes");
  assertMalformed(bytes(0x80, 0x00), "trailing_bytes");
  const valid = encodeCbor(["a", 1]);
  const longer = new Uint8Array(valid.length + 1);
  longer.set(valid);
  assertMalformed(longer, "trailing_bytes");
});

Deno.test("decodeCbor: indefinite lengths and breaks", () => {
  assertMalformed(fromHex("5f4101ff"), "indefinite_length"); // byte string
  assertMalformed(fromHex("7f6161ff"), "indefinite_length"); // text string
  assertMalformed(fromHex("9f01ff"), "indefinite_length"); // array
  assertMalformed(fromHex("bf616101ff"), "indefinite_length"); // map
  assertMalformed(fromHex("ff"), "indefinite_length"); // lone break
  assertMalformed(fromHex("829f01ff02"), "indefinite_length"); // nested
  assertMalformed(fromHex("1f"), "indefinite_length"); // integer with info 31
});

Deno.test("decodeCbor: heads not in their shortest form", () => {
  const cases = [
    "1817", // 23 in one extra byte
    "190017", // 23 in two
    "1900ff", // 255 in two
    "1a0000ffff", // 65535 in four
    "1b00000000ffffffff", // 2^32 - 1 in eight
    "3817", // -24
    "390010", // -17
    "580100", // byte string of 1
    "780161", // text of 1
    "980100", // array of 1
    "b801616101", // map of 1
    "b90001616101", // map of 1 with a two-byte count
    "d80100", // tag head (refused for its form before its kind)
  ];
  for (const hex of cases) assertMalformed(fromHex(hex), "non_minimal");
  assertMalformed(fromHex("82011817"), "non_minimal"); // inside an array
});

Deno.test("decodeCbor: reserved additional information", () => {
  for (const initial of [0x1c, 0x1d, 0x1e, 0x3c, 0x5c, 0x7d, 0x9e, 0xbc, 0xdc, 0xfc, 0xfd, 0xfe]) {
    assertMalformed(bytes(initial), "not_well_formed");
  }
});

Deno.test("decodeCbor: tags are refused", () => {
  assertMalformed(fromHex("c074323031332d30332d32315432303a30343a30305a"), "unsupported_type");
  assertMalformed(fromHex("c11a514b67b0"), "unsupported_type"); // epoch time
  assertMalformed(fromHex("c249010000000000000000"), "unsupported_type"); // bignum
  assertMalformed(fromHex("d8404401020304"), "unsupported_type"); // typed array (cbor-x)
  assertMalformed(fromHex("d9d9f700"), "unsupported_type"); // self-described CBOR
  assertMalformed(fromHex("8201c000"), "unsupported_type"); // inside an array
});

Deno.test("decodeCbor: floats, undefined and other simple values are refused", () => {
  assertMalformed(fromHex("f93c00"), "unsupported_type"); // 1.0, half
  assertMalformed(fromHex("fa3f800000"), "unsupported_type"); // 1.0, single
  assertMalformed(fromHex("fb0000000000000000"), "unsupported_type"); // 0.0, double
  assertMalformed(fromHex("f97e00"), "unsupported_type"); // NaN
  assertMalformed(fromHex("f7"), "unsupported_type"); // undefined
  assertMalformed(fromHex("e0"), "unsupported_type"); // simple(0)
  assertMalformed(fromHex("f820"), "unsupported_type"); // simple(32)
  assertMalformed(fromHex("f8ff"), "unsupported_type");
  assertMalformed(fromHex("a16161fa3f800000"), "unsupported_type"); // as a map value
});

Deno.test("decodeCbor: map keys are distinct text strings", () => {
  assertMalformed(fromHex("a2616101616102"), "duplicate_key");
  assertMalformed(fromHex("a3616101616102616203"), "duplicate_key");
  assertMalformed(fromHex("81a2616101616102"), "duplicate_key"); // nested
  assertMalformed(fromHex("a10102"), "unsupported_type"); // integer key
  assertMalformed(fromHex("a1410102"), "unsupported_type"); // byte string key
  assertMalformed(fromHex("a1f602"), "unsupported_type"); // null key
  // The same key spelled in two encodings cannot exist: heads are minimal.
  assertMalformed(fromHex("a26161017801610102"), "non_minimal");
  assert.deepEqual(decodeCbor(fromHex("a2616101616201"), LIMIT), new Map([["a", 1], ["b", 1]]));
});

Deno.test("decodeCbor: map keys in canonical order (shorter first, then bytewise)", () => {
  // {"b": 1, "a": 2}: out of order.
  assertMalformed(fromHex("a2616201616102"), "non_canonical_order");
  // {"aa": 1, "b": 2}: the longer key first.
  assertMalformed(fromHex("a262616101616202"), "non_canonical_order");
  // {"a": 1, "c": 2, "b": 3}: only the last pair is out of order.
  assertMalformed(fromHex("a3616101616302616203"), "non_canonical_order");
  // Nested maps are held to the same rule.
  assertMalformed(fromHex("a16178a2616201616102"), "non_canonical_order");
  // The canonical forms decode.
  assert.deepEqual(
    decodeCbor(fromHex("a261620162616102"), LIMIT),
    new Map([["b", 1], ["aa", 2]]),
  );
  // Multi-byte UTF-8 keys are ordered by their bytes, not by UTF-16 units.
  const ordered = encodeCbor(new Map([["\u{10000}", 1], ["\uffff", 2]]));
  assert.deepEqual(
    [...(decodeCbor(ordered, LIMIT) as Map<string, number>).keys()],
    ["\uffff", "\u{10000}"],
  );
});

Deno.test("encodeCbor: writes maps in canonical order, whatever the insertion order", () => {
  const forward = encodeCbor(new Map([["a", 1], ["b", 2], ["aa", 3]]));
  const backward = encodeCbor(new Map([["aa", 3], ["b", 2], ["a", 1]]));
  assert.equal(toHex(forward), "a3616101616202626161" + "03");
  assert.equal(toHex(backward), toHex(forward));
  const nested = encodeCbor([new Map([["z", new Map([["y", 1], ["x", 2]])]])]);
  assert.equal(toHex(nested), "81a1617a" + "a2617802617901");
  decodeCbor(nested, LIMIT);
});

Deno.test("decodeCbor: text must be valid UTF-8, in values and in keys", () => {
  assertMalformed(fromHex("62c328"), "invalid_utf8");
  assertMalformed(fromHex("61ff"), "invalid_utf8");
  assertMalformed(fromHex("63eda080"), "invalid_utf8"); // a UTF-16 surrogate
  assertMalformed(fromHex("62c0af"), "invalid_utf8"); // overlong "/"
  assertMalformed(fromHex("a161ff01"), "invalid_utf8");
  // The same bytes are fine as a byte string.
  assert.deepEqual(decodeCbor(fromHex("42c328"), LIMIT), bytes(0xc3, 0x28));
});

Deno.test("decodeCbor: nesting is bounded by maxDepth (default 8)", () => {
  assert.deepEqual(decodeCbor(nested(8), LIMIT), [[[[[[[[]]]]]]]]);
  assertMalformed(nested(9), "too_deep");
  assertMalformed(nested(3), "too_deep", 2);
  assert.deepEqual(decodeCbor(nested(2), { maxBytes: 10, maxDepth: 2 }), [[]]);
  // Maps count as a level too.
  assertMalformed(fromHex("a16161a1616201"), "too_deep", 1);
  assert.deepEqual(
    decodeCbor(fromHex("a16161a1616201"), { maxBytes: 10, maxDepth: 2 }),
    new Map([["a", new Map([["b", 1]])]]),
  );
  // A deep input does not overflow the stack: it stops at the limit.
  assertMalformed(new Uint8Array(100_000).fill(0x81), "too_deep");
});

Deno.test("decodeCbor: integers beyond 2^53 - 1 are a LimitError", () => {
  assertLimit(fromHex("1b0020000000000000"), "integer_out_of_range"); // 2^53
  assertLimit(fromHex("1bffffffffffffffff"), "integer_out_of_range");
  assertLimit(fromHex("3bffffffffffffffff"), "integer_out_of_range");
  // Lengths are bounded the same way before anything is allocated.
  assertLimit(fromHex("5bffffffffffffffff"), "integer_out_of_range");
  assertLimit(fromHex("9b0020000000000000"), "integer_out_of_range");
});

Deno.test("checkStrictCbor: validates without decoding", () => {
  checkStrictCbor(fromHex("83010203"), LIMIT);
  assertThrowsWithCode(
    () => checkStrictCbor(fromHex("8301020304"), LIMIT),
    MalformedError,
    "trailing_bytes",
  );
});

Deno.test("shape helpers: exact shapes and versions", () => {
  assert.deepEqual(expectArray([1, 2], "x", 2), [1, 2]);
  assertThrowsWithCode(() => expectArray([1, 2, 3], "x", 2), MalformedError, "wrong_shape");
  assertThrowsWithCode(() => expectArray(new Map(), "x"), MalformedError, "wrong_shape");
  assertThrowsWithCode(() => expectBytes("ab", "x"), MalformedError, "wrong_shape");
  assertThrowsWithCode(() => expectBytes(bytes(1), "x", 2), MalformedError, "wrong_shape");
  const source = bytes(1, 2);
  const copy = expectBytes(source, "x", 2);
  source[0] = 9;
  assert.deepEqual(copy, bytes(1, 2), "expectBytes aliased its input");
  assert.equal(expectUint(0, "x"), 0);
  assertThrowsWithCode(() => expectUint(-1, "x"), MalformedError, "wrong_shape");
  assertThrowsWithCode(() => expectUint(1.5, "x"), MalformedError, "wrong_shape");
  assertThrowsWithCode(() => expectUint(1n, "x"), MalformedError, "wrong_shape");
  assertThrowsWithCode(() => expectText(1, "x"), MalformedError, "wrong_shape");
  assertThrowsWithCode(() => expectText("abc", "x", 2), MalformedError, "wrong_shape");
  expectVersion(1, "x", 1);
  assertThrowsWithCode(() => expectVersion(2, "x", 1), MalformedError, "unknown_version");
});

Deno.test("signedMessage: label, NUL, then the data", () => {
  const message = signedMessage("nexus.credential.v1", bytes(0xaa, 0xbb));
  assert.equal(toHex(message), toHex(new TextEncoder().encode("nexus.credential.v1\0")) + "aabb");
  assert.notEqual(
    toHex(signedMessage("nexus.identity.change.v1", bytes(1))),
    toHex(signedMessage("nexus.identity.purpose_key.v1", bytes(1))),
  );
});

Deno.test("encodeCbor: returns a plain Uint8Array that owns its buffer", () => {
  const first = encodeCbor([1, "abc", bytes(1, 2)]);
  encodeCbor([2, "def"]);
  assert.equal(Object.getPrototypeOf(first), Uint8Array.prototype);
  assert.equal(first.byteOffset, 0);
  assert.equal(first.buffer.byteLength, first.length);
  // `.slice()` of the result is a copy, as for any Uint8Array.
  const copy = first.slice();
  copy[0] ^= 1;
  assert.equal(first[0], 0x83);
});

Deno.test("decodeCbor: a float64 is unsupported_type, not integer_out_of_range", () => {
  assertMalformed(fromHex("fb3ff0000000000000"), "unsupported_type"); // 1.0
});

Deno.test("decodeCbor: 8-byte integers decode to numbers; -2^53 is out of range", () => {
  assert.equal(decodeCbor(fromHex("1b0000000100000000"), LIMIT), 2 ** 32);
  assert.equal(decodeCbor(fromHex("1b001fffffffffffff"), LIMIT), 2 ** 53 - 1);
  assert.equal(decodeCbor(fromHex("3b001ffffffffffffe"), LIMIT), -(2 ** 53 - 1));
  assertLimit(fromHex("3b001fffffffffffff"), "integer_out_of_range"); // -2^53
});

Deno.test("encodeCbor/decodeCbor: safe integers beyond 32 bits round trip", () => {
  for (const value of [2 ** 32, 2 ** 53 - 1, -(2 ** 32) - 1, -(2 ** 53 - 1)]) {
    assert.equal(decodeCbor(encodeCbor(value), LIMIT), value);
  }
});

Deno.test({
  name: "encodeCbor either refuses a value with a TypeError or writes the strict profile",
  fn() {
    const values: unknown[] = [
      { a: 1 },
      undefined,
      1.5,
      2 ** 53,
      new Date(0),
      new Set([1]),
      2n ** 70n,
    ];
    for (const value of values) {
      let encoded: Uint8Array;
      try {
        encoded = encodeCbor(value);
      } catch (error) {
        assert.ok(error instanceof TypeError, `${Deno.inspect(value)}: ${error}`);
        continue;
      }
      checkStrictCbor(encoded, LIMIT);
    }
  },
});
