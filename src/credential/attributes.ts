/**
 * Credential attributes: text keys to text, integer, boolean or list of text
 * (docs/design.md §3), with hard limits so a credential stays small.
 *
 * Attributes are encoded as a CBOR map in canonical key order (shorter keys
 * first, then bytewise: RFC 8949 §4.2.1), which `encodeCbor` writes and the
 * strict decoder requires, so the same attributes always give the same
 * bytes. Decoded attributes are frozen
 * objects without a prototype: a key such as `__proto__` or `constructor`
 * is plain data and cannot reach Object.prototype.
 *
 * @module
 */
import { CredentialError } from "../errors.ts";

/** One attribute's value. */
export type AttributeValue = string | number | boolean | readonly string[];
/** A credential's attributes. */
export type Attributes = Readonly<Record<string, AttributeValue>>;

/** Most attributes in one credential. */
export const MAX_ATTRIBUTES = 64;
/** Most items in a list attribute. */
export const MAX_LIST_ITEMS = 64;
/** Longest text value, in UTF-16 units. */
export const MAX_TEXT_LENGTH = 1024;

const KEY = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;

function fail(message: string): never {
  throw new CredentialError("bad_attributes", message);
}

function checkValue(key: string, value: unknown): AttributeValue {
  if (typeof value === "string") {
    if (value.length > MAX_TEXT_LENGTH) fail(`attribute ${key}: text too long`);
    return value;
  }
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) fail(`attribute ${key}: not a safe integer`);
    return value;
  }
  if (typeof value === "boolean") return value;
  if (Array.isArray(value)) {
    if (value.length > MAX_LIST_ITEMS) fail(`attribute ${key}: list too long`);
    for (const item of value) {
      if (typeof item !== "string") fail(`attribute ${key}: list items must be text`);
      if (item.length > MAX_TEXT_LENGTH) fail(`attribute ${key}: list item too long`);
    }
    return Object.freeze([...value]) as readonly string[];
  }
  return fail(`attribute ${key}: must be text, integer, boolean or list of text`);
}

/**
 * Validates attributes from a caller or a decoded map, returning a frozen,
 * prototype-free copy.
 * @throws {CredentialError} `bad_attributes`
 */
export function normalizeAttributes(
  input: Readonly<Record<string, unknown>> | ReadonlyMap<unknown, unknown>,
): Attributes {
  const entries: [unknown, unknown][] = input instanceof Map
    ? [...input.entries()]
    : Object.entries(input);
  if (entries.length > MAX_ATTRIBUTES) fail(`at most ${MAX_ATTRIBUTES} attributes`);
  const out: Record<string, AttributeValue> = Object.create(null);
  for (const [key, value] of entries) {
    if (typeof key !== "string" || !KEY.test(key)) {
      fail(`attribute name ${JSON.stringify(String(key)).slice(0, 80)} is not allowed`);
    }
    out[key] = checkValue(key, value);
  }
  return Object.freeze(out);
}

/** The attributes as a Map, ready to encode (`encodeCbor` orders its keys). */
export function attributesToMap(attributes: Attributes): Map<string, AttributeValue> {
  return new Map(Object.entries(attributes));
}
