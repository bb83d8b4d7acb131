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
import { DER_PREFIX, derWrap } from "../crypto/der.ts";
import { toHex } from "../encoding/hex.ts";
import type { Signer } from "./signer.ts";

/** An in-process Ed25519 key. */
export class SoftwareSigner implements Signer {
  /** The 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** Always `"software"`: the key lives in this process. */
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
    // PKCS#8 wrapping of the raw seed (RFC 8410 §7), wiped once imported.
    const pkcs8 = derWrap(DER_PREFIX.ed25519Pkcs8, seed);
    try {
      const key = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
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

  /** A 64-byte Ed25519 signature (RFC 8032, pure) of `message`. */
  sign(message: Uint8Array): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(sign(null, message, this.#key)));
  }

  /** The description and the hex public key; never the private key. */
  toJSON(): { description: string; publicKey: string } {
    return { description: this.description, publicKey: toHex(this.publicKey) };
  }

  /** What `Deno.inspect` and `console.log` show: the public key only. */
  [Symbol.for("Deno.customInspect")](): string {
    return `SoftwareSigner { publicKey: ${toHex(this.publicKey)} }`;
  }
}
