/**
 * SymmetricState (Noise specification rev. 34, §5.2) with SHA-256 (§12.5).
 * Handshake-only: HMAC-SHA256 runs synchronously through @noble/hashes,
 * whose cost is small next to the three DH operations of a handshake.
 *
 * @module
 */
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { HandshakeError } from "../../errors.ts";
import { CipherState } from "./cipher_state.ts";

/** HASHLEN for SHA-256. */
export const HASHLEN = 32;

/**
 * HKDF(chaining_key, input_key_material, num_outputs) of §4.3 with two or
 * three outputs.
 */
export function hkdf(chainingKey: Uint8Array, ikm: Uint8Array, outputs: 2 | 3): Uint8Array[] {
  const tempKey = hmac(sha256, chainingKey, ikm);
  const output1 = hmac(sha256, tempKey, Uint8Array.of(0x01));
  const input2 = new Uint8Array(HASHLEN + 1);
  input2.set(output1, 0);
  input2[HASHLEN] = 0x02;
  const output2 = hmac(sha256, tempKey, input2);
  if (outputs === 2) {
    tempKey.fill(0);
    return [output1, output2];
  }
  const input3 = new Uint8Array(HASHLEN + 1);
  input3.set(output2, 0);
  input3[HASHLEN] = 0x03;
  const output3 = hmac(sha256, tempKey, input3);
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
    const name = new TextEncoder().encode(protocolName);
    if (name.length <= HASHLEN) {
      this.#h = new Uint8Array(HASHLEN);
      this.#h.set(name, 0);
    } else {
      this.#h = sha256(name);
    }
    this.#ck = this.#h.slice();
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
    this.#h = sha256.create().update(this.#h).update(data).digest();
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
