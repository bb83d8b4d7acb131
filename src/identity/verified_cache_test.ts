/** The signature cache's bound, order and keys (./verified_cache.ts). */
import assert from "node:assert/strict";
import { VerifiedCache } from "./verified_cache.ts";

const KEY = new Uint8Array(32).fill(1);

Deno.test("VerifiedCache: keyed by the exact bytes; the key it verified under is a copy", () => {
  const cache = new VerifiedCache<string>(8);
  const bytes = Uint8Array.of(0, 1, 2, 255);
  const key = KEY.slice();
  cache.set(bytes, "a", key);
  key.fill(9);
  assert.deepEqual(cache.get(Uint8Array.of(0, 1, 2, 255))?.key, KEY);
  assert.equal(cache.get(Uint8Array.of(0, 1, 2, 254)), undefined);
  assert.equal(cache.get(Uint8Array.of(0, 1, 2)), undefined);
  assert.equal(cache.get(Uint8Array.of(0, 1, 2, 255, 0)), undefined);
  // Long encodings (a history is up to 32 KiB) are keyed in full.
  const long = new Uint8Array(40_000).map((_, i) => i * 7);
  cache.set(long, "long", KEY);
  const other = long.slice();
  other[39_999] ^= 1;
  assert.equal(cache.get(long.slice())?.value, "long");
  assert.equal(cache.get(other), undefined);
});

Deno.test("VerifiedCache: bounded, least recently used first out", () => {
  const cache = new VerifiedCache<number>(3);
  for (let i = 0; i < 3; i++) cache.set(Uint8Array.of(i), i, KEY);
  assert.equal(cache.get(Uint8Array.of(0))?.value, 0); // 0 is now the most recent
  cache.set(Uint8Array.of(3), 3, KEY);
  assert.equal(cache.size, 3);
  assert.equal(cache.get(Uint8Array.of(1)), undefined);
  assert.equal(cache.get(Uint8Array.of(0))?.value, 0);
  assert.equal(cache.get(Uint8Array.of(3))?.value, 3);
  cache.clear();
  assert.equal(cache.size, 0);
});
