import assert from "node:assert/strict";
import { TokenBuckets } from "./token_bucket.ts";

Deno.test("token buckets: a burst, then the rate", () => {
  const buckets = new TokenBuckets({ perSecond: 2, burst: 3 });
  assert.deepEqual([0, 0, 0, 0].map(() => buckets.take("a", 0)), [true, true, true, false]);
  assert.equal(buckets.take("a", 400), false); // 0.8 of a token
  assert.equal(buckets.take("a", 500), true); // 1.0
  assert.equal(buckets.take("a", 500), false);
  // Never above the burst, however long the pause.
  assert.deepEqual(
    [0, 0, 0, 0].map(() => buckets.take("a", 1_000_000)),
    [true, true, true, false],
  );
  // Keys are independent.
  assert.equal(buckets.take("b", 500), true);
});

Deno.test("token buckets: keys are bounded; the least recently used is forgotten", () => {
  const buckets = new TokenBuckets({ perSecond: 1, burst: 1 }, { maxKeys: 2 });
  assert.equal(buckets.take("a", 0), true);
  assert.equal(buckets.take("b", 0), true);
  assert.equal(buckets.take("a", 0), false); // a is now the most recent
  assert.equal(buckets.take("c", 0), true); // b is forgotten
  assert.equal(buckets.size, 2);
  assert.equal(buckets.take("a", 0), false); // a was kept, still empty
  assert.equal(buckets.take("b", 0), true); // b starts full again
});

Deno.test("token buckets: a rate must be positive", () => {
  assert.throws(() => new TokenBuckets({ perSecond: 0, burst: 1 }), RangeError);
  assert.throws(() => new TokenBuckets({ perSecond: 1, burst: 0 }), RangeError);
});
