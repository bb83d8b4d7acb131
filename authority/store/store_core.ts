/**
 * What the authority store's aggregates (members, tickets, licenses, issued
 * credentials, revocations, the audit log, meta) need from a database, and
 * nothing more: queries, read and write transactions, and the audit append
 * that every write makes inside its transaction. Two cores implement it, one
 * conformance suite (`store_conformance.ts`) runs against both:
 *
 * - `sqlite_core.ts`, over node:sqlite: one file, embedded; the default for
 *   one authority and for the local stack;
 * - `pg_core.ts`, over PostgreSQL (`pg`): one database shared by any number
 *   of authority replicas.
 *
 * Everything engine-specific (connecting, the schema and its migrations,
 * how a write transaction excludes other writers, durability settings, file
 * modes) stays behind this interface.
 *
 * Asynchronous throughout: a database server answers over the network. The
 * SQLite core answers synchronously and wraps its results in settled
 * promises; it runs one transaction at a time per process (a queue), since a
 * transaction's function now yields between statements.
 *
 * Portability: the aggregates write plain SQL that SQLite and PostgreSQL
 * both accept (`?` placeholders, which the PostgreSQL core numbers as `$1`,
 * `$2`, ...; `ON CONFLICT ... DO UPDATE`; `coalesce`; `LIMIT ?` with a
 * non-negative count), and read rows as plain objects keyed by column name,
 * integers as numbers and bytes as `Uint8Array`.
 *
 * Writers: a write transaction excludes every other writer of the same
 * database, in this process or another, from its first statement to its
 * commit, so a check and the write that depends on it (a ticket is unused,
 * then it is marked used; the audit chain's head, then its next entry) see
 * no other writer in between. SQLite does it with `BEGIN IMMEDIATE`;
 * PostgreSQL by locking the audit head row (`SELECT ... FOR UPDATE`) first,
 * which every write needs anyway, since every write appends to the one
 * audit chain. Reads see one snapshot and block no writer.
 *
 * Batches: the service's credential records go through `group_commit.ts`,
 * which is written against this interface only: the records submitted
 * together share one `write` transaction, each checked and appended to the
 * audit log in turn, and a transaction that fails fails them all. While one
 * batch commits, the next one gathers.
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
  get(sql: string, ...params: SqlValue[]): Promise<Row | undefined>;
  /** Every row of a query. */
  all(sql: string, ...params: SqlValue[]): Promise<Row[]>;
  /** Runs a change; resolves to the number of rows changed. */
  run(sql: string, ...params: SqlValue[]): Promise<number>;
}

/** Statements inside a read transaction: one snapshot, and long results a page at a time. */
export interface ReadTx extends Sql {
  /**
   * The rows of a query, a page at a time (for long results: the whole
   * audit log), from the transaction's snapshot. Valid while the
   * transaction's function runs.
   */
  iterate(sql: string, ...params: SqlValue[]): AsyncIterable<Row>;
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
  audit(time: number, kind: string, data: Record<string, unknown>): Promise<AuditEntry>;
}

/**
 * How durable a write's commit is. `full`: on disk when the write returns,
 * surviving a power cut. `routine`: survives a crash of the process, but a
 * power loss may drop the newest such commits (a consistent shorter state).
 */
export type Durability = "full" | "routine";

/** The transaction core an aggregate works through. */
export interface StoreCore {
  /** Which engine: for messages and metrics only; the aggregates never branch on it. */
  readonly engine: "sqlite" | "postgres";
  /** Single statements outside any transaction, each committing on its own. */
  readonly sql: Sql;
  /** Runs `fn` in a read transaction: all its queries see one snapshot. */
  read<T>(fn: (tx: ReadTx) => Promise<T>): Promise<T>;
  /**
   * Runs `fn` in a write transaction that excludes every other writer from
   * its first statement (see the module's "Writers"). Commits if `fn`
   * resolves, rolls back if it rejects. Transactions do not nest: `fn`
   * passes its `tx` to what it calls.
   * @throws {AuthorityError} `store_unavailable` when the database cannot
   *   be reached or the commit's outcome is unknown.
   */
  write<T>(fn: (tx: WriteTx) => Promise<T>, durability?: Durability): Promise<T>;
  /** Closes the connections. Later calls fail; closing twice is harmless. */
  close(): Promise<void>;
}
