/**
 * A bounded record of signatures already verified, for structures that
 * peers present again and again (the same attestation and credential at
 * every reconnection). An entry is keyed by the exact encoded bytes that
 * were verified and holds the public key they verified under; a caller
 * skips the signature only when both match, and runs every other check
 * (validity window, revocation, subject, key) each time. Failures are
 * never kept. Least recently used entries leave first.
 *
 * @module
 */

/** One verified encoding: what it decoded to, and the key its signature verified under. */
export interface VerifiedEntry<T> {
  /** The decoded structure (treated as immutable by every caller). */
  readonly value: T;
  /** The 32-byte public key the signature verified under (a copy). */
  readonly key: Uint8Array;
}

/**
 * The exact bytes as a Map key: one UTF-16 code unit per byte (no hash
 * to trust, and cheaper than one for the sizes here).
 */
export function keyOf(bytes: Uint8Array): string {
  let text = "";
  for (let at = 0; at < bytes.length; at += 8192) {
    text += String.fromCharCode.apply(null, bytes.subarray(at, at + 8192) as unknown as number[]);
  }
  return text;
}

/**
 * Verified encodings, at most `limit` of them.
 *
 * @example
 * ```ts
 * import { VerifiedCache } from "./verified_cache.ts";
 * const cache = new VerifiedCache<string>(2);
 * const bytes = new Uint8Array([1, 2, 3]);
 * const key = new Uint8Array(32);
 * cache.set(bytes, "decoded", key);
 * console.log(cache.get(bytes)?.value); // "decoded"
 * ```
 */
export class VerifiedCache<T> {
  readonly #entries = new Map<string, VerifiedEntry<T>>();
  readonly #limit: number;

  /** A cache of at most `limit` entries. */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /** The entry for exactly `encoded`, if any (now the most recently used). */
  get(encoded: Uint8Array): VerifiedEntry<T> | undefined {
    const id = keyOf(encoded);
    const entry = this.#entries.get(id);
    if (entry !== undefined) {
      this.#entries.delete(id);
      this.#entries.set(id, entry);
    }
    return entry;
  }

  /** Records that `encoded`, decoded as `value`, verified under `key`. */
  set(encoded: Uint8Array, value: T, key: Uint8Array): void {
    const id = keyOf(encoded);
    this.#entries.delete(id);
    if (this.#entries.size >= this.#limit) {
      this.#entries.delete(this.#entries.keys().next().value!);
    }
    this.#entries.set(id, { value, key: key.slice() });
  }

  /** Entries held. */
  get size(): number {
    return this.#entries.size;
  }

  /** Forgets every entry. */
  clear(): void {
    this.#entries.clear();
  }
}
