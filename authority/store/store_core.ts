/**
 * What the authority store's aggregates (members, tickets, licenses, issued
 * credentials, revocations, the audit log, meta) need from a database, and
 * nothing more: queries, read and write transactions, and the audit append
 * that every write makes inside its transaction. `sqlite_core.ts` implements
 * it over node:sqlite; everything engine-specific (opening, PRAGMAs, the
 * schema, `BEGIN IMMEDIATE`, file modes) stays behind this interface.
 *
 * Portability: the aggregates write plain SQL that SQLite and PostgreSQL
 * both accept (`?` placeholders, which a PostgreSQL core would number as
 * `$1`, `$2`, ...; `ON CONFLICT ... DO UPDATE`; `coalesce`; `LIMIT ?` with a
 * non-negative count), and read rows as plain objects keyed by column name.
 * A PostgreSQL core over `pg` would be asynchronous: the same shapes, with
 * each result wrapped in a Promise.
 *
 * Batches: the service's credential records go through `group_commit.ts`,
 * which is written against this interface only: the records submitted in
 * one event-loop turn share one `write` transaction, each checked and
 * appended to the audit log in turn, and a transaction that fails fails
 * them all. A PostgreSQL core gets the same batching, and its commits in
 * flight let the next batch gather (the queue accepts an asynchronous
 * write). What a core may do for a batch is its own: the SQLite core reads
 * the audit head once per transaction and writes it back once, at commit;
 * a PostgreSQL core would lock the head row (`SELECT ... FOR UPDATE`) once
 * per transaction the same way.
 *
 * @module
 */
import type { AuditEntry } from "../audit.ts";

/** A value bound to a `?` placeholder. BLOBs are bytes; booleans are stored as 0 or 1. */
export type SqlValue = string | number | bigint | null | Uint8Array;

/** A result row: column name to value (text, number, null or bytes). */
export type Row = Record<string, unknown>;

/** Statements on one connection. */
export interface Sql {
  /** The first row of a query, or undefined. */
  get(sql: string, ...params: SqlValue[]): Row | undefined;
  /** Every row of a query. */
  all(sql: string, ...params: SqlValue[]): Row[];
  /** The rows of a query, one at a time (for long results). */
  iterate(sql: string, ...params: SqlValue[]): Iterable<Row>;
  /** Runs a change; returns the number of rows changed. */
  run(sql: string, ...params: SqlValue[]): number;
}

/** Statements inside a write transaction, and the audit append that goes with them. */
export interface WriteTx extends Sql {
  /**
   * Appends an entry to the hash-chained audit log in this transaction, so
   * a change and its entry commit together or not at all. Entries appended
   * in one transaction follow each other in the chain, each linked to the
   * one before. Refused once the transaction is over.
   * @throws {TypeError | RangeError} on a bad kind, data or time, or data
   *   shaped like a ticket secret or license key.
   * @throws {AuthorityError} `store_corrupt` when the log does not end at
   *   its recorded head.
   */
  audit(time: number, kind: string, data: Record<string, unknown>): AuditEntry;
}

/**
 * How durable a write's commit is. `full`: on disk when the write returns,
 * surviving a power cut. `routine`: survives a crash of the process, but a
 * power loss may drop the newest such commits (a consistent shorter state).
 */
export type Durability = "full" | "routine";

/** The transaction core an aggregate works through. */
export interface StoreCore {
  /** Single statements outside any transaction, each committing on its own. */
  readonly sql: Sql;
  /**
   * Runs `fn` in a read transaction: all its queries see one snapshot. Inside
   * an open transaction, `fn` simply joins it.
   */
  read<T>(fn: (tx: Sql) => T): T;
  /**
   * Runs `fn` in a write transaction that holds the write lock from its
   * first statement, so a check and the write that depends on it see no
   * other writer in between. Commits if `fn` returns, rolls back if it
   * throws. Inside an open transaction, `fn` simply joins it.
   */
  write<T>(fn: (tx: WriteTx) => T, durability?: Durability): T;
}
