import assert from "node:assert/strict";
import { REPLAY_WINDOW, ReplayWindow } from "./replay_window.ts";

Deno.test("replay window: fresh, then replayed once marked", () => {
  const window = new ReplayWindow();
  assert.equal(window.check(0), "fresh");
  window.mark(0);
  assert.equal(window.check(0), "replayed");
  assert.equal(window.check(1), "fresh");
  assert.equal(window.highest, 0);
});

Deno.test("replay window: out of order inside the window, each counter once", () => {
  const window = new ReplayWindow();
  for (const n of [5, 3, 9, 4, 0]) {
    assert.equal(window.check(n), "fresh", `${n}`);
    window.mark(n);
  }
  for (const n of [5, 3, 9, 4, 0]) assert.equal(window.check(n), "replayed", `${n}`);
  for (const n of [1, 2, 6, 7, 8]) assert.equal(window.check(n), "fresh", `${n}`);
});

Deno.test("replay window: exactly `size` behind the highest is too old, even unseen", () => {
  const window = new ReplayWindow();
  window.mark(1000);
  assert.equal(window.check(1000 - REPLAY_WINDOW), "too_old");
  assert.equal(window.check(1000 - REPLAY_WINDOW + 1), "fresh");
  // A slot reused by a newer counter does not make the older one look fresh.
  window.mark(1000 - REPLAY_WINDOW + 1);
  assert.equal(window.check(1000 - REPLAY_WINDOW + 1), "replayed");
});

Deno.test("replay window: a mark below the highest leaves the highest alone", () => {
  const window = new ReplayWindow(8);
  window.mark(20);
  window.mark(15);
  assert.equal(window.highest, 20);
  assert.equal(window.check(12), "too_old");
  assert.equal(window.check(13), "fresh");
  assert.throws(() => new ReplayWindow(4), RangeError);
});
