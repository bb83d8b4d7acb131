import assert from "node:assert/strict";
import { backoffMs, sleep } from "./backoff.ts";

Deno.test("backoff: doubles from 500 ms to 30 s, with jitter of ±50 %", () => {
  assert.equal(backoffMs(0, () => 0.5), 500);
  assert.equal(backoffMs(1, () => 0.5), 1000);
  assert.equal(backoffMs(10, () => 0.5), 30_000);
  assert.equal(backoffMs(1000, () => 0.5), 30_000);
  assert.equal(backoffMs(0, () => 0), 250);
  assert.equal(backoffMs(0, () => 0.999999) < 750, true);
  const samples = new Set(Array.from({ length: 20 }, () => backoffMs(3)));
  assert.ok(samples.size > 10, "jittered: no two processes retry in lockstep");
});

Deno.test("sleep: ends early on abort or wake, and leaves no timer", async () => {
  const controller = new AbortController();
  const started = performance.now();
  const slept = sleep(10_000, { signal: controller.signal });
  controller.abort();
  await slept;
  const wake = Promise.withResolvers<void>();
  const woken = sleep(10_000, { wake: wake.promise });
  wake.resolve();
  await woken;
  await sleep(10);
  assert.ok(performance.now() - started < 1000);
  // An aborted signal: at once.
  await sleep(10_000, { signal: controller.signal });
});
