/**
 * The audit append both transaction cores make, engine-neutral: how a write
 * transaction finds the chain's head, checks it, and links the next entries.
 * Internal to `authority/store/`.
 *
 * The head row (`audit_head`) is kept beside the log and moves with it, so a
 * log cut short (a consistent but shorter chain) is detected: nothing is
 * appended to a log that does not end at its recorded head. The first append
 * of a transaction reads the head row and the last entry and checks that they
 * agree; later appends of the same transaction (a batch, `group_commit.ts`)
 * chain from the entry just appended, which the transaction's exclusion of
 * other writers keeps current. The entries and the head row are written
 * together, just before the commit ({@link AuditAppender.finish}): one
 * multi-row INSERT for a batch's entries, not one round trip each.
 *
 * @module
 */
import {
  type AuditEntry,
  type AuditHead,
  type AuditRow,
  decodeAuditRow,
  GENESIS_HASH,
  nextAuditRow,
} from "../audit.ts";
import { corrupt } from "./_util.ts";
import type { Row, Sql } from "./store_core.ts";

const INSERT_AUDIT = "INSERT INTO audit (seq, time, kind, data, prev_hash, hash) VALUES ";
const ROW_VALUES = "(?, ?, ?, ?, ?, ?)";
/** Entries per INSERT: 600 parameters, well under either engine's limit. */
const INSERT_ROWS = 100;
const SET_HEAD = "UPDATE audit_head SET seq = ?, hash = ? WHERE one = 1";

/** Anything that looks like a ticket secret or license key, anywhere in a text. */
const SECRET_LIKE = /nx[tl]_[A-Za-z0-9_-]{32}/;

/** The query of the log's last entry: with the head row, what {@link checkAuditHead} compares. */
export const LAST_AUDIT_ENTRY = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1";

/**
 * The head row (`recorded`) and the last entry (`last`, undefined for an
 * empty log), checked to agree: where the next entry links.
 * @throws {AuthorityError} `store_corrupt` when they differ.
 */
export function checkAuditHead(recorded: Row | undefined, last: Row | undefined): AuditHead {
  const end = last ?? { seq: 0, hash: GENESIS_HASH };
  if (
    recorded === undefined || Number(recorded.seq) !== Number(end.seq) ||
    recorded.hash !== end.hash
  ) {
    throw corrupt("the audit log does not end at its recorded head; run verifyAudit");
  }
  return { seq: Number(end.seq), hash: String(end.hash) };
}

/** The head row and the last entry read through `sql`, checked to agree. */
export async function readAuditHead(sql: Sql): Promise<AuditHead> {
  return checkAuditHead(
    await sql.get("SELECT seq, hash FROM audit_head WHERE one = 1"),
    await sql.get(LAST_AUDIT_ENTRY),
  );
}

/** The appends of one write transaction. */
export class AuditAppender {
  #sql: Sql;
  #head: AuditHead | null = null;
  #done = false;
  #reading: Promise<AuditHead> | null = null;
  /** Entries appended, not yet written. */
  #pending: AuditRow[] = [];

  /**
   * Appends through `sql`, the transaction's statements; the head is read
   * on the first append unless the transaction gave it ({@link startAt}).
   */
  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /** Starts from a head already read (and locked) by the transaction. */
  startAt(head: AuditHead): void {
    this.#head = head;
  }

  /** Appends one entry; see `WriteTx.audit`. */
  async append(time: number, kind: string, data: Record<string, unknown>): Promise<AuditEntry> {
    if (this.#done) throw new Error("an audit entry is appended inside a write transaction only");
    if (this.#head === null) {
      // One read for appends made together (not awaited in turn): after it,
      // each chains from the one before, synchronously.
      this.#reading ??= readAuditHead(this.#sql);
      const read = await this.#reading;
      this.#head ??= read;
    }
    const head = this.#head;
    const row = nextAuditRow(head, time, kind, data);
    // Secrets are returned once and stored only as their SHA-256: the log
    // must not keep a copy either.
    if (SECRET_LIKE.test(row.data)) {
      throw new TypeError("audit data must not contain a ticket secret or a license key");
    }
    // Written at the commit, all in one statement (finish): a batch of
    // credentials costs one round trip to the database for its entries,
    // not one each. Nothing reads the log inside a write transaction.
    this.#pending.push(row);
    this.#head = { seq: row.seq, hash: row.hash };
    return decodeAuditRow(row);
  }

  /**
   * Writes the entries appended (a multi-row INSERT per {@link INSERT_ROWS}
   * entries) and the head row; call just before the commit.
   */
  async finish(): Promise<void> {
    this.#done = true;
    const rows = this.#pending;
    this.#pending = [];
    for (let at = 0; at < rows.length; at += INSERT_ROWS) {
      const chunk = rows.slice(at, at + INSERT_ROWS);
      await this.#sql.run(
        INSERT_AUDIT + chunk.map(() => ROW_VALUES).join(", "),
        ...chunk.flatMap((row) => [row.seq, row.time, row.kind, row.data, row.prevHash, row.hash]),
      );
    }
    if (rows.length > 0 && this.#head !== null) {
      await this.#sql.run(SET_HEAD, this.#head.seq, this.#head.hash);
    }
  }

  /** Ends without writing (rollback). */
  abandon(): void {
    this.#done = true;
  }
}
