/**
 * SHA-256 (synchronous, @noble/hashes) for identifiers and chain links,
 * where inputs are small and a sync call keeps the code simple.
 *
 * @module
 */
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";

/** SHA-256 of `data`. */
export function sha256(data: Uint8Array): Uint8Array {
  return nobleSha256(data);
}

/** Constant-time equality of two byte strings (length is not secret). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** `length` bytes from the system's CSPRNG. */
export function randomBytes(length: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(length));
}
