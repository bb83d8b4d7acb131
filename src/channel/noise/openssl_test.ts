/**
 * The handshake's OpenSSL primitives (./openssl.ts) against the portable
 * ones and @noble, the pure-JavaScript reference: X25519 (with the
 * low-order points refused), SHA-256, HMAC and HKDF, and AES-256-GCM with
 * Noise's nonce layout. These tests run with ffi granted (the test set).
 */
import assert from "node:assert/strict";
import { gcm } from "@noble/ciphers/aes.js";
import { x25519 } from "@noble/curves/ed25519.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import fc from "fast-check";
import { HandshakeError } from "../../errors.ts";
import { CipherState, writeNonce } from "./cipher_state.ts";
import { loadNoiseNative, noiseNative, setNoiseBackend } from "./openssl.ts";
import { hkdf } from "./symmetric_state.ts";
import { dh, dhKeyPairFromPrivate, generateDhKeyPair } from "./x25519.ts";

const RUNS = 100;
const native = loadNoiseNative();

/** Runs `body` with the handshake on `backend`, then back to the default. */
function on<T>(backend: "openssl" | "portable", body: () => T): T {
  setNoiseBackend(backend);
  try {
    return body();
  } finally {
    setNoiseBackend("auto");
  }
}

Deno.test("noise primitives: OpenSSL is the default where ffi is granted", () => {
  assert.equal(noiseNative(), native);
  assert.equal(generateDhKeyPair().privateKey.backend, "openssl");
  assert.equal(on("portable", () => generateDhKeyPair().privateKey.backend), "node");
});

Deno.test("X25519: OpenSSL and node:crypto equal @noble, and each other's keys", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      (a, b) => {
        const peer = x25519.getPublicKey(b);
        const expected = x25519.getSharedSecret(a, peer);
        for (const backend of ["openssl", "portable"] as const) {
          const pair = on(backend, () => dhKeyPairFromPrivate(a));
          assert.deepEqual(pair.publicKey, x25519.getPublicKey(a), backend);
          // Whatever is chosen now, a key is used by the implementation that made it.
          assert.deepEqual(on("openssl", () => dh(pair, peer)), expected, backend);
          assert.deepEqual(on("portable", () => dh(pair, peer)), expected, backend);
        }
      },
    ),
    { numRuns: RUNS },
  );
});

/**
 * The encodings of the curve's points of small order (0, 1, the two of
 * order 8, p − 1, p, p + 1), and the same with the top bit set, which
 * RFC 7748 §5 masks away: each gives an all-zero shared secret.
 */
const LOW_ORDER = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
  "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
].flatMap((text) => {
  const point = Uint8Array.from(text.match(/../g)!.map((byte) => parseInt(byte, 16)));
  const topBit = point.slice();
  topBit[31] |= 0x80;
  return [point, topBit];
});

Deno.test("X25519: every low-order point is refused with bad_dh, by both implementations", () => {
  for (const backend of ["openssl", "portable"] as const) {
    const pair = on(backend, () => generateDhKeyPair());
    for (const point of LOW_ORDER) {
      assert.throws(
        () => dh(pair, point),
        (e: unknown) => e instanceof HandshakeError && e.code === "bad_dh",
        `${backend}: ${point[0].toString(16)}…`,
      );
    }
    assert.throws(() => dh(pair, new Uint8Array(31)), HandshakeError);
  }
});

Deno.test("X25519: a disposed key derives nothing", () => {
  const pair = generateDhKeyPair();
  const peer = generateDhKeyPair();
  assert.equal(dh(pair, peer.publicKey).length, 32);
  pair.privateKey.dispose();
  assert.throws(
    () => dh(pair, peer.publicKey),
    (e: unknown) => e instanceof HandshakeError && e.code === "bad_dh",
  );
});

Deno.test("SHA-256, HMAC-SHA256 and HKDF: OpenSSL equals @noble", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 300 }),
      fc.uint8Array({ maxLength: 300 }),
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      (a, b, key) => {
        const joined = new Uint8Array(a.length + b.length);
        joined.set(a, 0);
        joined.set(b, a.length);
        assert.deepEqual(native.sha256(a, b), sha256(joined));
        assert.deepEqual(native.hmacSha256(key, joined), hmac(sha256, key, joined));
        const ikm = joined.subarray(0, Math.min(joined.length, 32));
        assert.deepEqual(
          on("openssl", () => hkdf(key, ikm, 3)),
          on("portable", () => hkdf(key, ikm, 3)),
        );
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("CipherState on OpenSSL: equals @noble's AES-256-GCM; tampering fails", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.nat({ max: 1000 }),
      fc.uint8Array({ maxLength: 64 }),
      fc.uint8Array({ maxLength: 2048 }),
      fc.nat(),
      (raw, n, ad, plaintext, flip) => {
        on("openssl", () => {
          const sender = new CipherState();
          const receiver = new CipherState();
          sender.initializeKey(raw);
          receiver.initializeKey(raw);
          sender.setNonce(n);
          receiver.setNonce(n);
          const sealed = sender.encryptWithAd(ad, plaintext);
          const nonce = new Uint8Array(12);
          writeNonce(nonce, n);
          assert.deepEqual(sealed, gcm(raw, nonce, ad).encrypt(plaintext));
          const forged = sealed.slice();
          forged[flip % forged.length] ^= 1;
          assert.throws(
            () => receiver.decryptWithAd(ad, forged),
            (e: unknown) => e instanceof HandshakeError && e.code === "decrypt_failed",
          );
          assert.equal(receiver.nonce, n);
          assert.deepEqual(receiver.decryptWithAd(ad, sealed), plaintext);
          assert.equal(receiver.nonce, n + 1);
        });
      },
    ),
    { numRuns: RUNS },
  );
});
