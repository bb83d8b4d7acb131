/**
 * Exact-shape checks applied to decoded CBOR. Each throws a
 * {@link MalformedError} with code `wrong_shape` naming the field, so a
 * decoder reads as a list of expectations.
 *
 * @module
 */
import { MalformedError } from "./errors.ts";

/** Throws `wrong_shape` naming `what`. */
export function wrongShape(what: string, expected: string): never {
  throw new MalformedError("wrong_shape", `${what}: expected ${expected}`);
}

/** An array of exactly `length` items (or one of `lengths`). */
export function expectArray(value: unknown, what: string, ...lengths: number[]): unknown[] {
  if (!Array.isArray(value)) wrongShape(what, "an array");
  if (lengths.length > 0 && !lengths.includes(value.length)) {
    wrongShape(what, `an array of ${lengths.join(" or ")} items, got ${value.length}`);
  }
  return value;
}

/**
 * A byte string, optionally of an exact length. Returns a plain Uint8Array
 * copy (never a Buffer, never a view), so the result does not alias the
 * decoder's input.
 */
export function expectBytes(value: unknown, what: string, length?: number): Uint8Array {
  if (!(value instanceof Uint8Array)) wrongShape(what, "a byte string");
  if (length !== undefined && value.length !== length) {
    wrongShape(what, `${length} bytes, got ${value.length}`);
  }
  return new Uint8Array(value);
}

/** A non-negative safe integer. */
export function expectUint(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    wrongShape(what, "an unsigned integer");
  }
  return value;
}

/** A text string of at most `maxLength` UTF-16 units. */
export function expectText(value: unknown, what: string, maxLength = 1024): string {
  if (typeof value !== "string") wrongShape(what, "a text string");
  if (value.length > maxLength) wrongShape(what, `text of at most ${maxLength} characters`);
  return value;
}

/** The structure version this code reads. */
export function expectVersion(value: unknown, what: string, version: number): void {
  if (value !== version) {
    throw new MalformedError(
      "unknown_version",
      `${what}: version ${String(value)} is not supported (expected ${version})`,
    );
  }
}
