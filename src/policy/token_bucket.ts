/**
 * Token buckets: a rate with a burst, per key, in bounded memory
 * (docs/security.md, "Limits"). Used where a member may start work at a
 * rate: a gateway's new end-to-end handshakes per edge.
 *
 * @module
 */

/** A rate: `perSecond` on average, up to `burst` at once. */
export interface Rate {
  readonly perSecond: number;
  readonly burst: number;
}

/**
 * One bucket per key. Keys are bounded: past `maxKeys` the least recently
 * used is forgotten (it starts full again next time), so a flood of keys
 * costs memory in proportion to `maxKeys`, not to the flood.
 *
 * @example
 * ```ts
 * import { TokenBuckets } from "./token_bucket.ts";
 *
 * const buckets = new TokenBuckets({ perSecond: 1, burst: 2 });
 * buckets.take("edge-a", 0); // true
 * buckets.take("edge-a", 0); // true
 * buckets.take("edge-a", 0); // false: the burst is spent
 * buckets.take("edge-a", 1000); // true: one token back after a second
 * ```
 */
export class TokenBuckets {
  readonly #rate: Rate;
  readonly #maxKeys: number;
  /** Insertion order is recency order: a bucket is re-inserted when used. */
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  /** @throws {RangeError} for a rate or burst that is not positive. */
  constructor(rate: Rate, options: { maxKeys?: number } = {}) {
    if (!(rate.perSecond > 0) || !(rate.burst >= 1)) {
      throw new RangeError(
        `a rate needs perSecond > 0 and burst >= 1, got ${JSON.stringify(rate)}`,
      );
    }
    this.#rate = rate;
    this.#maxKeys = options.maxKeys ?? 100_000;
  }

  /** Takes one token of `key`'s bucket at time `now` (ms); false when none is left. */
  take(key: string, now: number = performance.now()): boolean {
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#maxKeys) {
        this.#buckets.delete(this.#buckets.keys().next().value!);
      }
      bucket = { tokens: this.#rate.burst, at: now };
    } else {
      this.#buckets.delete(key);
      const refill = (Math.max(0, now - bucket.at) / 1000) * this.#rate.perSecond;
      bucket.tokens = Math.min(this.#rate.burst, bucket.tokens + refill);
      bucket.at = now;
    }
    this.#buckets.set(key, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Keys held now (at most `maxKeys`). */
  get size(): number {
    return this.#buckets.size;
  }
}
