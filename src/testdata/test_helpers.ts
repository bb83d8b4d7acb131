/**
 * Small helpers shared by the unit tests: fixed keys and clock, byte
 * surgery on encoded structures, and assertions that an error is of the
 * expected class *and* carries the expected `code`.
 *
 * Only test files import this module.
 *
 * @module
 */
import assert from "node:assert/strict";
import { encodeCbor } from "../encoding/cbor.ts";
import { type DomainLabel, signedMessage } from "../encoding/domain.ts";
import { LimitError, MalformedError } from "../encoding/errors.ts";
import { toHex } from "../encoding/hex.ts";
import { Identity } from "../identity/identity.ts";
import type { Signer } from "../identity/signer.ts";
import { SoftwareSigner } from "../identity/software_signer.ts";

// ---------------------------------------------------------------------------
// Fixed inputs

/** The tests' clock, in Unix seconds: 2026-01-01T00:00:00Z. */
export const NOW = 1767225600;

/** One day in seconds. */
export const DAY = 86400;

/** A fixed Ed25519 seed: 32 bytes, each `byte`. */
export function seedFromByte(byte: number): Uint8Array {
  return new Uint8Array(32).fill(byte);
}

/**
 * A signer whose seed is 32 bytes of `byte` ({@link seedFromByte}): the same
 * key on every run, so signatures and identifiers are reproducible.
 */
export function signerFromByte(byte: number): Promise<SoftwareSigner> {
  return SoftwareSigner.fromSeed(seedFromByte(byte));
}

/** A new identity whose first key is {@link signerFromByte}`(byte)`, created at `now`. */
export async function identityFromByte(byte: number, now: number = NOW): Promise<Identity> {
  return Identity.create(await signerFromByte(byte), { now });
}

// ---------------------------------------------------------------------------
// Bytes

/**
 * A plain copy. `slice()` is not enough: on a Node Buffer (what cbor-x
 * returns) it is a view, and even Uint8Array.prototype.slice makes a Buffer.
 */
export function copy(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}

/**
 * `size` deterministic bytes for `seed` (xorshift32): two seeds' bytes differ
 * everywhere, so any bytes of one message or stream that land in another
 * show.
 */
export function patternBytes(seed: number, size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  let x = (seed + 1) * 2654435761 >>> 0;
  for (let k = 0; k < size; k++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[k] = x & 0xff;
  }
  return bytes;
}

/** A copy of `bytes` with bit `bit` flipped (bit 0 is the low bit of byte 0). */
export function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const out = copy(bytes);
  out[bit >> 3] ^= 1 << (bit & 7);
  return out;
}

/** Where `needle` first starts in `haystack`; throws when it is not there. */
export function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  throw new Error("needle not found");
}

/** The bytes of `parts`, one after the other, in a new array. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * `[data, signature]` as CBOR, the signature made by `identity`'s signer over
 * `data` in `label`'s domain: a structure with arbitrary, correctly signed
 * data, so that only what the test changed in `data` (or `label`) is wrong.
 */
export async function signedStructure(
  identity: { readonly signer: Signer },
  data: Uint8Array,
  label: DomainLabel,
): Promise<Uint8Array> {
  return encodeCbor([data, await identity.signer.sign(signedMessage(label, data))]);
}

// ---------------------------------------------------------------------------
// Typed errors

/** An error that carries a machine-readable `code`. */
export type CodedError = Error & { readonly code: string };

/** Error classes a rejection may be an instance of. */
// deno-lint-ignore no-explicit-any
export type ErrorClass = abstract new (...args: any[]) => Error;

/** The class of a {@link CodedError}, such as MalformedError or CredentialError. */
// deno-lint-ignore no-explicit-any
export type CodedErrorClass<E extends CodedError> = abstract new (...args: any[]) => E;

function assertCode<E extends CodedError>(
  error: unknown,
  errorClass: CodedErrorClass<E>,
  code: E["code"],
  message?: string,
): asserts error is E {
  const prefix = message === undefined ? "" : `${message}: `;
  assert.ok(error instanceof errorClass, `${prefix}expected ${errorClass.name}, got ${error}`);
  assert.equal(error.code, code, `${prefix}${error.message}`);
}

/**
 * Asserts that `fn` throws an instance of `errorClass` whose `code` is
 * `code` (which must be one of that class's codes), and returns the error.
 * `message`, when given, prefixes every failure message.
 */
export function assertThrowsWithCode<E extends CodedError>(
  fn: () => unknown,
  errorClass: CodedErrorClass<E>,
  code: E["code"],
  message?: string,
): E {
  let caught: E | undefined;
  assert.throws(fn, (error: unknown) => {
    assertCode(error, errorClass, code, message);
    caught = error;
    return true;
  }, message);
  return caught!;
}

/**
 * Asserts that `promise` rejects with an instance of `errorClass` whose
 * `code` is `code` (which must be one of that class's codes), and returns
 * the error. `message`, when given, prefixes every failure message.
 */
export async function assertRejectsWithCode<E extends CodedError>(
  promise: Promise<unknown>,
  errorClass: CodedErrorClass<E>,
  code: E["code"],
  message?: string,
): Promise<E> {
  let caught: E | undefined;
  await assert.rejects(promise, (error: unknown) => {
    assertCode(error, errorClass, code, message);
    caught = error;
    return true;
  }, message);
  return caught!;
}

/**
 * The framing checks every decoder with a size limit must pass, given a valid
 * `encoded` input: each truncation of it is `truncated`, one byte more is
 * `trailing_bytes`, and `maxBytes + 1` bytes are `too_large` (refused before
 * decoding).
 */
export function assertRefusesBadFraming(
  decode: (bytes: Uint8Array) => unknown,
  encoded: Uint8Array,
  maxBytes: number,
): void {
  for (let i = 0; i < encoded.length; i++) {
    assertThrowsWithCode(() => decode(encoded.subarray(0, i)), MalformedError, "truncated");
  }
  assertThrowsWithCode(
    () => decode(concat(encoded, Uint8Array.of(0))),
    MalformedError,
    "trailing_bytes",
  );
  assertThrowsWithCode(() => decode(new Uint8Array(maxBytes + 1)), LimitError, "too_large");
}

/**
 * Flips each of `bits` of `encoded` in turn (one at a time) and asserts that
 * `verify` rejects every result with `errorClass` and `code`.
 */
export async function assertBitFlipsRejected<E extends CodedError>(
  encoded: Uint8Array,
  bits: Iterable<number>,
  verify: (bytes: Uint8Array) => Promise<unknown>,
  errorClass: CodedErrorClass<E>,
  code: E["code"],
): Promise<void> {
  for (const bit of bits) {
    await assertRejectsWithCode(verify(flipBit(encoded, bit)), errorClass, code, `bit ${bit}`);
  }
}

/**
 * Flips each bit of the trailing 64-byte signature of `signed.encoded` in
 * turn (after checking that those bytes are `signed.signature`) and asserts
 * that `verify` rejects every result with `errorClass` and `code`.
 */
export async function assertSignatureBitFlipsRejected<E extends CodedError>(
  signed: { readonly encoded: Uint8Array; readonly signature: Uint8Array },
  verify: (bytes: Uint8Array) => Promise<unknown>,
  errorClass: CodedErrorClass<E>,
  code: E["code"],
): Promise<void> {
  const at = signed.encoded.length - 64;
  assert.equal(toHex(signed.encoded.subarray(at)), toHex(signed.signature));
  const bits = Array.from({ length: 512 }, (_, bit) => at * 8 + bit);
  await assertBitFlipsRejected(signed.encoded, bits, verify, errorClass, code);
}

/**
 * Flips every bit of `encoded` in turn and asserts that `verify` never
 * accepts the result: each rejection is an instance of one of `errorClasses`.
 */
export async function assertEveryBitFlipRejected(
  encoded: Uint8Array,
  verify: (bytes: Uint8Array) => Promise<unknown>,
  errorClasses: readonly ErrorClass[],
): Promise<void> {
  for (let bit = 0; bit < encoded.length * 8; bit++) {
    await assert.rejects(verify(flipBit(encoded, bit)), (error: unknown) => {
      assert.ok(errorClasses.some((cls) => error instanceof cls), `bit ${bit}: ${error}`);
      return true;
    });
  }
}

// ---------------------------------------------------------------------------
// Files

/** Runs `fn` with a fresh temporary directory, removed afterwards whatever happens. */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
