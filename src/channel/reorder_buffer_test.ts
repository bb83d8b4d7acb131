import assert from "node:assert/strict";
import { ReorderBuffer } from "./reorder_buffer.ts";

Deno.test("reorder buffer: in order passes straight through", () => {
  const order = new ReorderBuffer<number>();
  for (let i = 0; i < 5; i++) {
    assert.deepEqual(order.push(i, i, 1), { ready: [i], lost: 0, late: false });
  }
  assert.equal(order.waiting, false);
});

Deno.test("reorder buffer: held behind a gap, released in order when it fills", () => {
  const order = new ReorderBuffer<string>();
  assert.deepEqual(order.push(2, "c", 1).ready, []);
  assert.deepEqual(order.push(1, "b", 1).ready, []);
  assert.equal(order.waiting, true);
  assert.deepEqual(order.push(0, "a", 1).ready, ["a", "b", "c"]);
  assert.equal(order.next, 3);
  assert.equal(order.heldBytes, 0);
});

Deno.test("reorder buffer: a gap given up on loses its counters; late ones are dropped", () => {
  const order = new ReorderBuffer<string>();
  order.push(0, "a", 1);
  order.push(3, "d", 1);
  order.push(4, "e", 1);
  assert.deepEqual(order.skipGap(), { ready: ["d", "e"], lost: 2 });
  assert.deepEqual(order.push(1, "b", 1), { ready: [], lost: 0, late: true });
  assert.deepEqual(order.skipGap(), { ready: [], lost: 0 });
});

Deno.test("reorder buffer: bounded by the window and by bytes", () => {
  const byCount = new ReorderBuffer<number>({ window: 8 });
  let lost = 0;
  const ready: number[] = [];
  for (let i = 1; i <= 8; i++) {
    const result = byCount.push(i, i, 1);
    lost += result.lost;
    ready.push(...result.ready);
  }
  assert.equal(lost, 1, "counter 0 given up on once 8 wait behind it");
  assert.deepEqual(ready, [1, 2, 3, 4, 5, 6, 7, 8]);
  const far = new ReorderBuffer<number>({ window: 8 });
  assert.deepEqual(far.push(100, 100, 1), { ready: [100], lost: 100, late: false });
  const byBytes = new ReorderBuffer<number>({ maxBytes: 1000 });
  assert.deepEqual(byBytes.push(1, 1, 600).ready, []);
  const over = byBytes.push(2, 2, 600);
  assert.deepEqual(over, { ready: [1, 2], lost: 1, late: false });
  assert.equal(byBytes.heldBytes, 0);
});
