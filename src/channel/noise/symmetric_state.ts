/**
 * SymmetricState (Noise specification rev. 34, §5.2) with SHA-256 (§12.5).
 * Handshake-only, synchronous: SHA-256 and HMAC-SHA256 by OpenSSL's
 * libcrypto when the process may load it (./openssl.ts: 1–2 µs a call),
 * else by @noble/hashes (5–12 µs); a handshake makes about forty.
 *
 * @module
 */
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { HandshakeError } from "../../errors.ts";
import { CipherState } from "./cipher_state.ts";
import { noiseNative } from "./openssl.ts";

/** HMAC-SHA256(key, data). */
function hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array {
  const native = noiseNative();
  return native !== null ? native.hmacSha256(key, data) : hmac(sha256, key, data);
}

/** SHA-256(a || b). */
function sha256Of(a: Uint8Array, b: Uint8Array): Uint8Array {
  const native = noiseNative();
  return native !== null ? native.sha256(a, b) : sha256.create().update(a).update(b).digest();
}

/** HASHLEN for SHA-256. */
export const HASHLEN = 32;

/**
 * HKDF(chaining_key, input_key_material, num_outputs) of §4.3 with two or
 * three outputs.
 */
export function hkdf(chainingKey: Uint8Array, ikm: Uint8Array, outputs: 2 | 3): Uint8Array[] {
  const native = noiseNative();
  if (native !== null && ikm.length > 0 && chainingKey.length === HASHLEN) {
    // RFC 5869 HKDF with salt = ck and no info is this construction; OpenSSL
    // refuses an empty ikm (Split()), which takes the HMACs below.
    const okm = native.hkdf(chainingKey, ikm, outputs * HASHLEN);
    const out = [okm.slice(0, HASHLEN), okm.slice(HASHLEN, 2 * HASHLEN)];
    if (outputs === 3) out.push(okm.slice(2 * HASHLEN));
    okm.fill(0);
    return out;
  }
  const tempKey = hmacSha256(chainingKey, ikm);
  const output1 = hmacSha256(tempKey, Uint8Array.of(0x01));
  const input2 = new Uint8Array(HASHLEN + 1);
  input2.set(output1, 0);
  input2[HASHLEN] = 0x02;
  const output2 = hmacSha256(tempKey, input2);
  if (outputs === 2) {
    tempKey.fill(0);
    return [output1, output2];
  }
  const input3 = new Uint8Array(HASHLEN + 1);
  input3.set(output2, 0);
  input3[HASHLEN] = 0x03;
  const output3 = hmacSha256(tempKey, input3);
  tempKey.fill(0);
  return [output1, output2, output3];
}

/** The two transport keys Split() derives, and the handshake hash. */
export interface SplitKeys {
  /** Key of the initiator-to-responder direction (c1). */
  readonly initiatorToResponder: Uint8Array;
  /** Key of the responder-to-initiator direction (c2). */
  readonly responderToInitiator: Uint8Array;
  /** h at the end of the handshake: the same on both sides, unique to this handshake. */
  readonly handshakeHash: Uint8Array;
}

/** The initial h of a protocol name (a few names at most are ever used). */
const initialHashes = new Map<string, Uint8Array>();

/** SymmetricState: ck, h and a CipherState. */
export class SymmetricState {
  #ck: Uint8Array;
  #h: Uint8Array;
  #cipher = new CipherState();
  #wasSplit = false;

  /**
   * InitializeSymmetric(protocol_name): h is the name zero-padded to HASHLEN
   * when it fits, else its hash; ck = h; no key.
   */
  constructor(protocolName: string) {
    let initial = initialHashes.get(protocolName);
    if (initial === undefined) {
      const name = new TextEncoder().encode(protocolName);
      if (name.length <= HASHLEN) {
        initial = new Uint8Array(HASHLEN);
        initial.set(name, 0);
      } else {
        initial = sha256(name);
      }
      if (initialHashes.size < 8) initialHashes.set(protocolName, initial);
    }
    this.#h = initial.slice();
    this.#ck = initial.slice();
  }

  /** MixKey(input_key_material) */
  mixKey(ikm: Uint8Array): void {
    const [ck, tempK] = hkdf(this.#ck, ikm, 2);
    this.#ck.fill(0);
    this.#ck = ck;
    // HASHLEN is 32, so temp_k needs no truncation for a 32-byte cipher key.
    this.#cipher.initializeKey(tempK);
    tempK.fill(0);
  }

  /** MixHash(data): h = HASH(h || data) */
  mixHash(data: Uint8Array): void {
    this.#h = sha256Of(this.#h, data);
  }

  /** GetHandshakeHash() */
  handshakeHash(): Uint8Array {
    return this.#h.slice();
  }

  /** True once a key has been mixed in. */
  hasKey(): boolean {
    return this.#cipher.hasKey();
  }

  /** EncryptAndHash(plaintext) */
  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const ciphertext = this.#cipher.encryptWithAd(this.#h, plaintext);
    this.mixHash(ciphertext);
    return ciphertext;
  }

  /**
   * DecryptAndHash(ciphertext)
   * @throws {HandshakeError} `decrypt_failed`
   */
  decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    const plaintext = this.#cipher.decryptWithAd(this.#h, ciphertext);
    this.mixHash(ciphertext);
    return plaintext;
  }

  /**
   * Split(): the two transport keys, as raw bytes for the transport layer
   * to import (it adds explicit counters and rekeying, docs/design.md §4). The
   * chaining key is wiped: nothing can be derived from this state afterwards.
   */
  split(): SplitKeys {
    // Once only: the chaining key is wiped below, so a second Split() would
    // derive its keys from zeros: the same keys for every handshake.
    if (this.#wasSplit) throw new HandshakeError("out_of_order", "Split() was called already");
    this.#wasSplit = true;
    const [k1, k2] = hkdf(this.#ck, new Uint8Array(0), 2);
    this.#ck.fill(0);
    return { initiatorToResponder: k1, responderToInitiator: k2, handshakeHash: this.#h.slice() };
  }
}
