/**
 * Group commit for the authority store: the writes of requests that arrive
 * together go into one write transaction, each keeping its own outcome.
 *
 * Two parts:
 *
 * - {@link StoreBatchError}: how a batch fails as a whole. The writer of a
 *   batch (the credential records, `issued_credentials.ts`) refuses an item
 *   alone when its own check says so, having written nothing for it; anything
 *   else (the database failing, an audit append refused, the commit failing)
 *   rolls the whole transaction back and fails every item with one
 *   `StoreBatchError`: no request sees a half-made change, and the audit
 *   chain is as before the batch.
 * - {@link GroupCommit}: the queue in front of the writer, engine-neutral.
 *   A request submits its item and awaits its outcome; the items submitted in one event-loop turn are
 *   written together, within that turn: the batch waits while each round of
 *   microtasks brings more items (requests read in the same turn reach the
 *   store a few microtasks apart) and is written by the first round that
 *   brings none. There is no timer: a lone request is written as soon as the
 *   code that submitted it yields, one round later, before any I/O or timer
 *   runs. A batch holds at most `maxBatch` items; a full batch is written at
 *   once. With an asynchronous core (a database server), the items submitted
 *   while a batch is being committed wait for that commit and then go
 *   together: the classic group commit, with no delay added to a lone
 *   request either.
 *
 * @module
 */
import { AuthorityError } from "../../src/errors.ts";

/** One item's outcome: its value, or the error that refused it alone. */
export type Outcome<R> = { ok: true; value: R } | { ok: false; error: Error };

/**
 * A batch failed as a whole and was rolled back: nothing of it was written.
 * Each request of the batch is rejected with this error. Its `code` is the
 * cause's when the cause is an `AuthorityError` (`store_corrupt` for an audit
 * log that does not end at its head), else `bad_request`; the cause (e.g.
 * the database's error) is kept in `cause` for the log, and stays out of
 * the message, which a member may be sent.
 */
export class StoreBatchError extends AuthorityError {
  /** How many items the failed batch held. */
  readonly size: number;

  /** The failure of a batch of `size` items, caused by `cause`. */
  constructor(size: number, cause: unknown) {
    super(
      cause instanceof AuthorityError ? cause.code : "bad_request",
      `the store could not write this request: its batch of ${size} was rolled back and nothing of it was written`,
      { cause },
    );
    this.size = size;
  }
}

/** Options of {@link GroupCommit}. */
export interface GroupCommitOptions<I, R> {
  /**
   * Writes a batch, returning one outcome per item in order; throwing (or rejecting) fails every item
   * with that error. May return a Promise (an asynchronous core).
   */
  write(items: readonly I[]): readonly Outcome<R>[] | Promise<readonly Outcome<R>[]>;
  /**
   * Most items in one batch (default 16): enough to spread a commit over
   * many items, few enough that the first request of a batch waits for
   * only a few others' work (the service signs each before submitting it),
   * so its answer leaves while later requests are still being signed.
   */
  maxBatch?: number;
}

/** Counters of a {@link GroupCommit}. */
export interface GroupCommitStats {
  /** Batches written (each one transaction), failed ones included. */
  batches: number;
  /** Items written through them. */
  items: number;
  /** Batches that failed as a whole. */
  failed: number;
  /** The largest batch so far. */
  largest: number;
}

interface Pending<I, R> {
  item: I;
  resolve(value: R): void;
  reject(error: unknown): void;
}

/**
 * Rounds of microtasks a batch waits for more items while it keeps growing:
 * requests handled in the same turn reach the store a few microtasks apart,
 * so a batch that grew in the last round may grow in the next. A round that
 * adds nothing ends the wait at once.
 */
const MAX_ROUNDS = 8;

/** A queue that writes the items submitted together in one batch (see the module comment). */
export class GroupCommit<I, R> {
  readonly #write: GroupCommitOptions<I, R>["write"];
  readonly #maxBatch: number;
  #queue: Pending<I, R>[] = [];
  /** The wait for the current batch, if one is pending: its number (0: none). */
  #waiting = 0;
  #waits = 0;
  #inFlight = false;
  readonly #stats: GroupCommitStats = { batches: 0, items: 0, failed: 0, largest: 0 };

  /** @throws {RangeError} when `maxBatch` is not a positive integer. */
  constructor(options: GroupCommitOptions<I, R>) {
    const maxBatch = options.maxBatch ?? 16;
    if (!Number.isSafeInteger(maxBatch) || maxBatch < 1) {
      throw new RangeError("maxBatch must be a positive integer");
    }
    this.#write = options.write;
    this.#maxBatch = maxBatch;
  }

  /** Counters (a live view). */
  get stats(): Readonly<GroupCommitStats> {
    return this.#stats;
  }

  /**
   * Queues `item` for the batch of this turn; settles with the item's own
   * outcome, or rejects with the batch's error when the batch failed.
   */
  submit(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (this.#inFlight) return; // goes with the next batch, once this one commits
      if (this.#queue.length >= this.#maxBatch) {
        this.#flush();
        return;
      }
      if (this.#waiting === 0) {
        this.#waiting = ++this.#waits;
        this.#settle(this.#waiting, 0, 0);
      }
    });
  }

  /** Waits while the batch grows, at most {@link MAX_ROUNDS} rounds of microtasks, then flushes. */
  #settle(wait: number, seen: number, round: number): void {
    queueMicrotask(() => {
      if (this.#waiting !== wait) return; // that batch was written already (it filled up)
      const size = this.#queue.length;
      if (size > seen && round < MAX_ROUNDS) {
        this.#settle(wait, size, round + 1);
        return;
      }
      this.#flush();
    });
  }

  #flush(): void {
    this.#waiting = 0;
    if (this.#queue.length === 0) return;
    const batch = this.#queue.splice(0, this.#maxBatch);
    this.#stats.batches++;
    this.#stats.items += batch.length;
    this.#stats.largest = Math.max(this.#stats.largest, batch.length);
    let written: readonly Outcome<R>[] | Promise<readonly Outcome<R>[]>;
    try {
      written = this.#write(batch.map((pending) => pending.item));
    } catch (error) {
      this.#settleBatch(batch, null, error);
      this.#next();
      return;
    }
    if (!(written instanceof Promise)) {
      this.#settleBatch(batch, written, null);
      this.#next();
      return;
    }
    this.#inFlight = true;
    written.then(
      (outcomes) => this.#settleBatch(batch, outcomes, null),
      (error) => this.#settleBatch(batch, null, error),
    ).finally(() => {
      this.#inFlight = false;
      this.#next();
    });
  }

  /**
   * After a batch: what was queued while it was being committed has waited
   * already, so it goes at once (at most `maxBatch` of it; the rest after).
   */
  #next(): void {
    if (this.#queue.length > 0 && this.#waiting === 0) this.#flush();
  }

  #settleBatch(
    batch: Pending<I, R>[],
    outcomes: readonly Outcome<R>[] | null,
    error: unknown,
  ): void {
    if (outcomes !== null && outcomes.length !== batch.length) {
      error = new Error(`a batch write returned ${outcomes.length} outcomes for ${batch.length}`);
      outcomes = null;
    }
    if (outcomes === null) {
      this.#stats.failed++;
      for (const pending of batch) pending.reject(error);
      return;
    }
    batch.forEach((pending, i) => {
      const outcome = outcomes[i];
      if (outcome.ok) pending.resolve(outcome.value);
      else pending.reject(outcome.error);
    });
  }
}
