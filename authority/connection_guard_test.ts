/** The authority's rules for its connections (connection_guard.ts). */
import assert from "node:assert/strict";
import { ConnectionGuard, guardConnections } from "./connection_guard.ts";

const guard = new ConnectionGuard({ handshakeMs: 1000, strangerIdleMs: 5000, maxChannels: 2 });
const at = 1_000_000;

Deno.test("guard: a connection with no channel is kept for the handshake time, then closed", () => {
  const fresh = { acceptedAt: at, lastRequestAt: 0, peers: [] };
  assert.equal(guard.verdict(fresh, at + 1000), null);
  assert.equal(guard.verdict(fresh, at + 1001), "no_channel");
});

Deno.test("guard: strangers' connections close when idle; a request restarts the clock", () => {
  const stranger = { acceptedAt: at, lastRequestAt: 0, peers: [false] };
  assert.equal(guard.verdict(stranger, at + 5000), null);
  assert.equal(guard.verdict(stranger, at + 5001), "idle_stranger");
  assert.equal(guard.verdict({ ...stranger, lastRequestAt: at + 4000 }, at + 9000), null);
  assert.equal(
    guard.verdict({ ...stranger, lastRequestAt: at + 4000 }, at + 9001),
    "idle_stranger",
  );
});

Deno.test("guard: a member's connection stays however quiet; too many channels close any", () => {
  assert.equal(guard.verdict({ acceptedAt: at, lastRequestAt: 0, peers: [true] }, at + 1e9), null);
  assert.equal(
    guard.verdict({ acceptedAt: at, lastRequestAt: 0, peers: [false, true] }, at + 1e9),
    null,
  );
  assert.equal(
    guard.verdict({ acceptedAt: at, lastRequestAt: at, peers: [true, true, true] }, at),
    "too_many_channels",
  );
});

Deno.test("guard: limits must be positive", () => {
  assert.throws(() => new ConnectionGuard({ handshakeMs: 0 }), RangeError);
  assert.throws(() => new ConnectionGuard({ maxChannels: Number.NaN }), RangeError);
});

Deno.test("guard: the sweep closes what the rules rule out and forgets closed connections", async () => {
  const open = new Map<string, { close(reason: string): void }>();
  const reasons: string[] = [];
  const connection = (address: string) => ({
    close(reason: string) {
      reasons.push(`${address}:${reason}`);
      open.delete(address);
    },
  });
  open.set("tcp.a", connection("tcp.a"));
  open.set("tcp.b", connection("tcp.b"));
  const sweep = guardConnections(
    {
      connections: () => open,
      channels: () => [{ remoteRoute: ["tcp.b", "scd.1"], peer: { identifier: "Imember" } }],
      isMember: (identifier) => identifier === "Imember",
    },
    new ConnectionGuard({ handshakeMs: 100, strangerIdleMs: 100 }),
  );
  sweep.accepted("tcp.a");
  sweep.accepted("tcp.b");
  await new Promise((resolve) => setTimeout(resolve, 400));
  sweep.stop();
  assert.deepEqual(reasons, ["tcp.a:no_channel"]);
  assert.equal(sweep.closed.get("no_channel"), 1);
  assert.ok(open.has("tcp.b"));
});
