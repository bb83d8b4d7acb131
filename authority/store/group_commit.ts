/**
 * Group commit for the authority store: the writes of requests that arrive
 * together go into one write transaction, each keeping its own outcome.
 *
 * Two parts, both engine-neutral (they reach the database only through
 * {@link StoreCore}, so a PostgreSQL core behind the same interface gets the
 * same batching):
 *
 * - {@link writeBatch}: one write transaction over several items. Each item
 *   is first checked (reads only) and then applied (writes). A check may
 *   refuse its item alone, by throwing an `AuthorityError` before the item
 *   has written anything: that request fails with its own refusal, the
 *   others go on. Anything else (an error while applying an item, an audit
 *   append refused, the database failing, the commit failing) rolls the whole
 *   transaction back and fails every item of the batch with one
 *   {@link StoreBatchError}: nothing of the batch is written, so no request
 *   sees a half-made change, and the audit chain is as before the batch.
 *   Items are applied in order, so a later item's check sees the earlier
 *   items' writes (two items with one credential id: the second is refused),
 *   and their audit entries follow each other in the chain, each linked to
 *   the one before.
 * - {@link GroupCommit}: the queue in front of it. A request submits its item
 *   and awaits its outcome; the items submitted in one event-loop turn are
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
import type { Durability, Sql, StoreCore, WriteTx } from "./store_core.ts";

/** Queries that only read: what a batch item's check may use. */
export type ReadSql = Pick<Sql, "get" | "all">;

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

/** How {@link writeBatch} handles each item. */
export interface BatchSteps<I, R> {
  /**
   * Reads what the item depends on, in the batch's transaction; throws an
   * `AuthorityError` to refuse this item alone (it has written nothing).
   */
  check(sql: ReadSql, item: I): Promise<void>;
  /** Writes the item (and its audit entries); any error fails the whole batch. */
  apply(tx: WriteTx, item: I): Promise<R>;
}

/**
 * Writes `items` in one write transaction of `core` (see the module
 * comment): per-item refusals from `steps.check`, everything else all or
 * nothing.
 * @throws {StoreBatchError} when the batch failed: nothing of it was written.
 */
export async function writeBatch<I, R>(
  core: StoreCore,
  items: readonly I[],
  steps: BatchSteps<I, R>,
  durability: Durability = "full",
): Promise<Outcome<R>[]> {
  try {
    return await core.write(async (tx) => {
      const outcomes: Outcome<R>[] = [];
      for (const item of items) {
        try {
          await steps.check(tx, item);
        } catch (error) {
          if (error instanceof AuthorityError) {
            outcomes.push({ ok: false, error });
            continue;
          }
          throw error;
        }
        outcomes.push({ ok: true, value: await steps.apply(tx, item) });
      }
      return outcomes;
    }, durability);
  } catch (cause) {
    throw new StoreBatchError(items.length, cause);
  }
}

/** Options of {@link GroupCommit}. */
export interface GroupCommitOptions<I, R> {
  /**
   * Writes a batch, returning one outcome per item in order (typically
   * through {@link writeBatch}); throwing (or rejecting) fails every item
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
