/**
 * Reading and verifying the authority store's hash-chained audit log
 * (`../audit.ts`). Entries are appended by the transaction core
 * (`WriteTx.audit` in `store_core.ts`), inside the write they record.
 *
 * @module
 */
import {
  type AuditEntry,
  type AuditHead,
  type AuditRow,
  type AuditVerification,
  decodeAuditRow,
  verifyChainAsync,
} from "../audit.ts";
import { corrupt, nowOr } from "./_util.ts";
import type { Row, StoreCore } from "./store_core.ts";

const HEAD = "SELECT seq, hash FROM audit_head WHERE one = 1";

function toAuditRow(row: Row): AuditRow {
  return {
    seq: row.seq as number,
    time: row.time as number,
    kind: row.kind as string,
    data: row.data as string,
    prevHash: row.prev_hash as string,
    hash: row.hash as string,
  };
}

async function* mapIterable<A, B>(items: AsyncIterable<A>, fn: (item: A) => B): AsyncGenerator<B> {
  for await (const item of items) yield fn(item);
}

/** The audit and audit_head tables, through a {@link StoreCore}. */
export class AuditLog {
  #core: StoreCore;

  /** The audit log kept through `core`. */
  constructor(core: StoreCore) {
    this.#core = core;
  }

  /**
   * Appends an entry in its own write transaction (see
   * `AuthorityStore.appendAudit`).
   * @throws {TypeError | RangeError} on a bad kind, data or time.
   * @throws {AuthorityError} `store_corrupt` when the log does not end at its recorded head.
   */
  async append(kind: string, data: Record<string, unknown>, now?: number): Promise<AuditEntry> {
    const time = nowOr(now);
    return await this.#core.write(async (tx) => await tx.audit(time, kind, data));
  }

  /**
   * The log's entries in order, as stored (not verified).
   * @throws {AuthorityError} `store_corrupt` when an entry's data is not a JSON object.
   */
  async entries(options: { afterSeq?: number; limit?: number } = {}): Promise<AuditEntry[]> {
    const { afterSeq = 0, limit } = options;
    if (!Number.isSafeInteger(afterSeq) || afterSeq < 0) {
      throw new RangeError("afterSeq must be a non-negative integer");
    }
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) {
      throw new RangeError("limit must be a non-negative integer");
    }
    // Two statements rather than an engine's "no limit" value (SQLite's
    // LIMIT -1), which PostgreSQL spells differently.
    const rows = limit === undefined
      ? await this.#core.sql.all("SELECT * FROM audit WHERE seq > ? ORDER BY seq", afterSeq)
      : await this.#core.sql.all(
        "SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
        afterSeq,
        limit,
      );
    return rows.map((row) => {
      try {
        return decodeAuditRow(toAuditRow(row));
      } catch (cause) {
        throw corrupt(`audit entry ${row.seq} is unreadable`, cause);
      }
    });
  }

  /**
   * The log's recorded head: seq 0 and 64 zeros when empty.
   * @throws {AuthorityError} `store_corrupt` when the head row is missing.
   */
  async head(): Promise<AuditHead> {
    const row = await this.#core.sql.get(HEAD);
    if (row === undefined) throw corrupt("the audit head is missing");
    return { seq: Number(row.seq), hash: row.hash as string };
  }

  /**
   * Verifies the whole log against the head recorded beside it and any
   * `checkpoints`. Reads one snapshot, so a concurrent append cannot make it fail.
   */
  verify(options: { checkpoints?: readonly AuditHead[] } = {}): Promise<AuditVerification> {
    return this.#core.read(async (tx) => {
      const head = await tx.get(HEAD);
      if (head === undefined) return { ok: false, seq: 1, reason: "the audit head is missing" };
      const rows = await tx.iterate("SELECT * FROM audit ORDER BY seq");
      return await verifyChainAsync(mapIterable(rows, toAuditRow), {
        head: { seq: Number(head.seq), hash: head.hash as string },
        checkpoints: options.checkpoints,
      });
    });
  }
}
