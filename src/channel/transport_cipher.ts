/**
 * Transport records of a secure channel (docs/design.md §4), after the Noise
 * handshake's Split():
 *
 * ```
 * record = counter: 8 bytes big-endian || AES-256-GCM(k_epoch, nonce = 0^4 || counter, ad = "", plaintext)
 * ```
 *
 * The counter travels in clear so that records can be checked against a
 * replay window before any decryption, and so that a record stays
 * decryptable when an earlier one is late: unlike Noise's implicit nonces,
 * nothing requires strict order. Tampering with the counter changes the
 * nonce, so the tag fails.
 *
 * Keys rotate every `rekeyInterval` records with Noise's REKEY (§11.3):
 * record n is sealed under k_epoch, epoch = floor(n / rekeyInterval), where
 * k_0 is Split()'s key and k_(e+1) = REKEY(k_e). Both ends derive the same
 * chain, so no message announces a rekey. The receiver keeps the previous
 * epoch's key while records of it can still fall inside the window.
 *
 * Two backends (chosen per process: {@link setRecordCipher}; per cipher:
 * `aead` in the options; docs/architecture.md §5.11):
 *
 * - **A synchronous AES-GCM** (`src/crypto/aes_gcm.ts`; OpenSSL through
 *   FFI): every record is sealed and opened in the call, at 2.5–3.5 GB/s
 *   per core here, so `seal` and `open` return settled promises.
 * - **WebCrypto** (the default where the permission set allows no FFI):
 *   measured here (Deno 2.9), WebCrypto costs about 60 µs per call
 *   whatever the size up to 16 KiB, and seals 64 KiB in about 90 µs when
 *   four calls are in flight; node:crypto seals 100 bytes in 9 µs but 64
 *   KiB in 490 µs. So records of up to {@link SMALL_RECORD} bytes use
 *   node:crypto synchronously and larger ones WebCrypto, whose calls the
 *   channel keeps several of in flight.
 *
 * REKEY is a 32-byte encryption: node:crypto, so the key chain is plain
 * bytes and needs no promise chain.
 *
 * @module
 */
import {
  aesGcmDecrypt,
  aesGcmEncrypt,
  importAesKey,
  MAX_NONCE,
  rekeyBytes,
  writeNonce,
} from "./noise/cipher_state.ts";
import { HandshakeError } from "../errors.ts";
import { type AesGcm, type AesGcmKey, nodeAesGcm } from "../crypto/aes_gcm.ts";
import { REPLAY_WINDOW, ReplayWindow } from "./replay_window.ts";
import { type PlaintextLoan, type PlaintextPool, plaintextPool } from "./plaintext_pool.ts";
import type { PayloadLease } from "../routing/routed_message.ts";

export { REPLAY_WINDOW };

/** Bytes of the clear counter before each ciphertext. */
export const COUNTER_BYTES = 8;
/** AES-GCM tag length. */
export const TAG_BYTES = 16;
/** Default records per key before REKEY. */
export const DEFAULT_REKEY_INTERVAL = 65536;
/** Plaintexts up to this size are sealed and opened synchronously with node:crypto. */
export const SMALL_RECORD = 2048;

const EMPTY = new Uint8Array(0);

let processAead: AesGcm | null = null;

/**
 * Chooses the synchronous AES-GCM that every record cipher created after
 * this call uses, unless its options name one (`aead`); `null` for the
 * WebCrypto backend. An executable calls this once at start, after its
 * configuration (`cipher`) is read.
 */
export function setRecordCipher(aead: AesGcm | null): void {
  processAead = aead;
}

/** The backend new record ciphers use: `openssl` (or another synchronous AES-GCM's name), or `webcrypto`. */
export function recordCipherName(): string {
  return processAead?.name ?? "webcrypto";
}

/**
 * One epoch's key: raw bytes for node:crypto, imported once for WebCrypto,
 * keyed once in the synchronous backend.
 */
class EpochKey {
  readonly epoch: number;
  readonly raw: Uint8Array;
  #imported: Promise<CryptoKey> | null = null;
  /** The imported key once available, so callers can skip an await. */
  resolved: CryptoKey | null = null;
  #aead: AesGcmKey | null = null;

  constructor(epoch: number, raw: Uint8Array) {
    this.epoch = epoch;
    this.raw = raw;
  }

  imported(): Promise<CryptoKey> {
    return this.#imported ??= importAesKey(this.raw).then((key) => this.resolved = key);
  }

  /** This key in `backend`, keyed on first use. */
  keyed(backend: AesGcm): AesGcmKey {
    return this.#aead ??= backend.key(this.raw);
  }

  next(): EpochKey {
    return new EpochKey(this.epoch + 1, rekeyBytes(this.raw));
  }

  /** Wipes the key once no record of its epoch can be sealed or opened any more. */
  dispose(): void {
    this.#aead?.dispose();
    this.#aead = null;
    this.raw.fill(0);
  }
}

/** Options shared by both directions. */
export interface TransportCipherOptions {
  /** Records per key before REKEY (default {@link DEFAULT_REKEY_INTERVAL}); at least 2 × the window. */
  rekeyInterval?: number;
  /**
   * First counter, for tests that start near the end of the nonce space.
   * The key given is taken as the key of that counter's epoch.
   */
  initialCounter?: number;
  /**
   * A synchronous AES-GCM for every record, or `null` for WebCrypto
   * (default: the process's, {@link setRecordCipher}).
   */
  aead?: AesGcm | null;
  /**
   * Receiving: where plaintexts opened in the call are lent from (default
   * the process's, {@link plaintextPool}); `null` allocates each one.
   * Either way a plaintext is the caller's; a pooled one comes with its
   * `lease`, to give it back by ({@link OpenedRecord}).
   */
  plaintexts?: PlaintextPool | null;
}

function interval(options: TransportCipherOptions): number {
  const value = options.rekeyInterval ?? DEFAULT_REKEY_INTERVAL;
  if (!Number.isSafeInteger(value) || value < 2 * REPLAY_WINDOW) {
    throw new RangeError(`rekeyInterval must be an integer of at least ${2 * REPLAY_WINDOW}`);
  }
  return value;
}

function writeCounter(target: Uint8Array, at: number, n: number): void {
  const high = Math.floor(n / 0x1_0000_0000);
  const low = n >>> 0;
  target[at] = high >>> 24;
  target[at + 1] = (high >>> 16) & 0xff;
  target[at + 2] = (high >>> 8) & 0xff;
  target[at + 3] = high & 0xff;
  target[at + 4] = low >>> 24;
  target[at + 5] = (low >>> 16) & 0xff;
  target[at + 6] = (low >>> 8) & 0xff;
  target[at + 7] = low & 0xff;
}

/**
 * Seals records in one direction. Several {@link seal} calls may be in
 * flight at once; each takes its counter when called, so records are
 * numbered in call order (they may complete out of order).
 *
 * @example
 * ```ts
 * import { ReceiveCipher, SendCipher } from "./transport_cipher.ts";
 *
 * // Both ends hold the same 32-byte key of this direction, from Split().
 * const key = crypto.getRandomValues(new Uint8Array(32));
 * const sender = SendCipher.create(key);
 * const receiver = ReceiveCipher.create(key);
 *
 * const record = await sender.seal(new TextEncoder().encode("hello"));
 * const opened = await receiver.open(record);
 * if (opened.ok) console.log(new TextDecoder().decode(opened.plaintext)); // "hello"
 *
 * const again = await receiver.open(record);
 * console.log(again.ok ? "accepted" : again.reason); // "replayed"
 * ```
 */
export class SendCipher {
  #interval: number;
  #n: number;
  #key: EpochKey;
  #aead: AesGcm | null;
  /** Scratch nonce: every backend reads it before returning. */
  #iv = new Uint8Array(12);

  private constructor(raw: Uint8Array, options: TransportCipherOptions) {
    this.#interval = interval(options);
    this.#n = options.initialCounter ?? 0;
    this.#key = new EpochKey(Math.floor(this.#n / this.#interval), raw.slice());
    this.#aead = options.aead === undefined ? processAead : options.aead;
  }

  /** The backend's name: `openssl` (say) or `webcrypto`. */
  get backend(): string {
    return this.#aead?.name ?? "webcrypto";
  }

  /** A sender for Split()'s raw key of this direction. */
  static create(raw: Uint8Array, options: TransportCipherOptions = {}): SendCipher {
    return new SendCipher(raw, options);
  }

  /** The counter of the next record. */
  get counter(): number {
    return this.#n;
  }

  /** True when a record of `length` plaintext bytes is sealed in the call ({@link sealNow}). */
  sealsNow(length: number): boolean {
    return this.#aead !== null || length <= SMALL_RECORD;
  }

  /** Takes the next counter, moving to the next epoch's key when it starts one. */
  #take(): { n: number; key: EpochKey } {
    const n = this.#n;
    if (n > MAX_NONCE) throw new HandshakeError("nonce_exhausted", "channel nonce space exhausted");
    this.#n = n + 1;
    const epoch = Math.floor(n / this.#interval);
    // Counters are taken in order, so epochs only move forward by one,
    // and no record of the old epoch is sealed after this.
    if (epoch > this.#key.epoch) {
      const old = this.#key;
      this.#key = old.next();
      old.dispose();
    }
    return { n, key: this.#key };
  }

  /**
   * The record for `prefix || plaintext`, sealed in the call, preceded by
   * `headroom` free bytes for the caller's own header: one allocation for
   * all, and the prefix (the caller's header inside the record) and the
   * plaintext are read where they are, not copied together first.
   * @throws {RangeError} unless {@link sealsNow} for this length.
   * @throws {HandshakeError} `nonce_exhausted` past the last counter.
   */
  sealNow(plaintext: Uint8Array, headroom = 0, prefix: Uint8Array = EMPTY): Uint8Array {
    const length = prefix.length + plaintext.length;
    const sync = this.#aead ?? (length <= SMALL_RECORD ? nodeAesGcm : null);
    if (sync === null) throw new RangeError(`a record of ${length} bytes is sealed asynchronously`);
    const { n, key } = this.#take();
    const at = headroom + COUNTER_BYTES;
    const record = new Uint8Array(at + length + TAG_BYTES);
    writeCounter(record, headroom, n);
    writeNonce(this.#iv, n);
    key.keyed(sync).seal(this.#iv, plaintext, record.subarray(at), prefix);
    return record;
  }

  /**
   * The record for `prefix || plaintext`, as {@link sealNow}, in the call
   * when the backend allows, else by WebCrypto (several may be in flight;
   * the counter is taken now).
   * @throws {HandshakeError} `nonce_exhausted` past the last counter (rejected).
   */
  seal(plaintext: Uint8Array, headroom = 0, prefix: Uint8Array = EMPTY): Promise<Uint8Array> {
    try {
      if (this.sealsNow(prefix.length + plaintext.length)) {
        return Promise.resolve(this.sealNow(plaintext, headroom, prefix));
      }
      if (prefix.length > 0) {
        const whole = new Uint8Array(prefix.length + plaintext.length);
        whole.set(prefix);
        whole.set(plaintext, prefix.length);
        plaintext = whole;
      }
      const { n, key } = this.#take();
      const at = headroom + COUNTER_BYTES;
      const seal = async (cryptoKey: CryptoKey) => {
        const sealed = await aesGcmEncrypt(cryptoKey, this.#iv, n, EMPTY, plaintext);
        const record = new Uint8Array(at + sealed.length);
        writeCounter(record, headroom, n);
        record.set(sealed, at);
        return record;
      };
      // With the key at hand the encryption starts now, in call order.
      return key.resolved !== null ? seal(key.resolved) : key.imported().then(seal);
    } catch (error) {
      return Promise.reject(error);
    }
  }
}

/** Why a record was dropped. */
export type DropReason = "malformed" | "replayed" | "too_old" | "too_new" | "auth_failed";

/**
 * An authenticated record. Its plaintext is the caller's, for as long as
 * it likes. When it lies in a buffer lent by the pool, `lease` is that
 * loan: whoever takes it (`lease.take()`, once) may give the memory back
 * (`lease.release()`) once nothing refers to the plaintext any more, and
 * then it is used for a later record; left alone, the plaintext is simply
 * collected as any other.
 */
export interface OpenedRecord {
  /** Authentic: the record opened. */
  readonly ok: true;
  /** The record's plaintext (in the lent memory, when `lease` is set). */
  readonly plaintext: Uint8Array;
  /** The record's counter, now marked in the replay window. */
  readonly counter: number;
  /** The plaintext's memory, when lent by the pool (plaintext_pool.ts); else undefined. */
  readonly lease: PayloadLease | undefined;
}

/** What {@link ReceiveCipher.open} gives: a plaintext, or why the record was dropped. */
export type OpenResult = OpenedRecord | { readonly ok: false; readonly reason: DropReason };

/**
 * Opens records of one direction. Several opens may be in flight: each
 * reads its input before returning (the caller may reuse the record's
 * memory as soon as `open` returns), counters in flight count as seen, and
 * the window and the key chain move only when a record authenticates, so a
 * forged record changes nothing. The window is checked when a record
 * arrives (a replay costs no decryption) and again, atomically with the
 * write of its slot, when it authenticates (so records finishing out of
 * order cannot undo each other's marks). See {@link SendCipher} for an example.
 */
export class ReceiveCipher {
  #interval: number;
  #iv = new Uint8Array(12);
  #current: EpochKey;
  #previous: EpochKey | null = null;
  #next: EpochKey | null = null;
  #window = new ReplayWindow(REPLAY_WINDOW);
  /** Counters being decrypted now, and when each decryption settles. */
  #inFlight = new Map<number, Promise<unknown>>();
  #aead: AesGcm | null;
  #plaintexts: PlaintextPool | null;

  private constructor(raw: Uint8Array, options: TransportCipherOptions) {
    this.#interval = interval(options);
    this.#current = new EpochKey(
      Math.floor((options.initialCounter ?? 0) / this.#interval),
      raw.slice(),
    );
    this.#aead = options.aead === undefined ? processAead : options.aead;
    this.#plaintexts = options.plaintexts === undefined ? plaintextPool : options.plaintexts;
  }

  /** The backend's name: `openssl` (say) or `webcrypto`. */
  get backend(): string {
    return this.#aead?.name ?? "webcrypto";
  }

  /** A receiver for Split()'s raw key of this direction. */
  static create(raw: Uint8Array, options: TransportCipherOptions = {}): ReceiveCipher {
    return new ReceiveCipher(raw, options);
  }

  /**
   * Checks and decrypts one record. Never throws, never rejects. `record`
   * is read before this returns; its memory is the caller's again then.
   *
   * The plaintext of an authenticated record is the caller's, for as long
   * as it likes; one opened in the call may lie in a buffer lent by the
   * pool, which the caller may give back ({@link OpenedRecord}'s `lease`).
   * Nothing is handed out for a record that fails.
   */
  open(record: Uint8Array): Promise<OpenResult> {
    const drop = (reason: DropReason) => Promise.resolve<OpenResult>({ ok: false, reason });
    if (record.length < COUNTER_BYTES + TAG_BYTES) return drop("malformed");
    const high = ((record[0] << 24) >>> 0) + (record[1] << 16) + (record[2] << 8) + record[3];
    // Counters beyond 2^53 - 2 are never sent (see MAX_NONCE).
    if (high > 0x1f_ffff) return drop("malformed");
    const low = ((record[4] << 24) >>> 0) + (record[5] << 16) + (record[6] << 8) + record[7];
    const n = high * 0x1_0000_0000 + low;
    if (n > MAX_NONCE) return drop("malformed");

    // Window first: a replay costs no decryption.
    const verdict = this.#window.check(n);
    if (verdict !== "fresh") return drop(verdict);
    const busy = this.#inFlight.get(n);
    if (busy !== undefined) {
      // Another record with this counter is decrypting, and at most one of
      // the two is authentic: decide after it settles (a replay if it was
      // genuine), so a forgery sent first cannot get the genuine record
      // dropped. Copied: the caller may reuse the record's memory.
      const copy = record.slice();
      return busy.then(() => this.open(copy));
    }

    const epoch = Math.floor(n / this.#interval);
    const current = this.#current;
    let key: EpochKey;
    if (epoch === current.epoch) key = current;
    else if (epoch === current.epoch - 1 && this.#previous !== null) key = this.#previous;
    else if (epoch === current.epoch + 1) key = this.#next ??= current.next();
    else return drop(epoch > current.epoch ? "too_new" : "too_old");

    const ciphertext = record.subarray(COUNTER_BYTES);
    const size = ciphertext.length - TAG_BYTES;
    const sync = this.#aead ?? (size <= SMALL_RECORD ? nodeAesGcm : null);
    if (sync !== null) {
      // Opened in the call: nothing else runs between the window's check
      // above and #accept's.
      //
      // Who owns the plaintext, and until when: this cipher, from here
      // until it returns. The buffer is lent by the pool (or allocated),
      // all zero, and no one else holds a reference to it: the pool lends
      // a buffer only while it is free, and it is free only once its last
      // owner gave it back (plaintext_pool.ts). The record it is opened
      // from is the transport's (a frame, valid until its next read), and
      // is only read here, never kept. If the tag fails, the output (the
      // forgery's unauthenticated decryption) goes back to the pool, which
      // zeroes it, before this returns: no one ever sees it. If it
      // authenticates, it is the caller's, with its loan: see `open` above,
      // and the secure channel's #dispatch for what it does with it.
      const loan = this.#plaintexts?.lend(size) ?? null;
      const plaintext = loan?.bytes ?? new Uint8Array(size);
      writeNonce(this.#iv, n);
      let authentic = false;
      try {
        authentic = key.keyed(sync).open(this.#iv, ciphertext, plaintext);
      } finally {
        if (!authentic) discard(loan, plaintext);
      }
      if (!authentic) return drop("auth_failed");
      const accepted = this.#accept(n, key, plaintext, loan ?? undefined);
      if (!accepted.ok) discard(loan, plaintext);
      return Promise.resolve(accepted);
    }

    const finish = (plaintext: Uint8Array): OpenResult => {
      this.#inFlight.delete(n);
      return this.#accept(n, key, plaintext);
    };
    const fail = (): OpenResult => {
      this.#inFlight.delete(n);
      return { ok: false, reason: "auth_failed" };
    };
    let result: Promise<OpenResult>;
    if (key.resolved !== null) {
      // WebCrypto copies the ciphertext before decrypt returns.
      result = aesGcmDecrypt(key.resolved, this.#iv, n, EMPTY, ciphertext).then(finish, fail);
    } else {
      const copy = ciphertext.slice();
      result = key.imported()
        .then((cryptoKey) => aesGcmDecrypt(cryptoKey, this.#iv, n, EMPTY, copy))
        .then(finish, fail);
    }
    this.#inFlight.set(n, result);
    return result;
  }

  /** Authentic: only now does the record move the window or the key chain. */
  #accept(
    n: number,
    key: EpochKey,
    plaintext: Uint8Array,
    lease: PayloadLease | undefined = undefined,
  ): OpenResult {
    // The window is asked again here, in the same step as the slot is
    // written: records decrypt asynchronously, so between the check on
    // arrival and now, a record sharing this slot (n ± window) may have
    // been accepted. Writing without asking would let an older record
    // overwrite a newer one's slot, and the newer one be replayed.
    const verdict = this.#window.check(n);
    if (verdict !== "fresh") return { ok: false, reason: verdict };
    if (key.epoch === this.#current.epoch + 1) {
      // Records two epochs back fall outside the window (the interval is
      // at least twice its width): that key can open nothing any more.
      this.#previous?.dispose();
      this.#previous = this.#current;
      this.#current = key;
      this.#next = null;
    }
    this.#window.mark(n);
    return { ok: true, plaintext, counter: n, lease };
  }
}

/**
 * A plaintext no one will see (a forgery's output, a replay's): its loan
 * taken back by the cipher, its owner until now, which zeroes it; or, not
 * lent, zeroed where it is.
 */
function discard(loan: PlaintextLoan | null, plaintext: Uint8Array): void {
  if (loan?.take()) loan.release();
  else plaintext.fill(0);
}
