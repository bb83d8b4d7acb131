/**
 * CipherState (Noise specification rev. 34, §5.1) with the AESGCM cipher
 * functions of §12.3: synchronously, by OpenSSL's libcrypto when the
 * process may load it (./openssl.ts), else by node:crypto; the async
 * WebCrypto helpers below are for callers that want them.
 *
 * @module
 */
import { createCipheriv, createDecipheriv } from "node:crypto";
import { HandshakeError } from "../../errors.ts";
import { noiseNative } from "./openssl.ts";

/** Highest nonce this implementation uses before refusing (see {@link writeNonce}). */
export const MAX_NONCE = Number.MAX_SAFE_INTEGER - 1;

const ZEROS_32 = new Uint8Array(32);

/**
 * Writes the 96-bit AESGCM nonce for `n` into `iv`: 32 bits of zeros, then
 * `n` as 64 bits big-endian (§12.3). Counters are JavaScript numbers, so
 * they stop at 2^53 − 2 rather than Noise's 2^64 − 2: at a million
 * messages a second that is 285 years of one key, and channels rekey long
 * before.
 */
export function writeNonce(iv: Uint8Array, n: number): void {
  const high = Math.floor(n / 0x1_0000_0000);
  const low = n >>> 0;
  iv[0] =
    iv[1] =
    iv[2] =
    iv[3] =
      0;
  iv[4] = high >>> 24;
  iv[5] = (high >>> 16) & 0xff;
  iv[6] = (high >>> 8) & 0xff;
  iv[7] = high & 0xff;
  iv[8] = low >>> 24;
  iv[9] = (low >>> 16) & 0xff;
  iv[10] = (low >>> 8) & 0xff;
  iv[11] = low & 0xff;
}

/** Imports 32 raw bytes as an AES-256-GCM key for both directions of use. */
export function importAesKey(raw: Uint8Array): Promise<CryptoKey> {
  if (raw.length !== 32) throw new RangeError("an AES-256 key is 32 bytes");
  return crypto.subtle.importKey("raw", raw.slice(), "AES-GCM", false, ["encrypt", "decrypt"]);
}

/**
 * ENCRYPT(k, n, ad, plaintext) of §12.3. `iv` is scratch space the caller
 * owns: WebCrypto copies the parameters before `encrypt` returns, so one
 * buffer per key serves every call.
 */
export async function aesGcmEncrypt(
  key: CryptoKey,
  iv: Uint8Array<ArrayBuffer>,
  n: number,
  ad: Uint8Array,
  plaintext: Uint8Array,
): Promise<Uint8Array> {
  writeNonce(iv, n);
  const sealed = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: ad as Uint8Array<ArrayBuffer>, tagLength: 128 },
    key,
    plaintext as Uint8Array<ArrayBuffer>,
  );
  return new Uint8Array(sealed);
}

/**
 * DECRYPT(k, n, ad, ciphertext) of §12.3.
 * @throws {HandshakeError} `decrypt_failed` when authentication fails.
 */
export async function aesGcmDecrypt(
  key: CryptoKey,
  iv: Uint8Array<ArrayBuffer>,
  n: number,
  ad: Uint8Array,
  ciphertext: Uint8Array,
): Promise<Uint8Array> {
  writeNonce(iv, n);
  try {
    const opened = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv, additionalData: ad as Uint8Array<ArrayBuffer>, tagLength: 128 },
      key,
      ciphertext as Uint8Array<ArrayBuffer>,
    );
    return new Uint8Array(opened);
  } catch (cause) {
    throw new HandshakeError("decrypt_failed", "message authentication failed", { cause });
  }
}

/** REKEY(k) (§11.3) on raw key bytes: the first 32 bytes of ENCRYPT(k, 2^64 − 1, empty, zeros). */
export function rekeyBytes(key: Uint8Array): Uint8Array {
  // GCM encrypts in counter mode, so the first 32 ciphertext bytes are
  // available without finishing the tag.
  const cipher = createCipheriv("aes-256-gcm", key, MAX_NONCE_IV);
  return new Uint8Array(cipher.update(ZEROS_32));
}

const MAX_NONCE_IV = new Uint8Array(12).fill(0xff, 4);

/**
 * CipherState: a key (or none) and a nonce counter, as §5.1 defines it.
 * Handshake messages are small, so it is synchronous: OpenSSL through FFI
 * (1–2 µs a field) or node:crypto (about 11 µs; a WebCrypto call costs
 * about 60 µs of overhead whatever its size).
 */
export class CipherState {
  #key: Uint8Array | null = null;
  #n = 0;
  #iv = new Uint8Array(12);

  /** InitializeKey(key): sets the key (or none) and n = 0. */
  initializeKey(key: Uint8Array | null): void {
    this.#key?.fill(0);
    this.#key = key === null ? null : key.slice();
    this.#n = 0;
  }

  /** HasKey() */
  hasKey(): boolean {
    return this.#key !== null;
  }

  /** SetNonce(nonce) */
  setNonce(nonce: number): void {
    this.#n = nonce;
  }

  /** The next nonce. */
  get nonce(): number {
    return this.#n;
  }

  #next(): number {
    if (this.#n > MAX_NONCE) throw new HandshakeError("nonce_exhausted", "nonce space exhausted");
    writeNonce(this.#iv, this.#n);
    return this.#n;
  }

  /** EncryptWithAd(ad, plaintext): plaintext unchanged while there is no key. */
  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    if (this.#key === null) return plaintext.slice();
    this.#next();
    const native = noiseNative();
    if (native !== null) {
      const sealed = native.seal(this.#key, this.#iv, ad, plaintext);
      this.#n++;
      return sealed;
    }
    const cipher = createCipheriv("aes-256-gcm", this.#key, this.#iv);
    cipher.setAAD(ad);
    const out = new Uint8Array(plaintext.length + 16);
    out.set(cipher.update(plaintext), 0);
    cipher.final();
    out.set(cipher.getAuthTag(), plaintext.length);
    this.#n++;
    return out;
  }

  /**
   * DecryptWithAd(ad, ciphertext). On failure n is unchanged (§5.1).
   * @throws {HandshakeError} `decrypt_failed`
   */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    if (this.#key === null) return ciphertext.slice();
    if (ciphertext.length < 16) {
      throw new HandshakeError("decrypt_failed", "ciphertext shorter than its tag");
    }
    this.#next();
    let plaintext: Uint8Array;
    const native = noiseNative();
    if (native !== null) {
      const opened = native.open(this.#key, this.#iv, ad, ciphertext);
      if (opened === null) {
        throw new HandshakeError("decrypt_failed", "message authentication failed");
      }
      this.#n++;
      return opened;
    }
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.#key, this.#iv);
      decipher.setAAD(ad);
      decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
      plaintext = new Uint8Array(decipher.update(ciphertext.subarray(0, ciphertext.length - 16)));
      decipher.final();
    } catch (cause) {
      throw new HandshakeError("decrypt_failed", "message authentication failed", { cause });
    }
    this.#n++;
    return plaintext;
  }

  /** Rekey() */
  rekey(): void {
    if (this.#key === null) throw new TypeError("no key to rekey");
    const next = rekeyBytes(this.#key);
    this.#key.fill(0);
    this.#key = next;
  }
}
