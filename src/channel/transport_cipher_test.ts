/**
 * Transport records: replay window, tampering, reordering, rekey
 * boundaries in both directions, nonce exhaustion.
 */
import assert from "node:assert/strict";
import { HandshakeError } from "../errors.ts";
import { MAX_NONCE } from "./noise/cipher_state.ts";
import {
  COUNTER_BYTES,
  ReceiveCipher,
  REPLAY_WINDOW,
  SendCipher,
  type TransportCipherOptions,
} from "./transport_cipher.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function pair(options: TransportCipherOptions = {}): [SendCipher, ReceiveCipher] {
  const key = crypto.getRandomValues(new Uint8Array(32));
  return [SendCipher.create(key, options), ReceiveCipher.create(key, options)];
}

async function sealAll(sender: SendCipher, count: number, prefix = "m"): Promise<Uint8Array[]> {
  const records: Uint8Array[] = [];
  for (let i = 0; i < count; i++) records.push(await sender.seal(encoder.encode(`${prefix}${i}`)));
  return records;
}

async function openText(receiver: ReceiveCipher, record: Uint8Array): Promise<string> {
  const result = await receiver.open(record);
  assert.ok(result.ok, `dropped: ${!result.ok && result.reason}`);
  return decoder.decode(result.plaintext);
}

async function dropReason(receiver: ReceiveCipher, record: Uint8Array): Promise<string> {
  const result = await receiver.open(record);
  assert.ok(!result.ok, "the record was accepted");
  return result.reason;
}

Deno.test("records: counter in clear, big-endian, before the ciphertext", async () => {
  const [sender] = pair({ initialCounter: 0x0102_0304 });
  const record = await sender.seal(encoder.encode("x"));
  assert.deepEqual([...record.subarray(0, COUNTER_BYTES)], [0, 0, 0, 0, 1, 2, 3, 4]);
  assert.equal(record.length, COUNTER_BYTES + 1 + 16);
});

Deno.test("replay: a duplicate record is dropped, before and after newer ones", async () => {
  const [sender, receiver] = pair();
  const [a, b] = await sealAll(sender, 2);
  assert.equal(await openText(receiver, a), "m0");
  assert.equal(await dropReason(receiver, a), "replayed");
  assert.equal(await openText(receiver, b), "m1");
  assert.equal(await dropReason(receiver, a), "replayed");
  assert.equal(await dropReason(receiver, b), "replayed");
});

Deno.test("replay: a record older than the window is dropped even if never seen", async () => {
  const [sender, receiver] = pair();
  const records = await sealAll(sender, REPLAY_WINDOW + 2);
  assert.equal(await openText(receiver, records[REPLAY_WINDOW + 1]), `m${REPLAY_WINDOW + 1}`);
  assert.equal(await dropReason(receiver, records[0]), "too_old");
  assert.equal(await dropReason(receiver, records[1]), "too_old");
  // The oldest counter still inside the window is accepted once.
  assert.equal(await openText(receiver, records[2]), "m2");
  assert.equal(await dropReason(receiver, records[2]), "replayed");
});

Deno.test("reordering within the window is accepted, each record once", async () => {
  const [sender, receiver] = pair();
  const records = await sealAll(sender, 16);
  const order = [...records.keys()].sort(() => Math.random() - 0.5);
  // Keep the spread within the window: 16 < 64.
  for (const i of order) assert.equal(await openText(receiver, records[i]), `m${i}`);
  for (const i of order) assert.equal(await dropReason(receiver, records[i]), "replayed");
});

Deno.test("tampering: every flipped bit of a record drops it, and changes nothing", async () => {
  const [sender, receiver] = pair();
  const record = await sender.seal(encoder.encode("flip every bit of me"));
  for (let bit = 0; bit < record.length * 8; bit++) {
    const forged = record.slice();
    forged[bit >> 3] ^= 1 << (bit & 7);
    const result = await receiver.open(forged);
    assert.ok(!result.ok, `bit ${bit} accepted`);
  }
  // No forgery moved the window: the genuine record still opens.
  assert.equal(await openText(receiver, record), "flip every bit of me");
});

Deno.test("malformed: short records and counters beyond the nonce space", async () => {
  const [, receiver] = pair();
  assert.equal(await dropReason(receiver, new Uint8Array(COUNTER_BYTES + 15)), "malformed");
  const huge = new Uint8Array(COUNTER_BYTES + 16).fill(0xff);
  assert.equal(await dropReason(receiver, huge), "malformed");
});

for (const direction of ["initiator to responder", "responder to initiator"]) {
  Deno.test(`rekey: crossing several key epochs, ${direction}`, async () => {
    // Each direction has its own key chain; the test runs one chain per
    // direction with a small interval so both cross several epochs.
    const interval = 2 * REPLAY_WINDOW;
    const [sender, receiver] = pair({ rekeyInterval: interval });
    const records = await sealAll(sender, interval * 3 + 5, direction);
    for (let i = 0; i < records.length; i++) {
      assert.equal(await openText(receiver, records[i]), `${direction}${i}`);
    }
  });
}

Deno.test("rekey: a late record of the previous epoch still opens inside the window", async () => {
  const interval = 2 * REPLAY_WINDOW;
  const [sender, receiver] = pair({ rekeyInterval: interval });
  const records = await sealAll(sender, interval + 10);
  const late = interval - 3; // last epoch-0 records held back
  for (let i = 0; i < records.length; i++) {
    if (i >= late && i < interval) continue;
    await openText(receiver, records[i]);
  }
  for (let i = late; i < interval; i++) assert.equal(await openText(receiver, records[i]), `m${i}`);
});

Deno.test("rekey: a record two epochs ahead is dropped, not trusted", async () => {
  const interval = 2 * REPLAY_WINDOW;
  const key = crypto.getRandomValues(new Uint8Array(32));
  const sender = SendCipher.create(key, { rekeyInterval: interval });
  const receiver = ReceiveCipher.create(key, { rekeyInterval: interval });
  const records = await sealAll(sender, 2 * interval + 1);
  assert.equal(await dropReason(receiver, records[2 * interval]), "too_new");
  assert.equal(await openText(receiver, records[0]), "m0");
});

Deno.test("many seals in flight come out numbered in call order and all open", async () => {
  const [sender, receiver] = pair({ rekeyInterval: 2 * REPLAY_WINDOW });
  const pending = Array.from({ length: 500 }, (_, i) => sender.seal(encoder.encode(`p${i}`)));
  const records = await Promise.all(pending);
  for (let i = 0; i < records.length; i++) {
    assert.equal(await openText(receiver, records[i]), `p${i}`);
  }
});

Deno.test("nonce exhaustion: the last counter is used once, then sealing is refused", async () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const sender = SendCipher.create(key, { initialCounter: MAX_NONCE });
  const receiver = ReceiveCipher.create(key, { initialCounter: MAX_NONCE });
  assert.equal(await openText(receiver, await sender.seal(encoder.encode("last"))), "last");
  await assert.rejects(
    sender.seal(encoder.encode("one too many")),
    (e: unknown) => e instanceof HandshakeError && e.code === "nonce_exhausted",
  );
});

Deno.test("replay: records finishing out of order cannot undo each other's window slot", async () => {
  // Record 0 is large (decrypted asynchronously), record 64 small (at once):
  // they share a slot. Opened back to back, 64 authenticates first; 0 must
  // then be refused (it is a window behind), or it would overwrite 64's slot
  // and let a replay of 64 through.
  const [sender, receiver] = pair();
  const records: Uint8Array[] = [await sender.seal(new Uint8Array(8192))];
  for (let i = 1; i <= 64; i++) records.push(await sender.seal(encoder.encode(`m${i}`)));
  for (let i = 1; i < 64; i++) await openText(receiver, records[i]);
  const [late, newest] = await Promise.all([receiver.open(records[0]), receiver.open(records[64])]);
  assert.ok(newest.ok, "record 64 opens");
  assert.deepEqual(late, { ok: false, reason: "too_old" });
  assert.equal(await dropReason(receiver, records[64]), "replayed");
});
