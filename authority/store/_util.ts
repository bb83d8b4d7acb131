/**
 * Checks and conversions shared by the authority store's aggregates.
 * Internal to `authority/store.ts` and `authority/store/`.
 *
 * @module
 */
import { type Attributes, normalizeAttributes } from "../../src/credential/attributes.ts";
import { randomBytes, sha256 } from "../../src/crypto/hash.ts";
import { toHex } from "../../src/encoding/hex.ts";
import { AuthorityError } from "../../src/errors.ts";
import { isIdentifier } from "../../src/identity/change_history.ts";
import { canonicalJson } from "../audit.ts";

const encoder = new TextEncoder();

/**
 * `now`, or the current Unix time in seconds when undefined.
 * @throws {RangeError} when it is not a non-negative safe integer.
 */
export function nowOr(now: number | undefined, what = "now"): number {
  const value = now ?? Math.floor(Date.now() / 1000);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${what} must be a non-negative safe integer (Unix seconds)`);
  }
  return value;
}

/**
 * Hex SHA-256 of `text`'s UTF-8: the stored form and id of a ticket secret
 * or license key, which are never stored themselves. They are 256 and 192
 * random bits, so the hash cannot be reversed by search, and looking one up
 * by its hash leaks nothing useful through timing.
 */
export function hashId(text: string): string {
  return toHex(sha256(encoder.encode(text)));
}

/** `prefix` + base64url of `length` fresh random bytes; the bytes are wiped after. */
export function randomToken(prefix: string, length: number): string {
  const bytes = randomBytes(length);
  try {
    return prefix + bytes.toBase64({ alphabet: "base64url", omitPadding: true });
  } finally {
    bytes.fill(0);
  }
}

/**
 * Checks a member identifier.
 * @throws {TypeError} unless `identifier` is `"I"` followed by 64 lowercase hex digits.
 */
export function checkIdentifier(identifier: string): void {
  if (typeof identifier !== "string" || !isIdentifier(identifier)) {
    throw new TypeError(`not an identifier: expected "I" followed by 64 lowercase hex digits`);
  }
}

/**
 * Checks a required text field.
 * @throws {TypeError} unless `value` is a non-empty string.
 */
export function checkText(value: string, what: string): void {
  if (typeof value !== "string" || value.length === 0) {
    throw new TypeError(`${what} must be a non-empty string`);
  }
}

/**
 * Values per `IN (...)` list or multi-row INSERT: 100 keeps a statement's
 * parameters (at most 6 per row) far under either engine's limit.
 */
export const IN_LIST = 100;

/** `?, ?, ...`: one placeholder per value. */
export function marks(values: readonly unknown[]): string {
  return values.map(() => "?").join(", ");
}

/** `items` in runs of at most {@link IN_LIST}, in order. */
export function* inLists<T>(items: readonly T[]): Generator<T[]> {
  for (let at = 0; at < items.length; at += IN_LIST) yield items.slice(at, at + IN_LIST);
}

/** A `store_corrupt` error: the stored data is not what this code wrote. */
export function corrupt(message: string, cause?: unknown): AuthorityError {
  return new AuthorityError("store_corrupt", message, cause === undefined ? undefined : { cause });
}

/** Stored attributes: canonical JSON, so equal attributes have equal text. */
export function attributesText(attributes: Attributes): string {
  return canonicalJson(attributes);
}

/**
 * Attributes read back, by the text they were read from: members share a
 * few texts (one per role and customer) and every request reads its
 * member's, so the last ones read are kept (frozen, so sharing them is
 * safe) rather than parsed and checked again each time.
 */
const readCache = new Map<string, Attributes>();
const READ_CACHE_SIZE = 256;
/** Longer texts are parsed each time, so the texts kept take at most 1 MiB. */
const READ_CACHE_TEXT = 2048;

/**
 * Attributes read back from their stored text.
 * @throws {AuthorityError} `store_corrupt` when the text is not valid attributes.
 */
export function readAttributes(text: unknown, where: string): Attributes {
  const key = String(text);
  const cached = readCache.get(key);
  if (cached !== undefined) return cached;
  let attributes: Attributes;
  try {
    attributes = normalizeAttributes(JSON.parse(key));
  } catch (cause) {
    throw corrupt(`${where}: stored attributes are invalid`, cause);
  }
  if (key.length <= READ_CACHE_TEXT) {
    if (readCache.size >= READ_CACHE_SIZE) readCache.delete(readCache.keys().next().value!);
    readCache.set(key, attributes);
  }
  return attributes;
}

/** Whether two sets of attributes are equal (compared in their stored form). */
export function sameAttributes(a: Attributes, b: Attributes): boolean {
  return attributesText(a) === attributesText(b);
}
