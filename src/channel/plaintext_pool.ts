/**
 * Plaintext buffers for the records a `ReceiveCipher` opens in the call
 * (transport_cipher.ts): lent out, and used again once their one owner has
 * given them back, instead of a fresh `ArrayBuffer` per record (a 64 KiB
 * one costs more than its decryption here, most of it in the collector).
 *
 * Ownership, which is all this module is about:
 *
 * - {@link PlaintextPool.lend} lends a buffer as a {@link PlaintextLoan}:
 *   its `bytes`, exactly the plaintext's size, all zero. The loan object
 *   is the only way back to the pool, and it goes back at most once: the
 *   first {@link PlaintextLoan.take} makes its caller the owner, and only
 *   the owner's first {@link PlaintextLoan.release} returns the memory.
 *   A buffer is free only after its loan was released, and is lent again
 *   only from the free list, each time under a new loan; so at most one
 *   loan of a buffer is ever outstanding, and a stale or second release
 *   (an old loan) can never take a buffer back from its current holder.
 * - A buffer is given back zeroed, so free buffers hold nothing: a
 *   plaintext (or the unauthenticated output of a forged record) outlives
 *   its owner's use of it nowhere in the pool, and a buffer lent for one
 *   channel carries nothing of another's.
 * - A loan never released is simply collected with its buffer, as any
 *   other allocation: giving back is an optimisation, never an
 *   obligation, and the pool keeps no record of what it lent. So whoever
 *   cannot tell when the last reference to a plaintext goes away (a worker
 *   that keeps views into it, say) just never gives it back.
 * - Who may release: the owner. The cipher owns a plaintext until it
 *   hands the result out; the secure channel then, until it delivers the
 *   message; then the worker it delivers the message to, if that worker
 *   takes the loan (as `local.lease`, a {@link PayloadLease}), and it
 *   releases it when nothing of its own refers to it any more (portal.ts:
 *   when the socket write completed). Otherwise no one releases it.
 *
 * @module
 */
import type { PayloadLease } from "../routing/routed_message.ts";

/** Plaintexts smaller than this are allocated, not pooled (small buffers are cheap). */
export const MIN_POOLED_BYTES = 256;
/** Plaintexts larger than this are allocated, not pooled (a default frame is 256 KiB). */
export const MAX_POOLED_BYTES = 256 * 1024;
/** Most bytes a pool keeps free by default: beyond it, the oldest free buffers are dropped. */
export const DEFAULT_MAX_FREE_BYTES = 4 * 1024 * 1024;
/** Most buffers a pool keeps free, whatever their size. */
const MAX_FREE_BUFFERS = 64;

/**
 * The size of the buffer allocated for `size` bytes: rounded up to a
 * quarter of its power of two, or to 4 KiB above 16 KiB, so that
 * plaintexts of about the same size can share buffers while a buffer
 * never given back costs little more than an exact one.
 */
function capacityFor(size: number): number {
  const top = 2 ** (31 - Math.clz32(size));
  const step = Math.min(top / 4, 4096);
  return Math.ceil(size / step) * step;
}

/** Counters of a pool, for tests and benchmarks. */
export interface PlaintextPoolStats {
  /** Buffers lent. */
  lent: number;
  /** Of those, how many were free buffers used again (the rest were allocated). */
  reused: number;
  /** Loans released: buffers back, zeroed. */
  released: number;
}

/** Options of a {@link PlaintextPool}. */
export interface PlaintextPoolOptions {
  /** Most bytes kept free (default {@link DEFAULT_MAX_FREE_BYTES}); 0 keeps none. */
  maxFreeBytes?: number;
}

/** Set once, in the pool's static block: how a released loan's buffer goes back. */
let restore: (pool: PlaintextPool, bytes: Uint8Array) => void;

/**
 * Buffers lent one at a time and taken back zeroed.
 *
 * @example
 * ```ts
 * import { PlaintextPool } from "./plaintext_pool.ts";
 * const pool = new PlaintextPool();
 * const loan = pool.lend(1000)!; // loan.bytes: 1000 bytes, all zero
 * loan.bytes.fill(7);
 * loan.take(); // true: the caller owns it now
 * loan.release(); // zeroed and free again; loan.bytes must not be used any more
 * loan.release(); // nothing: released already
 * const again = pool.lend(1000)!; // the same memory, zero again, a new loan
 * ```
 */
export class PlaintextPool {
  /** Most bytes kept free. */
  readonly maxFreeBytes: number;
  /** Live counters. */
  readonly stats: PlaintextPoolStats = { lent: 0, reused: 0, released: 0 };
  /** Free buffers, all zero, the most recently released last. */
  #free: ArrayBuffer[] = [];
  #freeBytes = 0;

  static {
    restore = (pool, bytes) => pool.#restore(bytes);
  }

  /** An empty pool. */
  constructor(options: PlaintextPoolOptions = {}) {
    this.maxFreeBytes = options.maxFreeBytes ?? DEFAULT_MAX_FREE_BYTES;
  }

  /** Bytes of the free buffers now. */
  get freeBytes(): number {
    return this.#freeBytes;
  }

  /**
   * A loan of `size` zeroed bytes, from {@link MIN_POOLED_BYTES} to
   * {@link MAX_POOLED_BYTES}; null for other sizes (allocate those).
   */
  lend(size: number): PlaintextLoan | null {
    if (size < MIN_POOLED_BYTES || size > MAX_POOLED_BYTES) return null;
    const capacity = capacityFor(size);
    let buffer: ArrayBuffer | undefined;
    const free = this.#free;
    for (let i = free.length - 1; i >= 0; i--) {
      const candidate = free[i];
      // Big enough, and not more than twice what is needed.
      if (candidate.byteLength >= size && candidate.byteLength <= 2 * capacity) {
        buffer = candidate;
        free.splice(i, 1);
        this.#freeBytes -= candidate.byteLength;
        this.stats.reused++;
        break;
      }
    }
    buffer ??= new ArrayBuffer(capacity);
    this.stats.lent++;
    return new PlaintextLoan(this, new Uint8Array(buffer, 0, size));
  }

  /** A released loan's bytes: zeroed, and their buffer free again (if it fits). */
  #restore(bytes: Uint8Array): void {
    // The loan's view spans all it could write: the rest was zero already.
    bytes.fill(0);
    this.stats.released++;
    const buffer = bytes.buffer as ArrayBuffer;
    const free = this.#free;
    while (
      free.length > 0 &&
      (free.length >= MAX_FREE_BUFFERS || this.#freeBytes + buffer.byteLength > this.maxFreeBytes)
    ) {
      this.#freeBytes -= free.shift()!.byteLength;
    }
    if (buffer.byteLength <= this.maxFreeBytes) {
      free.push(buffer);
      this.#freeBytes += buffer.byteLength;
    }
  }
}

/**
 * One buffer lent by a {@link PlaintextPool}: {@link bytes} until it is
 * released. Its owner is whoever took it ({@link take}); the first
 * {@link release} by that owner, once nothing refers to the bytes any
 * more, gives the memory back. It is a {@link PayloadLease}, so a secure
 * channel offers it as such to the worker it delivers a message to.
 */
export class PlaintextLoan implements PayloadLease {
  /** The memory lent: exactly the size asked for. */
  readonly bytes: Uint8Array;
  /** The pool, until released. */
  #pool: PlaintextPool | null;
  #taken = false;

  /** @internal Made by {@link PlaintextPool.lend}. */
  constructor(pool: PlaintextPool, bytes: Uint8Array) {
    this.#pool = pool;
    this.bytes = bytes;
  }

  /** True for the first caller, who then owns the bytes until it calls {@link release}. */
  take(): boolean {
    if (this.#taken) return false;
    this.#taken = true;
    return true;
  }

  /** Gives the bytes back, zeroed: after {@link take}, once; otherwise does nothing. */
  release(): void {
    const pool = this.#pool;
    if (!this.#taken || pool === null) return;
    this.#pool = null;
    restore(pool, this.bytes);
  }
}

/** The pool every `ReceiveCipher` (transport_cipher.ts) uses unless its options name another. */
export const plaintextPool: PlaintextPool = new PlaintextPool();
