/**
 * CipherState (Noise specification rev. 34, §5.1) with the AESGCM cipher
 * functions of §12.3, by WebCrypto.
 *
 * @module
 */
import { HandshakeError } from "../../errors.ts";

/** Highest nonce this implementation uses before refusing (see {@link writeNonce}). */
export const MAX_NONCE = Number.MAX_SAFE_INTEGER - 1;

const ZEROS_32 = new Uint8Array(32);
const EMPTY = new Uint8Array(0);

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

/**
 * REKEY(k) of §4.2 with §11.3's default: the first 32 bytes of
 * ENCRYPT(k, 2^64 − 1, zerolen, zeros). Returns the new key; the old one
 * stays usable by whoever still holds it (the receive window needs that).
 */
export async function rekey(key: CryptoKey): Promise<CryptoKey> {
  const iv = new Uint8Array(12);
  iv.fill(0xff, 4);
  const sealed = new Uint8Array(
    await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: EMPTY, tagLength: 128 },
      key,
      ZEROS_32,
    ),
  );
  const raw = sealed.subarray(0, 32);
  try {
    return await importAesKey(raw);
  } finally {
    sealed.fill(0);
  }
}

/** CipherState: a key (or none) and a nonce counter, as §5.1 defines it. */
export class CipherState {
  #key: CryptoKey | null = null;
  #n = 0;
  #iv = new Uint8Array(12);

  /** InitializeKey(key): sets the key (or none) and n = 0. */
  async initializeKey(key: Uint8Array | null): Promise<void> {
    this.#key = key === null ? null : await importAesKey(key);
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
    return this.#n;
  }

  /** EncryptWithAd(ad, plaintext): plaintext unchanged while there is no key. */
  async encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array> {
    if (this.#key === null) return plaintext.slice();
    const out = await aesGcmEncrypt(this.#key, this.#iv, this.#next(), ad, plaintext);
    this.#n++;
    return out;
  }

  /**
   * DecryptWithAd(ad, ciphertext). On failure n is unchanged (§5.1).
   * @throws {HandshakeError} `decrypt_failed`
   */
  async decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Promise<Uint8Array> {
    if (this.#key === null) return ciphertext.slice();
    const out = await aesGcmDecrypt(this.#key, this.#iv, this.#next(), ad, ciphertext);
    this.#n++;
    return out;
  }

  /** Rekey() */
  async rekey(): Promise<void> {
    if (this.#key === null) throw new TypeError("no key to rekey");
    this.#key = await rekey(this.#key);
  }
}
