/**
 * Transport records of a secure channel (DESIGN.md §4), after the Noise
 * handshake's Split():
 *
 * ```
 * record = counter: 8 bytes big-endian || AES-256-GCM(k_epoch, nonce = 0^4 || counter, ad = "", plaintext)
 * ```
 *
 * The counter travels in clear so that records can be checked against a
 * replay window before any decryption, and so that a record stays
 * decryptable when an earlier one is lost or late: unlike Noise's implicit
 * nonces, nothing requires strict order. Tampering with the counter changes
 * the nonce, so the tag fails.
 *
 * Keys rotate every `rekeyInterval` records with Noise's REKEY (§11.3):
 * record n is sealed under k_epoch, epoch = floor(n / rekeyInterval), where
 * k_0 is Split()'s key and k_(e+1) = REKEY(k_e). Both ends derive the same
 * chain, so no message announces a rekey. The receiver keeps the previous
 * epoch's key while records of it can still fall inside the window.
 *
 * @module
 */
import { HandshakeError } from "../errors.ts";
import {
  aesGcmDecrypt,
  aesGcmEncrypt,
  importAesKey,
  MAX_NONCE,
  rekey,
} from "./noise/cipher_state.ts";

/** Bytes of the clear counter before each ciphertext. */
export const COUNTER_BYTES = 8;
/** AES-GCM tag length. */
export const TAG_BYTES = 16;
/** Records of the replay window: duplicates and records this far behind the newest are dropped. */
export const REPLAY_WINDOW = 64;
/** Default records per key before REKEY. */
export const DEFAULT_REKEY_INTERVAL = 65536;

const EMPTY = new Uint8Array(0);

/** Options shared by both directions. */
export interface TransportCipherOptions {
  /** Records per key before REKEY (default {@link DEFAULT_REKEY_INTERVAL}); at least 2 × the window. */
  rekeyInterval?: number;
  /**
   * First counter, for tests that start near the end of the nonce space.
   * The key given is taken as the key of that counter's epoch.
   */
  initialCounter?: number;
}

function interval(options: TransportCipherOptions): number {
  const value = options.rekeyInterval ?? DEFAULT_REKEY_INTERVAL;
  if (!Number.isSafeInteger(value) || value < 2 * REPLAY_WINDOW) {
    throw new RangeError(`rekeyInterval must be an integer of at least ${2 * REPLAY_WINDOW}`);
  }
  return value;
}

/**
 * Seals records in one direction. Several {@link seal} calls may be in
 * flight at once (WebCrypto runs them in parallel); each takes its counter
 * when called, so records come out numbered in call order.
 */
export class SendCipher {
  #interval: number;
  #n: number;
  #epoch: number;
  #key: Promise<CryptoKey>;
  /** Scratch nonce: WebCrypto copies it before `encrypt` returns. */
  #iv = new Uint8Array(12);

  private constructor(key: Promise<CryptoKey>, options: TransportCipherOptions) {
    this.#interval = interval(options);
    this.#n = options.initialCounter ?? 0;
    this.#epoch = Math.floor(this.#n / this.#interval);
    this.#key = key;
  }

  /** A sender for Split()'s raw key of this direction. */
  static create(raw: Uint8Array, options: TransportCipherOptions = {}): SendCipher {
    return new SendCipher(importAesKey(raw), options);
  }

  /** The counter of the next record. */
  get counter(): number {
    return this.#n;
  }

  /**
   * The record for `plaintext`.
   * @throws {HandshakeError} `nonce_exhausted` past the last counter.
   */
  async seal(plaintext: Uint8Array): Promise<Uint8Array> {
    const n = this.#n;
    if (n > MAX_NONCE) throw new HandshakeError("nonce_exhausted", "channel nonce space exhausted");
    this.#n = n + 1;
    const epoch = Math.floor(n / this.#interval);
    if (epoch > this.#epoch) {
      // Counters are taken in order, so epochs only move forward by one.
      this.#key = this.#key.then(rekey);
      this.#epoch = epoch;
    }
    const key = await this.#key;
    // From here to the encrypt call there is no await: the shared nonce
    // buffer is written and copied by WebCrypto in one synchronous step.
    const sealed = await aesGcmEncrypt(key, this.#iv, n, EMPTY, plaintext);
    const record = new Uint8Array(COUNTER_BYTES + sealed.length);
    writeCounter(record, n);
    record.set(sealed, COUNTER_BYTES);
    return record;
  }
}

/** Why a record was dropped. */
export type DropReason = "malformed" | "replayed" | "too_old" | "too_new" | "auth_failed";

/** What {@link ReceiveCipher.open} gives: a plaintext, or why the record was dropped. */
export type OpenResult =
  | { readonly ok: true; readonly plaintext: Uint8Array; readonly counter: number }
  | { readonly ok: false; readonly reason: DropReason };

/**
 * Opens records of one direction. Calls must not overlap (the channel
 * awaits each before the next): the window and the key chain are updated
 * only after a record authenticates, so a forged record changes nothing.
 */
export class ReceiveCipher {
  #interval: number;
  #iv = new Uint8Array(12);
  #epoch = 0;
  #current: Promise<CryptoKey>;
  #previous: Promise<CryptoKey> | null = null;
  #next: Promise<CryptoKey> | null = null;
  /** Highest counter accepted so far, -1 before the first. */
  #highest = -1;
  /** Ring of accepted counters: slot n % window holds n once n is accepted. */
  #seen = new Float64Array(REPLAY_WINDOW).fill(-1);

  private constructor(key: Promise<CryptoKey>, options: TransportCipherOptions) {
    this.#interval = interval(options);
    this.#current = key;
    this.#epoch = Math.floor((options.initialCounter ?? 0) / this.#interval);
  }

  /** A receiver for Split()'s raw key of this direction. */
  static create(raw: Uint8Array, options: TransportCipherOptions = {}): ReceiveCipher {
    return new ReceiveCipher(importAesKey(raw), options);
  }

  /** Checks and decrypts one record. Never throws for bad input. */
  async open(record: Uint8Array): Promise<OpenResult> {
    if (record.length < COUNTER_BYTES + TAG_BYTES) return { ok: false, reason: "malformed" };
    const high = ((record[0] << 24) >>> 0) + (record[1] << 16) + (record[2] << 8) + record[3];
    // Counters beyond 2^53 - 2 are never sent (see MAX_NONCE).
    if (high > 0x1f_ffff) return { ok: false, reason: "malformed" };
    const low = ((record[4] << 24) >>> 0) + (record[5] << 16) + (record[6] << 8) + record[7];
    const n = high * 0x1_0000_0000 + low;
    if (n > MAX_NONCE) return { ok: false, reason: "malformed" };

    // Window first: a replay costs no decryption.
    if (n <= this.#highest - REPLAY_WINDOW) return { ok: false, reason: "too_old" };
    if (this.#seen[n % REPLAY_WINDOW] === n) return { ok: false, reason: "replayed" };

    const epoch = Math.floor(n / this.#interval);
    let key: Promise<CryptoKey>;
    if (epoch === this.#epoch) key = this.#current;
    else if (epoch === this.#epoch - 1 && this.#previous !== null) key = this.#previous;
    else if (epoch === this.#epoch + 1) key = this.#next ??= this.#current.then(rekey);
    else return { ok: false, reason: epoch > this.#epoch ? "too_new" : "too_old" };

    let plaintext: Uint8Array;
    try {
      plaintext = await aesGcmDecrypt(
        await key,
        this.#iv,
        n,
        EMPTY,
        record.subarray(COUNTER_BYTES),
      );
    } catch {
      return { ok: false, reason: "auth_failed" };
    }
    // Authentic: only now does the record move the window or the key chain.
    if (epoch === this.#epoch + 1) {
      this.#previous = this.#current;
      this.#current = key;
      this.#next = null;
      this.#epoch = epoch;
    }
    if (n > this.#highest) this.#highest = n;
    this.#seen[n % REPLAY_WINDOW] = n;
    return { ok: true, plaintext, counter: n };
  }
}

function writeCounter(target: Uint8Array, n: number): void {
  const high = Math.floor(n / 0x1_0000_0000);
  const low = n >>> 0;
  target[0] = high >>> 24;
  target[1] = (high >>> 16) & 0xff;
  target[2] = (high >>> 8) & 0xff;
  target[3] = high & 0xff;
  target[4] = low >>> 24;
  target[5] = (low >>> 16) & 0xff;
  target[6] = (low >>> 8) & 0xff;
  target[7] = low & 0xff;
}
