/**
 * Pooled plaintexts (plaintext_pool.ts): a buffer is used again only after
 * its one owner gave it back, never while anything still refers to it (a
 * worker that keeps the payload, a consumer's queue, the reorder buffer),
 * and a forged record's output is zeroed before anyone can see it.
 *
 * The channel tests run on a synchronous record cipher (OpenSSL when the
 * library is there, else node:crypto), the path that lends plaintexts.
 */
import assert from "node:assert/strict";
import { nodeAesGcm, openSslAesGcm } from "../crypto/aes_gcm.ts";
import { Node } from "../routing/node.ts";
import type { PayloadLease } from "../routing/routed_message.ts";
import {
  authority,
  eventually,
  hostileLink,
  link,
  member,
  recordCounter,
} from "../testdata/channel_fixtures.ts";
import { connectSecureChannel, listenSecureChannels } from "./handshake.ts";
import {
  DEFAULT_MAX_FREE_BYTES,
  MAX_POOLED_BYTES,
  MIN_POOLED_BYTES,
  type PlaintextLoan,
  PlaintextPool,
  plaintextPool,
} from "./plaintext_pool.ts";
import { ReceiveCipher, SendCipher, setRecordCipher } from "./transport_cipher.ts";
import { patternBytes as payloadOf } from "../testdata/test_helpers.ts";

const aead = (() => {
  try {
    return openSslAesGcm();
  } catch {
    return nodeAesGcm;
  }
})();
// This test module's own process-wide backend (each test module runs on its own).
setRecordCipher(aead);

const allZero = (bytes: Uint8Array) => bytes.every((byte) => byte === 0);

// ---------------------------------------------------------------------------
// The pool

/** Takes `loan` as its owner and releases it. */
function giveBack(loan: PlaintextLoan): void {
  assert.equal(loan.take(), true);
  loan.release();
}

Deno.test("plaintext pool: lends zeroed bytes of the exact size, takes them back zeroed, reuses them", () => {
  const pool = new PlaintextPool();
  const a = pool.lend(1000)!;
  assert.equal(a.bytes.length, 1000);
  assert.equal(a.bytes.byteOffset, 0);
  assert.ok(allZero(a.bytes));
  a.bytes.fill(0xaa);
  giveBack(a);
  assert.ok(allZero(a.bytes), "given back zeroed");
  const b = pool.lend(1000)!;
  assert.notEqual(b, a, "a new loan");
  assert.equal(b.bytes.buffer, a.bytes.buffer, "of the same memory");
  assert.ok(
    allZero(new Uint8Array(b.bytes.buffer)),
    "nothing of the last loan, in the view or beyond",
  );
  assert.deepEqual(pool.stats, { lent: 2, reused: 1, released: 1 });
});

Deno.test("plaintext pool: a loan goes back once, by its owner; a stale loan cannot take a buffer from its next holder", () => {
  const pool = new PlaintextPool();
  const first = pool.lend(4000)!;
  first.release(); // not taken: nothing happens
  assert.equal(pool.stats.released, 0);
  assert.equal(first.take(), true);
  assert.equal(first.take(), false, "one owner");
  first.release();
  first.release();
  assert.equal(pool.stats.released, 1, "released once");
  // Lent again, under a new loan: the old one can do nothing to it.
  const second = pool.lend(4000)!;
  assert.equal(second.bytes.buffer, first.bytes.buffer);
  second.bytes.fill(7);
  first.take();
  first.release();
  assert.ok(second.bytes.every((byte) => byte === 7), "the new holder's bytes untouched");
  assert.equal(pool.stats.released, 1);
  const third = pool.lend(4000)!;
  assert.notEqual(third.bytes.buffer, second.bytes.buffer, "a lent buffer is never lent twice");
});

Deno.test("plaintext pool: small and huge plaintexts are not pooled", () => {
  const pool = new PlaintextPool();
  assert.equal(pool.lend(MIN_POOLED_BYTES - 1), null);
  assert.equal(pool.lend(MAX_POOLED_BYTES + 1), null);
  assert.ok(pool.lend(MIN_POOLED_BYTES) !== null);
  assert.ok(pool.lend(MAX_POOLED_BYTES) !== null);
  assert.equal(pool.stats.lent, 2);
});

Deno.test("plaintext pool: keeps at most maxFreeBytes free, dropping the oldest", () => {
  const none = new PlaintextPool({ maxFreeBytes: 0 });
  const a = none.lend(1024)!;
  giveBack(a);
  assert.equal(none.freeBytes, 0);
  assert.notEqual(none.lend(1024)!.bytes.buffer, a.bytes.buffer);

  const pool = new PlaintextPool({ maxFreeBytes: 3 * 4096 });
  const loans = Array.from({ length: 5 }, () => pool.lend(4096)!);
  for (const loan of loans) giveBack(loan);
  assert.equal(pool.freeBytes, 3 * 4096);
  // The newest three are kept; the most recently released is lent first.
  assert.equal(pool.lend(4096)!.bytes.buffer, loans[4].bytes.buffer);
  assert.ok(DEFAULT_MAX_FREE_BYTES >= MAX_POOLED_BYTES);
});

// ---------------------------------------------------------------------------
// The receive cipher

function cipherPair(pool: PlaintextPool | null) {
  const key = crypto.getRandomValues(new Uint8Array(32));
  return {
    sender: SendCipher.create(key, { aead }),
    receiver: ReceiveCipher.create(key, { aead, plaintexts: pool }),
  };
}

Deno.test("receive cipher: a forged record's output is zeroed and back in the pool; nothing handed out", async () => {
  const pool = new PlaintextPool();
  const { sender, receiver } = cipherPair(pool);
  const record = sender.sealNow(crypto.getRandomValues(new Uint8Array(3000)));
  const forged = record.slice();
  forged[forged.length - 1] ^= 1;
  const result = await receiver.open(forged);
  assert.deepEqual(result, { ok: false, reason: "auth_failed" });
  assert.deepEqual(pool.stats, { lent: 1, reused: 0, released: 1 });
  const next = pool.lend(3000)!;
  assert.equal(pool.stats.reused, 1);
  assert.ok(allZero(new Uint8Array(next.bytes.buffer)), "the forgery's decryption was wiped");
  giveBack(next);
  // The genuine record still opens: the forgery moved nothing.
  const genuine = await receiver.open(record);
  assert.ok(genuine.ok);
});

Deno.test("receive cipher: a replay takes no buffer; plaintexts kept are never reused; released ones are", async () => {
  const pool = new PlaintextPool();
  const { sender, receiver } = cipherPair(pool);
  const sent: Uint8Array[] = [];
  const kept: Uint8Array[] = [];
  for (let i = 0; i < 20; i++) {
    const plaintext = crypto.getRandomValues(new Uint8Array(5000));
    sent.push(plaintext);
    const record = sender.sealNow(plaintext);
    const result = await receiver.open(record);
    assert.ok(result.ok);
    assert.ok(result.lease !== undefined, "lent by the pool");
    if (i % 2 === 0) kept.push(result.plaintext); // kept: never given back
    else if (result.lease.take()) result.lease.release();
    const before = pool.stats.lent;
    assert.deepEqual(await receiver.open(record), { ok: false, reason: "replayed" });
    assert.equal(pool.stats.lent, before, "a replay costs no buffer");
  }
  assert.ok(pool.stats.reused >= 9, `released buffers reused (${pool.stats.reused})`);
  kept.forEach((plaintext, k) => assert.deepEqual(plaintext, sent[2 * k], `kept plaintext ${k}`));
});

Deno.test("receive cipher: plaintexts: null, or a plaintext out of the pooled sizes, is allocated with no lease", async () => {
  const { sender, receiver } = cipherPair(null);
  const result = await receiver.open(sender.sealNow(new Uint8Array(4096)));
  assert.ok(result.ok);
  assert.equal(result.lease, undefined);
  const pooled = cipherPair(new PlaintextPool());
  const small = await pooled.receiver.open(pooled.sender.sealNow(new Uint8Array(10)));
  assert.ok(small.ok);
  assert.equal(small.lease, undefined);
});

// ---------------------------------------------------------------------------
// Through a secure channel

async function channelPair(hostile?: Parameters<typeof hostileLink>[2]) {
  const ca = await authority();
  const edge = await member(ca.identity, { role: "edge" });
  const gateway = await member(ca.identity, { role: "gateway" });
  const a = new Node({ name: "edge" });
  const b = new Node({ name: "gateway" });
  const { toB } = hostile === undefined ? link(a, b) : hostileLink(a, b, hostile);
  listenSecureChannels({ node: b, address: "api", local: gateway, policy: { trust: ca.trust } });
  const channel = await connectSecureChannel({
    node: a,
    route: [toB, "api"],
    local: edge,
    policy: { trust: ca.trust },
  });
  return { a, b, channel };
}

function sameBytes(actual: Uint8Array, expected: Uint8Array): boolean {
  if (actual.length !== expected.length) return false;
  for (let k = 0; k < actual.length; k++) if (actual[k] !== expected[k]) return false;
  return true;
}

Deno.test("channel: payloads a worker keeps, or queues under a lease, stay intact while released buffers are reused", async () => {
  const { b, channel } = await channelPair();
  // A worker that keeps every payload without taking the lease (as one
  // keeping CBOR views would): its payloads must never be overwritten.
  const kept: { i: number; payload: Uint8Array }[] = [];
  b.register("keeper", (m) => {
    kept.push({
      i: new DataView(m.payload.buffer, m.payload.byteOffset).getUint32(0),
      payload: m.payload,
    });
  });
  // A slow consumer: takes the lease and holds payloads in a queue, and
  // lets go of the oldest (checking it first) only when more than
  // `depth` are queued, as a session whose socket write is slow.
  const depth = 12;
  const queue: { i: number; payload: Uint8Array; lease: PayloadLease | undefined }[] = [];
  const corrupt: number[] = [];
  let leased = 0;
  let written = 0;
  const check = (entry: { i: number; payload: Uint8Array }, size: number) => {
    if (!sameBytes(entry.payload, stamped(entry.i, size))) corrupt.push(entry.i);
  };
  b.register("queue", (m) => {
    const lease = m.local?.lease;
    const owned = lease?.take() ? lease : undefined;
    if (owned !== undefined) leased++;
    const i = new DataView(m.payload.buffer, m.payload.byteOffset).getUint32(0);
    queue.push({ i, payload: m.payload, lease: owned });
    // Every entry queued is checked on each delivery: an early reuse of any
    // queued buffer shows at once, not only when its turn comes.
    for (const entry of queue) check(entry, SIZE);
    while (queue.length > depth) {
      const oldest = queue.shift()!;
      check(oldest, SIZE);
      written++;
      oldest.lease?.release();
    }
  });
  const SIZE = 6000;
  const stamped = (i: number, size: number) => {
    const bytes = payloadOf(i, size);
    new DataView(bytes.buffer).setUint32(0, i);
    return bytes;
  };
  const reusedBefore = plaintextPool.stats.reused;
  const COUNT = 300;
  for (let i = 0; i < COUNT; i++) {
    await channel.send([i % 3 === 0 ? "keeper" : "queue"], stamped(i, SIZE));
  }
  await eventually(() => kept.length + queue.length + written === COUNT);
  for (const entry of queue) check(entry, SIZE);
  for (const entry of kept) check(entry, SIZE);
  assert.deepEqual(corrupt, [], "payloads overwritten while still held");
  assert.equal(kept.length, COUNT / 3);
  assert.equal(leased, COUNT - COUNT / 3, "every queued payload came with a lease");
  // The test means something only if buffers were really used again.
  assert.ok(
    plaintextPool.stats.reused - reusedBefore >= written - depth,
    `released buffers reused (${plaintextPool.stats.reused - reusedBefore} of ${written})`,
  );
  for (const entry of queue) entry.lease?.release();
  await channel.close();
});

Deno.test("channel: records held in the reorder buffer keep their buffers while delivered ones are released and reused", async () => {
  // The relay holds back every fifth record until four later ones went
  // through, and injects a forgery of each record it delays.
  const held: (() => Promise<void>)[] = [];
  let seen = 0;
  const { b, channel } = await channelPair((frame) => {
    const counter = frame.direction === "toB" ? recordCounter(frame.message.payload) : null;
    if (counter === null || counter < 2) return frame.deliver();
    seen++;
    if (seen % 5 === 1) {
      const forged = frame.message.payload.slice();
      forged[forged.length - 20] ^= 0x40;
      held.push(() => frame.deliver());
      return frame.deliver({ ...frame.message, payload: forged });
    }
    return frame.deliver().then(async () => {
      if (seen % 5 === 0) { for (const deliver of held.splice(0)) await deliver(); }
    });
  });
  const SIZE = 3000;
  const order: number[] = [];
  const corrupt: number[] = [];
  b.register("sink", (m) => {
    const i = new DataView(m.payload.buffer, m.payload.byteOffset).getUint32(0);
    const expected = payloadOf(i, SIZE);
    new DataView(expected.buffer).setUint32(0, i);
    if (!sameBytes(m.payload, expected)) corrupt.push(i);
    order.push(i);
    // Done with it at once: its buffer goes back and is lent for the next record.
    const lease = m.local?.lease;
    if (lease?.take()) lease.release();
  });
  const reusedBefore = plaintextPool.stats.reused;
  const COUNT = 100;
  for (let i = 0; i < COUNT; i++) {
    const payload = payloadOf(i, SIZE);
    new DataView(payload.buffer).setUint32(0, i);
    await channel.send(["sink"], payload);
  }
  for (const deliver of held.splice(0)) await deliver();
  await eventually(() => order.length === COUNT);
  assert.deepEqual(corrupt, []);
  assert.deepEqual(order, Array.from({ length: COUNT }, (_, i) => i), "in order, each once");
  assert.ok(plaintextPool.stats.reused - reusedBefore >= COUNT / 2);
  await channel.close();
});

Deno.test("channel: a channel nested in another gives the outer plaintext back once it opened the record; inner payloads intact", async () => {
  const ca = await authority();
  const edge = await member(ca.identity, { role: "edge" });
  const gateway = await member(ca.identity, { role: "gateway" });
  const agent = await member(ca.identity, { role: "agent" });
  const a = new Node({ name: "edge" });
  const b = new Node({ name: "gateway" });
  const { toB } = link(a, b);
  listenSecureChannels({ node: b, address: "api", local: gateway, policy: { trust: ca.trust } });
  listenSecureChannels({ node: b, address: "inner", local: agent, policy: { trust: ca.trust } });
  const outer = await connectSecureChannel({
    node: a,
    route: [toB, "api"],
    local: edge,
    policy: { trust: ca.trust },
  });
  const inner = await connectSecureChannel({
    node: a,
    route: [outer.address, "inner"],
    local: edge,
    policy: { trust: ca.trust },
  });
  const SIZE = 5000;
  const stamped = (i: number) => {
    const bytes = payloadOf(i, SIZE);
    new DataView(bytes.buffer).setUint32(0, i);
    return bytes;
  };
  const queue: { i: number; payload: Uint8Array; lease?: PayloadLease }[] = [];
  const corrupt: number[] = [];
  let done = 0;
  b.register("sink", (m) => {
    assert.equal(m.local?.secureChannel?.identity.identifier, edge.identity.identifier);
    const lease = m.local?.lease;
    queue.push({
      i: new DataView(m.payload.buffer, m.payload.byteOffset).getUint32(0),
      payload: m.payload,
      lease: lease?.take() ? lease : undefined,
    });
    for (const entry of queue) {
      if (!sameBytes(entry.payload, stamped(entry.i))) corrupt.push(entry.i);
    }
    while (queue.length > 6) {
      queue.shift()!.lease?.release();
      done++;
    }
  });
  const before = { ...plaintextPool.stats };
  const COUNT = 120;
  for (let i = 0; i < COUNT; i++) await inner.send(["sink"], stamped(i));
  await eventually(() => queue.length + done === COUNT);
  for (const entry of queue) if (!sameBytes(entry.payload, stamped(entry.i))) corrupt.push(entry.i);
  assert.deepEqual(corrupt, []);
  const given = plaintextPool.stats.released - before.released;
  // Each record: its outer plaintext back once the inner one was opened,
  // its inner plaintext back once the sink let go of it.
  assert.ok(given >= COUNT + done, `given back ${given}`);
  assert.ok(queue.every((entry) => entry.lease !== undefined));
  for (const entry of queue) entry.lease?.release();
  await inner.close();
  await outer.close();
});
