/**
 * The native (WebCrypto) primitives against @noble, the pure-JavaScript
 * reference: AES-256-GCM with Noise's nonce layout, REKEY, and X25519.
 */
import assert from "node:assert/strict";
import { gcm } from "@noble/ciphers/aes.js";
import { x25519 } from "@noble/curves/ed25519.js";
import fc from "fast-check";
import { HandshakeError } from "../../errors.ts";
import {
  aesGcmDecrypt,
  aesGcmEncrypt,
  CipherState,
  importAesKey,
  MAX_NONCE,
  rekeyBytes,
  writeNonce,
} from "./cipher_state.ts";
import { dh, dhKeyPairFromPrivate, generateDhKeyPair } from "./x25519.ts";

const RUNS = 200;

Deno.test("AES-256-GCM: WebCrypto equals @noble for random keys, nonces, ad and plaintexts", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.maxSafeNat(),
      fc.uint8Array({ maxLength: 64 }),
      fc.uint8Array({ maxLength: 2048 }),
      async (raw, n, ad, plaintext) => {
        const key = await importAesKey(raw);
        const iv = new Uint8Array(12);
        const sealed = await aesGcmEncrypt(key, iv, Math.min(n, MAX_NONCE), ad, plaintext);
        const nonce = new Uint8Array(12);
        writeNonce(nonce, Math.min(n, MAX_NONCE));
        assert.deepEqual(sealed, gcm(raw, nonce, ad).encrypt(plaintext));
        assert.deepEqual(
          await aesGcmDecrypt(key, iv, Math.min(n, MAX_NONCE), ad, sealed),
          plaintext,
        );
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("nonce layout: 4 zero bytes then the counter, big-endian", () => {
  const iv = new Uint8Array(12).fill(0xaa);
  writeNonce(iv, 0x0102_0304_0506);
  assert.deepEqual([...iv], [0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6]);
  writeNonce(iv, Number.MAX_SAFE_INTEGER);
  assert.deepEqual([...iv], [0, 0, 0, 0, 0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
});

Deno.test("REKEY: the first 32 bytes of ENCRYPT(k, 2^64-1, empty, zeros), as @noble computes", () => {
  const raw = crypto.getRandomValues(new Uint8Array(32));
  const maxNonce = new Uint8Array(12).fill(0xff, 4);
  const expected = gcm(raw, maxNonce, new Uint8Array(0)).encrypt(new Uint8Array(32)).subarray(
    0,
    32,
  );
  assert.deepEqual(rekeyBytes(raw), expected);
  const cipher = new CipherState();
  cipher.initializeKey(raw);
  cipher.rekey();
  const plaintext = new TextEncoder().encode("after rekey");
  assert.deepEqual(
    cipher.encryptWithAd(new Uint8Array(0), plaintext),
    gcm(expected, new Uint8Array(12), new Uint8Array(0)).encrypt(plaintext),
  );
});

Deno.test("X25519: WebCrypto DH equals @noble", async () => {
  for (let i = 0; i < 20; i++) {
    const a = crypto.getRandomValues(new Uint8Array(32));
    const b = crypto.getRandomValues(new Uint8Array(32));
    const pairA = await dhKeyPairFromPrivate(a);
    assert.deepEqual(pairA.publicKey, x25519.getPublicKey(a));
    assert.deepEqual(
      await dh(pairA, x25519.getPublicKey(b)),
      x25519.getSharedSecret(a, x25519.getPublicKey(b)),
    );
  }
  const generated = await generateDhKeyPair();
  assert.equal(generated.publicKey.length, 32);
});

Deno.test("X25519: a low-order peer key is refused with bad_dh", () => {
  const pair = generateDhKeyPair();
  assert.throws(
    () => dh(pair, new Uint8Array(32)),
    (e: unknown) => e instanceof HandshakeError && e.code === "bad_dh",
  );
});

Deno.test("CipherState: tampering fails and leaves n unchanged; exhaustion is refused", () => {
  const cipher = new CipherState();
  const peer = new CipherState();
  const raw = crypto.getRandomValues(new Uint8Array(32));
  cipher.initializeKey(raw);
  peer.initializeKey(raw);
  const ad = new Uint8Array(0);
  const sealed = cipher.encryptWithAd(ad, new Uint8Array([1, 2, 3]));
  sealed[0] ^= 1;
  assert.throws(
    () => peer.decryptWithAd(ad, sealed),
    (e: unknown) => e instanceof HandshakeError && e.code === "decrypt_failed",
  );
  assert.equal(peer.nonce, 0);
  cipher.setNonce(MAX_NONCE + 1);
  assert.throws(
    () => cipher.encryptWithAd(ad, new Uint8Array(1)),
    (e: unknown) => e instanceof HandshakeError && e.code === "nonce_exhausted",
  );
});
