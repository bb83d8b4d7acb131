/**
 * Moving an authority store from one engine to another (an existing SQLite
 * file into a new PostgreSQL database, when one authority becomes
 * replicas), with its audit chain intact and verified.
 *
 * Every table is copied row for row, in one write transaction of the
 * target: the audit log's entries keep their seq, time, data and hashes, so
 * the chain in the target is the same chain, and the head row moves with
 * it. The target must be an empty store (a new schema: no rows but the
 * genesis head), so a move never merges two histories. The source's chain
 * is verified first (a broken log is not moved); before the commit, the
 * copied chain must end at the source's head; after it, the target's chain
 * is verified end to end as any reader sees it, and one entry (`store.moved`) is appended to it,
 * linked to the copied head, naming the engine it came from and the head it
 * had there. The source is only read.
 *
 * @module
 */
import { AuthorityError } from "../../src/errors.ts";
import type { AuditHead } from "../audit.ts";
import { corrupt, marks } from "./_util.ts";
import { readAuditHead } from "./audit_append.ts";
import { AuditLog } from "./audit_log.ts";
import type { ReadTx, Row, SqlValue, StoreCore } from "./store_core.ts";

/** The tables, in an order that keeps every reference valid, with their columns. */
const TABLES: readonly { name: string; columns: readonly string[]; order: string }[] = [
  { name: "meta", columns: ["key", "value"], order: "key" },
  {
    name: "tickets",
    columns: ["id", "attributes", "created_at", "expires_at", "used_at", "used_by"],
    order: "id",
  },
  {
    name: "licenses",
    columns: ["id", "customer_id", "tier", "attributes", "created_at", "revoked_at"],
    order: "id",
  },
  {
    name: "members",
    columns: ["identifier", "attributes", "enrolled_at", "revoked_at", "via", "key"],
    order: "identifier",
  },
  {
    name: "credentials",
    columns: ["id", "subject", "issued_at", "expires_at", "refresh"],
    order: "id",
  },
  { name: "revocations", columns: ["target", "kind", "serial", "revoked_at"], order: "serial" },
  { name: "revocation_lists", columns: ["serial", "encoded", "saved_at"], order: "serial" },
  {
    name: "audit",
    columns: ["seq", "time", "kind", "data", "prev_hash", "hash"],
    order: "seq",
  },
];

/** What {@link moveStore} did. */
export interface MoveReport {
  /** Rows copied, by table. */
  rows: Record<string, number>;
  /** The audit head copied (the source's), before the `store.moved` entry. */
  head: AuditHead;
  /** The target's head after the `store.moved` entry. */
  movedHead: AuditHead;
}

/** A value as read from one engine, as the other binds it. */
function bindable(value: unknown): SqlValue {
  if (value === null || typeof value === "string" || typeof value === "number") return value;
  if (typeof value === "bigint" || value instanceof Uint8Array) return value;
  throw corrupt(`a stored value of type ${typeof value} cannot be moved`);
}

/**
 * Copies every row of `source` into the empty store `target`, verifying the
 * audit chain before and after the commit (see the module doc).
 * `progress` is called once per table copied.
 * @throws {AuthorityError} `state_exists` when the target holds data;
 *   `store_corrupt` when the source's chain does not verify, or the
 *   target's does not match it.
 * @example
 * ```ts ignore
 * const report = await moveStore(await SqliteCore.open(path), await PgCore.open(url));
 * console.log(report.rows.audit, report.head.hash);
 * ```
 */
export async function moveStore(
  source: StoreCore,
  target: StoreCore,
  progress: (table: string, rows: number) => void = () => {},
  now = Math.floor(Date.now() / 1000),
): Promise<MoveReport> {
  const rows: Record<string, number> = {};
  const before = await new AuditLog(source).verify();
  if (!before.ok) {
    throw corrupt(`the source's audit log does not verify (entry ${before.seq}: ${before.reason})`);
  }
  const head = await source.read(async (from) => {
    const sourceHead = await readAuditHead(from);
    await target.write(async (to) => {
      for (const table of TABLES) {
        const found = await to.get(`SELECT 1 AS one FROM ${table.name} LIMIT 1`);
        if (found !== undefined) {
          throw new AuthorityError(
            "state_exists",
            `the target store already holds ${table.name}: a move goes into an empty store only`,
          );
        }
      }
      const targetHead = await readAuditHead(to);
      if (targetHead.seq !== 0) {
        throw new AuthorityError("state_exists", "the target has an audit log");
      }
      for (const table of TABLES) {
        rows[table.name] = await copyTable(from, to, table);
        progress(table.name, rows[table.name]);
      }
      await to.run(
        "UPDATE audit_head SET seq = ?, hash = ? WHERE one = 1",
        sourceHead.seq,
        sourceHead.hash,
      );
      // The copied chain, inside the transaction: it must end at the source's head.
      const copied = await readAuditHead(to);
      if (copied.seq !== sourceHead.seq || copied.hash !== sourceHead.hash) {
        throw corrupt("the copied audit log does not end at the source's head");
      }
    });
    return sourceHead;
  });
  const after = await new AuditLog(target).verify();
  if (!after.ok || after.entries !== head.seq || after.head !== head.hash) {
    throw corrupt("the moved audit log does not verify as the source's chain");
  }
  const entry = await target.write((tx) =>
    tx.audit(now, "store.moved", { from: source.engine, seq: head.seq, head: head.hash })
  );
  return { rows, head, movedHead: { seq: entry.seq, hash: entry.hash } };
}

async function copyTable(
  from: ReadTx,
  to: { run(sql: string, ...params: SqlValue[]): Promise<number> },
  table: { name: string; columns: readonly string[]; order: string },
): Promise<number> {
  const list = table.columns.join(", ");
  const insert = `INSERT INTO ${table.name} (${list}) VALUES (${marks(table.columns)})`;
  let n = 0;
  for await (
    const row of from.iterate(`SELECT ${list} FROM ${table.name} ORDER BY ${table.order}`)
  ) {
    await to.run(insert, ...table.columns.map((column) => bindable((row as Row)[column])));
    n++;
  }
  return n;
}
