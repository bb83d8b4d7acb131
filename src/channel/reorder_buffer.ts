/**
 * Delivery in counter order (docs/design.md §9, "hostile relay";
 * docs/protocol.md §15.7): records that authenticate out of order (a
 * relay reordered them, or they finished decrypting out of order) are
 * held until the records before them arrive, so the application sees
 * every message at most once and in the order it was sent.
 *
 * A record that never comes (a relay dropped it) must not stall the
 * channel: the gap is given up on when the records held behind it fill
 * the window, pass a byte budget, or wait too long (the channel's timer
 * calls {@link ReorderBuffer.skipGap}). The counters skipped are reported
 * as lost; a record that arrives after its gap was given up on is late
 * and dropped, so order still holds. Ordered streams carried over the
 * channel (portal sessions, which number their messages) notice the loss
 * and end with an error; the channel serves on.
 *
 * Sans I/O and free of timers: the caller feeds authenticated records and
 * decides when to give up on a gap.
 *
 * @module
 */

/** What {@link ReorderBuffer.push} returns. */
export interface ReorderResult<T> {
  /** Items now deliverable, in counter order (possibly none). */
  readonly ready: T[];
  /** Counters given up on by this call (the window or the byte budget overflowed). */
  readonly lost: number;
  /** True when the item came after its counter was given up on: dropped. */
  readonly late: boolean;
}

/** Options of {@link ReorderBuffer}. */
export interface ReorderBufferOptions {
  /** The first counter expected (default 0). */
  first?: number;
  /** Most records held behind a gap; also the furthest ahead a record may be (default 64). */
  window?: number;
  /** Most bytes held behind a gap (default 4 MiB). */
  maxBytes?: number;
}

/**
 * Records in, records out in counter order.
 *
 * @example
 * ```ts
 * import { ReorderBuffer } from "./reorder_buffer.ts";
 * const order = new ReorderBuffer<string>();
 * order.push(1, "b", 1).ready; // []: 0 has not come
 * order.push(0, "a", 1).ready; // ["a", "b"]
 * order.push(3, "d", 1).ready; // []: 2 is missing
 * order.skipGap(); // { ready: ["d"], lost: 1 }: 2 given up on
 * order.push(2, "c", 1).late; // true: dropped, order holds
 * ```
 */
export class ReorderBuffer<T> {
  #next: number;
  #window: number;
  #maxBytes: number;
  #held = new Map<number, { item: T; size: number }>();
  #heldBytes = 0;

  constructor(options: ReorderBufferOptions = {}) {
    this.#next = options.first ?? 0;
    this.#window = options.window ?? 64;
    this.#maxBytes = options.maxBytes ?? 4 * 1024 * 1024;
  }

  /** The counter expected next. */
  get next(): number {
    return this.#next;
  }

  /** True while records are held behind a gap. */
  get waiting(): boolean {
    return this.#held.size > 0;
  }

  /** Bytes held behind a gap now. */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /**
   * Offers the authenticated record `n` (of `size` bytes). Each counter is
   * offered at most once (the replay window sees to that).
   */
  push(n: number, item: T, size: number): ReorderResult<T> {
    if (n < this.#next) return { ready: [], lost: 0, late: true };
    if (n === this.#next) {
      this.#next++;
      return { ready: [item, ...this.#drain()], lost: 0, late: false };
    }
    this.#held.set(n, { item, size });
    this.#heldBytes += size;
    // Too much behind one gap: give up on it (and on the next, if needed).
    const ready: T[] = [];
    let lost = 0;
    while (
      this.#held.size > 0 &&
      (this.#held.size >= this.#window || this.#heldBytes > this.#maxBytes ||
        this.#furthest() - this.#next >= this.#window)
    ) {
      const skipped = this.skipGap();
      ready.push(...skipped.ready);
      lost += skipped.lost;
    }
    return { ready, lost, late: false };
  }

  /**
   * Gives up on the first gap: the counters up to the first held record are
   * lost; that record and those consecutive to it become ready.
   */
  skipGap(): { ready: T[]; lost: number } {
    if (this.#held.size === 0) return { ready: [], lost: 0 };
    let lowest = Infinity;
    for (const n of this.#held.keys()) if (n < lowest) lowest = n;
    const lost = lowest - this.#next;
    this.#next = lowest;
    return { ready: this.#drain(), lost };
  }

  #furthest(): number {
    let highest = -1;
    for (const n of this.#held.keys()) if (n > highest) highest = n;
    return highest;
  }

  #drain(): T[] {
    const ready: T[] = [];
    for (
      let held = this.#held.get(this.#next);
      held !== undefined;
      held = this.#held.get(this.#next)
    ) {
      this.#held.delete(this.#next);
      this.#heldBytes -= held.size;
      ready.push(held.item);
      this.#next++;
    }
    return ready;
  }
}
