/**
 * Ed25519 signer whose private key lives in this process.
 *
 * The key lives in a node:crypto KeyObject (OpenSSL; signing takes about
 * 23 µs here, against about 100 µs for a WebCrypto round trip); the seed is
 * not kept in a field, so neither `console.log`, `JSON.stringify` nor
 * `Deno.inspect` of a signer can reveal it. Persisting a key is
 * `key_file.ts`'s job, which generates the seed, writes it, and forgets it.
 *
 * @module
 */
import { createPrivateKey, type KeyObject, sign } from "node:crypto";
import { ed25519 } from "@noble/curves/ed25519.js";
import { toHex } from "../encoding/hex.ts";
import type { Signer } from "./signer.ts";

// PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410 §7): the fixed prefix
// followed by the 32 seed bytes.
const PKCS8_PREFIX = new Uint8Array([
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x70,
  0x04,
  0x22,
  0x04,
  0x20,
]);

/** An in-process Ed25519 key. */
export class SoftwareSigner implements Signer {
  readonly publicKey: Uint8Array;
  readonly description = "software";
  #key: KeyObject;

  private constructor(publicKey: Uint8Array, key: KeyObject) {
    this.publicKey = publicKey;
    this.#key = key;
  }

  /**
   * A signer for a 32-byte seed. The caller should wipe its copy of the seed
   * when done (`seed.fill(0)`).
   * @throws {RangeError} when the seed is not 32 bytes.
   */
  static async fromSeed(seed: Uint8Array): Promise<SoftwareSigner> {
    if (seed.length !== 32) throw new RangeError("an Ed25519 seed is 32 bytes");
    const pkcs8 = new Uint8Array(48);
    pkcs8.set(PKCS8_PREFIX, 0);
    pkcs8.set(seed, 16);
    try {
      const key = createPrivateKey({
        key: pkcs8 as unknown as Buffer,
        format: "der",
        type: "pkcs8",
      });
      return await Promise.resolve(new SoftwareSigner(ed25519.getPublicKey(seed), key));
    } finally {
      pkcs8.fill(0);
    }
  }

  /** A signer for a fresh random key that exists only in memory. */
  static generate(): Promise<SoftwareSigner> {
    const seed = crypto.getRandomValues(new Uint8Array(32));
    return SoftwareSigner.fromSeed(seed).finally(() => seed.fill(0));
  }

  sign(message: Uint8Array): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(sign(null, message, this.#key)));
  }

  toJSON(): { description: string; publicKey: string } {
    return { description: this.description, publicKey: toHex(this.publicKey) };
  }

  [Symbol.for("Deno.customInspect")](): string {
    return `SoftwareSigner { publicKey: ${toHex(this.publicKey)} }`;
  }
}
