/**
 * X25519 (RFC 7748) for the Noise DH function: OpenSSL's libcrypto through
 * FFI when the process may load it (./openssl.ts), else node:crypto.
 *
 * Measured here (Deno 2.9): OpenSSL derives in 44 µs with the private
 * key's derivation context kept with the key, and makes a key pair in
 * 56 µs; node:crypto takes 113 µs to import a peer key and derive (most of
 * it outside the curve arithmetic) and 54 µs for a pair; WebCrypto 155 µs
 * to import and derive, because every call is an async round trip. A
 * handshake does one generation and three derivations per side, all
 * synchronous here.
 *
 * @module
 */
import {
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  type KeyObject,
} from "node:crypto";
import { HandshakeError } from "../../errors.ts";
import { DER_PREFIX, derWrap } from "../../crypto/der.ts";
import { type DhPrivateKey, noiseNative } from "./openssl.ts";

export type { DhPrivateKey };

/** An X25519 key pair; the private half stays inside native code. */
export interface DhKeyPair {
  /** The 32-byte X25519 public key. */
  readonly publicKey: Uint8Array;
  /** The private key; `dispose()` frees it early (it is freed when collected otherwise). */
  readonly privateKey: DhPrivateKey;
}

/** A private key held by node:crypto (a KeyObject, collected with it). */
function nodeKey(keyObject: KeyObject): DhPrivateKey {
  let key: KeyObject | null = keyObject;
  return {
    backend: "node",
    derive(peer) {
      if (key === null) throw new Error("the key was disposed");
      const publicKey = createPublicKey({
        key: derWrap(DER_PREFIX.x25519Spki, peer),
        format: "der",
        type: "spki",
      });
      return new Uint8Array(diffieHellman({ privateKey: key, publicKey }));
    },
    dispose() {
      key = null;
    },
  };
}

/** GENERATE_KEYPAIR(): a fresh random key pair. */
export function generateDhKeyPair(): DhKeyPair {
  const native = noiseNative();
  if (native !== null) return native.generate();
  const { publicKey, privateKey } = generateKeyPairSync("x25519");
  const spki = publicKey.export({ format: "der", type: "spki" });
  return {
    publicKey: new Uint8Array(spki.subarray(spki.length - 32)),
    privateKey: nodeKey(privateKey),
  };
}

/**
 * The key pair of a given 32-byte private key, for test vectors and
 * injected keys. The caller should wipe `privateKey` afterwards.
 */
export function dhKeyPairFromPrivate(privateKey: Uint8Array): DhKeyPair {
  if (privateKey.length !== 32) throw new RangeError("an X25519 private key is 32 bytes");
  const native = noiseNative();
  if (native !== null) return native.fromPrivate(privateKey);
  const der = derWrap(DER_PREFIX.x25519Pkcs8, privateKey);
  try {
    const key = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
    const spki = createPublicKey(key).export({ format: "der", type: "spki" });
    return { publicKey: new Uint8Array(spki.subarray(spki.length - 32)), privateKey: nodeKey(key) };
  } finally {
    der.fill(0);
  }
}

/**
 * DH(key_pair, public_key): the 32-byte shared secret, by whichever
 * implementation holds the pair's private key.
 * @throws {HandshakeError} `bad_dh` when the peer's key is not usable:
 *   both implementations refuse low-order points, whose shared secret is
 *   all zeros (and an all-zero result is refused here as well).
 */
export function dh(pair: DhKeyPair, publicKey: Uint8Array): Uint8Array {
  if (publicKey.length !== 32) throw new HandshakeError("bad_dh", "an X25519 key is 32 bytes");
  let secret: Uint8Array | null;
  try {
    secret = pair.privateKey.derive(publicKey);
  } catch (cause) {
    throw new HandshakeError("bad_dh", "the peer's X25519 key is not usable", { cause });
  }
  if (secret === null || isZero(secret)) {
    throw new HandshakeError("bad_dh", "the peer's X25519 key is not usable");
  }
  return secret;
}

function isZero(bytes: Uint8Array): boolean {
  let any = 0;
  for (let i = 0; i < bytes.length; i++) any |= bytes[i];
  return any === 0;
}
