/**
 * Transport records: replay window, tampering, reordering, rekey
 * boundaries in both directions, nonce exhaustion. One suite, run against
 * every record cipher backend: WebCrypto (node:crypto for small records),
 * and OpenSSL through FFI.
 */
import assert from "node:assert/strict";
import { HandshakeError } from "../errors.ts";
import { MAX_NONCE } from "./noise/cipher_state.ts";
import { type AesGcm, openSslAesGcm } from "../crypto/aes_gcm.ts";
import {
  COUNTER_BYTES,
  ReceiveCipher,
  REPLAY_WINDOW,
  SendCipher,
  type TransportCipherOptions,
} from "./transport_cipher.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function pair(options: TransportCipherOptions): [SendCipher, ReceiveCipher] {
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

/** The cases, for one backend (`null`: WebCrypto). */
function cases(label: string, aead: AesGcm | null): void {
  Deno.test(`${label}: records: counter in clear, big-endian, before the ciphertext`, async () => {
    const [sender] = pair({ aead, initialCounter: 0x0102_0304 });
    const record = await sender.seal(encoder.encode("x"));
    assert.deepEqual([...record.subarray(0, COUNTER_BYTES)], [0, 0, 0, 0, 1, 2, 3, 4]);
    assert.equal(record.length, COUNTER_BYTES + 1 + 16);
  });

  Deno.test(`${label}: replay: a duplicate record is dropped, before and after newer ones`, async () => {
    const [sender, receiver] = pair({ aead });
    const [a, b] = await sealAll(sender, 2);
    assert.equal(await openText(receiver, a), "m0");
    assert.equal(await dropReason(receiver, a), "replayed");
    assert.equal(await openText(receiver, b), "m1");
    assert.equal(await dropReason(receiver, a), "replayed");
    assert.equal(await dropReason(receiver, b), "replayed");
  });

  Deno.test(`${label}: replay: a record older than the window is dropped even if never seen`, async () => {
    const [sender, receiver] = pair({ aead });
    const records = await sealAll(sender, REPLAY_WINDOW + 2);
    assert.equal(await openText(receiver, records[REPLAY_WINDOW + 1]), `m${REPLAY_WINDOW + 1}`);
    assert.equal(await dropReason(receiver, records[0]), "too_old");
    assert.equal(await dropReason(receiver, records[1]), "too_old");
    // The oldest counter still inside the window is accepted once.
    assert.equal(await openText(receiver, records[2]), "m2");
    assert.equal(await dropReason(receiver, records[2]), "replayed");
  });

  Deno.test(`${label}: reordering within the window is accepted, each record once`, async () => {
    const [sender, receiver] = pair({ aead });
    const records = await sealAll(sender, 16);
    const order = [...records.keys()].sort(() => Math.random() - 0.5);
    // Keep the spread within the window: 16 < 64.
    for (const i of order) assert.equal(await openText(receiver, records[i]), `m${i}`);
    for (const i of order) assert.equal(await dropReason(receiver, records[i]), "replayed");
  });

  Deno.test(`${label}: tampering: every flipped bit of a record drops it, and changes nothing`, async () => {
    const [sender, receiver] = pair({ aead });
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

  Deno.test(`${label}: malformed: short records and counters beyond the nonce space`, async () => {
    const [, receiver] = pair({ aead });
    assert.equal(await dropReason(receiver, new Uint8Array(COUNTER_BYTES + 15)), "malformed");
    const huge = new Uint8Array(COUNTER_BYTES + 16).fill(0xff);
    assert.equal(await dropReason(receiver, huge), "malformed");
  });

  for (const direction of ["initiator to responder", "responder to initiator"]) {
    Deno.test(`${label}: rekey: crossing several key epochs, ${direction}`, async () => {
      // Each direction has its own key chain; the test runs one chain per
      // direction with a small interval so both cross several epochs.
      const interval = 2 * REPLAY_WINDOW;
      const [sender, receiver] = pair({ aead, rekeyInterval: interval });
      const records = await sealAll(sender, interval * 3 + 5, direction);
      for (let i = 0; i < records.length; i++) {
        assert.equal(await openText(receiver, records[i]), `${direction}${i}`);
      }
    });
  }

  Deno.test(`${label}: rekey: a late record of the previous epoch still opens inside the window`, async () => {
    const interval = 2 * REPLAY_WINDOW;
    const [sender, receiver] = pair({ aead, rekeyInterval: interval });
    const records = await sealAll(sender, interval + 10);
    const late = interval - 3; // last epoch-0 records held back
    for (let i = 0; i < records.length; i++) {
      if (i >= late && i < interval) continue;
      await openText(receiver, records[i]);
    }
    for (let i = late; i < interval; i++) {
      assert.equal(await openText(receiver, records[i]), `m${i}`);
    }
  });

  Deno.test(`${label}: rekey: a record two epochs ahead is dropped, not trusted`, async () => {
    const interval = 2 * REPLAY_WINDOW;
    const key = crypto.getRandomValues(new Uint8Array(32));
    const sender = SendCipher.create(key, { aead, rekeyInterval: interval });
    const receiver = ReceiveCipher.create(key, { aead, rekeyInterval: interval });
    const records = await sealAll(sender, 2 * interval + 1);
    assert.equal(await dropReason(receiver, records[2 * interval]), "too_new");
    assert.equal(await openText(receiver, records[0]), "m0");
  });

  Deno.test(`${label}: many seals in flight come out numbered in call order and all open`, async () => {
    const [sender, receiver] = pair({ aead, rekeyInterval: 2 * REPLAY_WINDOW });
    const pending = Array.from({ length: 500 }, (_, i) => sender.seal(encoder.encode(`p${i}`)));
    const records = await Promise.all(pending);
    for (let i = 0; i < records.length; i++) {
      assert.equal(await openText(receiver, records[i]), `p${i}`);
    }
  });

  Deno.test(`${label}: nonce exhaustion: the last counter is used once, then sealing is refused`, async () => {
    const key = crypto.getRandomValues(new Uint8Array(32));
    const sender = SendCipher.create(key, { aead, initialCounter: MAX_NONCE });
    const receiver = ReceiveCipher.create(key, { aead, initialCounter: MAX_NONCE });
    assert.equal(await openText(receiver, await sender.seal(encoder.encode("last"))), "last");
    await assert.rejects(
      sender.seal(encoder.encode("one too many")),
      (e: unknown) => e instanceof HandshakeError && e.code === "nonce_exhausted",
    );
  });

  Deno.test(`${label}: replay: records finishing out of order cannot undo each other's window slot`, async () => {
    // Record 0 is large (decrypted asynchronously), record 64 small (at once):
    // they share a slot. Opened back to back, 64 authenticates first; 0 must
    // then be refused (it is a window behind), or it would overwrite 64's slot
    // and let a replay of 64 through.
    const [sender, receiver] = pair({ aead });
    const records: Uint8Array[] = [await sender.seal(new Uint8Array(8192))];
    for (let i = 1; i <= 64; i++) records.push(await sender.seal(encoder.encode(`m${i}`)));
    for (let i = 1; i < 64; i++) await openText(receiver, records[i]);
    const [late, newest] = await Promise.all([
      receiver.open(records[0]),
      receiver.open(records[64]),
    ]);
    assert.ok(newest.ok, "record 64 opens");
    if (aead === null) {
      assert.deepEqual(late, { ok: false, reason: "too_old" });
    } else {
      // A synchronous backend opens record 0 in its call, before 64
      // arrives: it was in the window then, and is accepted, once.
      assert.ok(late.ok, "record 0 opened before 64 moved the window");
      assert.equal(await dropReason(receiver, records[0]), "too_old");
    }
    assert.equal(await dropReason(receiver, records[64]), "replayed");
  });
}

cases("webcrypto", null);
cases("openssl", openSslAesGcm());

Deno.test("backends interoperate: each opens the other's records, small and large", async () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const backends = [null, openSslAesGcm()];
  for (const from of backends) {
    for (const to of backends) {
      const sender = SendCipher.create(key, { aead: from });
      const receiver = ReceiveCipher.create(key, { aead: to });
      assert.equal(sender.backend, from === null ? "webcrypto" : "openssl");
      for (const size of [0, 100, 2048, 2049, 64 * 1024, 192 * 1024]) {
        const plaintext = new Uint8Array(size).map((_, i) => i * 7);
        const opened = await receiver.open((await sender.seal(plaintext, 3)).subarray(3));
        assert.ok(opened.ok, `${sender.backend} → ${receiver.backend}, ${size} bytes`);
        assert.deepEqual(opened.plaintext, plaintext);
      }
    }
  }
});
