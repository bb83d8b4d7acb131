/**
 * The receiver's replay window over record counters (docs/design.md §4,
 * docs/protocol.md §15.7): duplicates, and records older than the window,
 * are dropped before any decryption.
 *
 * A ring of the last {@link REPLAY_WINDOW} counters accepted: slot
 * `n % size` holds `n` once `n` is accepted, so "seen?" is one comparison
 * and memory is fixed whatever the peer sends. A counter more than `size`
 * below the highest accepted one is "too old": its slot may have been
 * reused, so it could not be told from a replay.
 *
 * @module
 */

/** Records of the window: duplicates and records this far behind the newest are dropped. */
export const REPLAY_WINDOW = 64;

/** What the window says of a counter. */
export type WindowVerdict = "fresh" | "replayed" | "too_old";

/**
 * A sliding window of accepted counters.
 *
 * @example
 * ```ts
 * import { ReplayWindow } from "./replay_window.ts";
 * const window = new ReplayWindow();
 * window.check(5); // "fresh"
 * window.mark(5);
 * window.check(5); // "replayed"
 * window.mark(100);
 * window.check(6); // "too_old"
 * ```
 */
export class ReplayWindow {
  /** Counters the window covers (at least 8). */
  readonly size: number;
  /** Highest counter accepted so far, -1 before the first. */
  #highest = -1;
  #seen: Float64Array;

  /**
   * An empty window of `size` counters.
   * @throws {RangeError} when `size` is not an integer of at least 8.
   */
  constructor(size: number = REPLAY_WINDOW) {
    if (!Number.isInteger(size) || size < 8) {
      throw new RangeError("a replay window holds 8 or more");
    }
    this.size = size;
    this.#seen = new Float64Array(size).fill(-1);
  }

  /** Highest counter accepted so far, -1 before the first. */
  get highest(): number {
    return this.#highest;
  }

  /** Whether `n` may still be accepted. No state changes. */
  check(n: number): WindowVerdict {
    if (n <= this.#highest - this.size) return "too_old";
    if (this.#seen[n % this.size] === n) return "replayed";
    return "fresh";
  }

  /** Records `n` as accepted (after it authenticated). */
  mark(n: number): void {
    if (n > this.#highest) this.#highest = n;
    this.#seen[n % this.size] = n;
  }
}
