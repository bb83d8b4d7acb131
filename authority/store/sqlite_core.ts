/**
 * The authority store's transaction core over one SQLite file (node:sqlite):
 * opening it, its schema and version, file permissions, transactions and the
 * audit append. The aggregates reach it only through {@link StoreCore}.
 *
 * Sharing: the file is in WAL mode with a busy timeout, so the service and
 * an operator's CLI process can use it at the same time. Every change runs
 * in a `BEGIN IMMEDIATE` transaction, which takes the write lock before the
 * first read: a check and the write that depends on it (a ticket is unused,
 * then it is marked used; the last audit entry, then the next one) see no
 * other writer in between, in this process or another. A change and its
 * audit entry commit together or not at all.
 *
 * The file is created with mode 0600, and a file that group or others may
 * access is refused, as key files are (`src/identity/key_file.ts`). SQLite
 * creates its `-wal` and `-shm` files with the database file's mode.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { AuthorityError } from "../../src/errors.ts";
import {
  type AuditEntry,
  type AuditHead,
  decodeAuditRow,
  GENESIS_HASH,
  nextAuditRow,
} from "../audit.ts";
import { corrupt } from "./_util.ts";
import type { Durability, Row, Sql, StoreCore, WriteTx } from "./store_core.ts";

/** The version of the schema this code writes. */
export const SCHEMA_VERSION = 2;

/**
 * What turns a store of version `n` into version `n + 1`, applied in
 * order inside the opening transaction: an older file is brought up to
 * date, never rewritten.
 */
const MIGRATIONS: Readonly<Record<number, string>> = {
  // 2: the member's current primary key, so that an older prefix of its
  // history is refused after a rotation (null until its next request).
  1: "ALTER TABLE members ADD COLUMN key BLOB",
};

const UNUSED_INDEX =
  "SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = 'credentials_by_subject'";
const INSERT_AUDIT =
  "INSERT INTO audit (seq, time, kind, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)";
const SET_HEAD = "UPDATE audit_head SET seq = ?, hash = ? WHERE one = 1";

/** Anything that looks like a ticket secret or license key, anywhere in a text. */
const SECRET_LIKE = /nx[tl]_[A-Za-z0-9_-]{32}/;

const SCHEMA = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE tickets (
  id TEXT PRIMARY KEY,
  attributes TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at INTEGER,
  used_by TEXT,
  CHECK ((used_at IS NULL) = (used_by IS NULL))
) STRICT;
CREATE TABLE licenses (
  id TEXT PRIMARY KEY,
  customer_id TEXT NOT NULL,
  tier TEXT NOT NULL,
  attributes TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
) STRICT;
CREATE TABLE members (
  identifier TEXT PRIMARY KEY,
  attributes TEXT NOT NULL,
  enrolled_at INTEGER NOT NULL,
  revoked_at INTEGER,
  via TEXT NOT NULL CHECK (via IN ('ticket', 'license', 'operator')),
  key BLOB
) STRICT;
CREATE TABLE credentials (
  id TEXT PRIMARY KEY,
  subject TEXT NOT NULL,
  issued_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  refresh INTEGER NOT NULL CHECK (refresh IN (0, 1))
) STRICT;
CREATE TABLE revocations (
  target TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('identifier', 'credential')),
  serial INTEGER NOT NULL UNIQUE,
  revoked_at INTEGER NOT NULL
) STRICT;
CREATE TABLE revocation_lists (
  serial INTEGER PRIMARY KEY,
  encoded BLOB NOT NULL,
  saved_at INTEGER NOT NULL
) STRICT;
CREATE TABLE audit (
  seq INTEGER PRIMARY KEY,
  time INTEGER NOT NULL,
  kind TEXT NOT NULL,
  data TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
) STRICT;
CREATE TABLE audit_head (
  one INTEGER PRIMARY KEY CHECK (one = 1),
  seq INTEGER NOT NULL,
  hash TEXT NOT NULL
) STRICT;
`;

/** Options for {@link SqliteCore.open}. */
export interface SqliteCoreOptions {
  /** How long to wait for another connection's write lock, in ms (default 5000). */
  busyTimeoutMs?: number;
}

/**
 * Creates `path` with mode 0600 if it does not exist, and refuses it when
 * group or others have any access.
 */
function prepareFile(path: string): void {
  try {
    Deno.openSync(path, { write: true, createNew: true, mode: 0o600 }).close();
    // The mode given at creation is filtered by the umask; set it exactly.
    Deno.chmodSync(path, 0o600);
  } catch (cause) {
    if (!(cause instanceof Deno.errors.AlreadyExists)) throw cause;
  }
  const info = Deno.statSync(path);
  if (!info.isFile) throw new TypeError(`authority store ${path} is not a regular file`);
  if (info.mode !== null && (info.mode & 0o077) !== 0) {
    throw new AuthorityError(
      "store_permissions",
      `authority store ${path} has mode ${
        (info.mode & 0o777).toString(8)
      }; group and others must have no access (chmod 600)`,
    );
  }
}

/** {@link StoreCore} over one SQLite file, with its prepared statements cached. */
export class SqliteCore implements StoreCore {
  #db: DatabaseSync;
  #statements = new Map<string, StatementSync>();
  #closed = false;
  #tx: WriteTx;
  /** The audit chain's head as this transaction left it, once it appended (else null). */
  #head: AuditHead | null = null;
  /** Single statements outside any transaction (each its own implicit transaction). */
  readonly sql: Sql;

  private constructor(db: DatabaseSync) {
    this.#db = db;
    const sql: Sql = {
      get: (text, ...params) => this.#statement(text).get(...params) as Row | undefined,
      all: (text, ...params) => this.#statement(text).all(...params) as Row[],
      iterate: (text, ...params) => this.#statement(text).iterate(...params) as Iterable<Row>,
      run: (text, ...params) => Number(this.#statement(text).run(...params).changes),
    };
    this.sql = Object.freeze(sql);
    this.#tx = Object.freeze({
      ...sql,
      audit: (time: number, kind: string, data: Record<string, unknown>) =>
        this.#audit(time, kind, data),
    });
  }

  /**
   * Opens (creating if needed) the store at `path`, creating the schema in
   * a new file and checking the version of an existing one.
   * @throws {AuthorityError} `store_permissions` when group or others may
   *   access the file, `store_corrupt` when it is not an authority store,
   *   `store_version` when a newer version wrote it.
   * @throws {RangeError} when `busyTimeoutMs` is not a non-negative integer.
   */
  static open(path: string, options: SqliteCoreOptions = {}): SqliteCore {
    const timeout = options.busyTimeoutMs ?? 5000;
    if (!Number.isSafeInteger(timeout) || timeout < 0) {
      throw new RangeError("busyTimeoutMs must be a non-negative integer");
    }
    prepareFile(path);
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path);
    } catch (cause) {
      throw corrupt(`cannot open authority store ${path}`, cause);
    }
    try {
      // busy_timeout first: switching to WAL and creating the schema may
      // wait for a process that opened the same new file a moment earlier.
      db.exec(`PRAGMA busy_timeout = ${timeout}`);
      // A crafted file must not run code through triggers or views.
      db.exec("PRAGMA trusted_schema = OFF");
      const mode = db.prepare("PRAGMA journal_mode = WAL").get() as Row | undefined;
      if (mode?.journal_mode !== "wal") {
        throw corrupt(`authority store ${path}: cannot use WAL mode`);
      }
      // FULL: a committed issuance or revocation survives a power cut.
      db.exec("PRAGMA synchronous = FULL");
      const core = new SqliteCore(db);
      core.#migrate(path);
      return core;
    } catch (cause) {
      db.close();
      if (cause instanceof AuthorityError) throw cause;
      throw corrupt(`authority store ${path} is not usable`, cause);
    }
  }

  #migrate(path: string): void {
    this.write((tx) => {
      const tables = tx.all("SELECT name FROM sqlite_schema WHERE type = 'table'")
        .map((row) => row.name as string);
      if (!tables.includes("schema_version")) {
        if (tables.length > 0) throw corrupt(`${path} is not an authority store`);
        this.#db.exec("CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT");
        this.#db.exec(SCHEMA);
        tx.run("INSERT INTO schema_version (version) VALUES (?)", SCHEMA_VERSION);
        tx.run("INSERT INTO audit_head (one, seq, hash) VALUES (1, 0, ?)", GENESIS_HASH);
        return;
      }
      const rows = tx.all("SELECT version FROM schema_version");
      const version = rows.length === 1 ? rows[0].version : undefined;
      if (typeof version !== "number") throw corrupt(`${path}: no schema version`);
      if (version > SCHEMA_VERSION) {
        throw new AuthorityError(
          "store_version",
          `${path} has schema version ${version}; this authority knows ${SCHEMA_VERSION}`,
        );
      }
      for (let from = version; from < SCHEMA_VERSION; from++) {
        const step = MIGRATIONS[from];
        if (step === undefined) throw corrupt(`${path}: unknown schema version ${from}`);
        this.#db.exec(step);
      }
      if (version !== SCHEMA_VERSION) {
        tx.run("UPDATE schema_version SET version = ?", SCHEMA_VERSION);
      }
      // Earlier files index credentials by subject, which no query uses and
      // which cost every credential record a page write. Dropping an index
      // changes no table, so the version stays and older code still opens
      // the file.
      if (tx.get(UNUSED_INDEX) !== undefined) {
        this.#db.exec("DROP INDEX credentials_by_subject");
      }
    });
  }

  /** Closes the file. Later calls fail; closing twice is harmless. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#statements.clear();
    this.#db.close();
  }

  #statement(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  /** Runs `fn` in a read transaction: all its queries see one snapshot. */
  read<T>(fn: (tx: Sql) => T): T {
    return this.#transaction("BEGIN", () => fn(this.sql));
  }

  /**
   * Runs `fn` in a `BEGIN IMMEDIATE` transaction (or in the caller's, when
   * one is open), committing if it returns and rolling back if it throws.
   *
   * With `routine` durability it commits with `synchronous = NORMAL`: in
   * WAL mode that is safe against a crash of the process (nothing is
   * corrupted or half-written) but a power loss may drop the newest such
   * commits. Used for the record of routine credential issuance, the one
   * write on the hot path (an fsync per credential held issuance to about
   * 300 per second); tickets, enrollments, licenses and revocations keep
   * `FULL`, so an operator's action is on disk when the command returns.
   * A dropped tail is a consistent shorter log: the head row moves with it.
   */
  write<T>(fn: (tx: WriteTx) => T, durability: Durability = "full"): T {
    const run = () => fn(this.#tx);
    if (durability === "full" || this.#db.isTransaction) {
      return this.#transaction("BEGIN IMMEDIATE", run);
    }
    this.#db.exec("PRAGMA synchronous = NORMAL");
    try {
      return this.#transaction("BEGIN IMMEDIATE", run);
    } finally {
      this.#db.exec("PRAGMA synchronous = FULL");
    }
  }

  #transaction<T>(begin: string, fn: () => T): T {
    if (this.#db.isTransaction) return fn();
    this.#db.exec(begin);
    try {
      const result = fn();
      const head = this.#head;
      if (head !== null) {
        this.#statement(SET_HEAD).run(head.seq, head.hash);
      }
      this.#db.exec("COMMIT");
      return result;
    } catch (error) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw error;
    } finally {
      this.#head = null;
    }
  }

  /**
   * The audit append, inside the caller's write transaction. The head row
   * (`audit_head`) is kept beside the log and moves with it, so a log cut
   * short (a consistent but shorter chain) is detected: nothing is appended
   * to a log that does not end at its recorded head.
   *
   * The first append of a transaction reads the head row and the last
   * entry and checks that they agree; later appends of the same transaction
   * (a batch, `group_commit.ts`) chain from the entry just written, which
   * the write lock keeps current, and the head row is written once, just
   * before the commit. Each entry is still linked to the one before it.
   */
  #audit(time: number, kind: string, data: Record<string, unknown>): AuditEntry {
    if (!this.#db.isTransaction) {
      throw new Error("an audit entry is appended inside a write transaction only");
    }
    let head = this.#head;
    if (head === null) {
      const sql = this.sql;
      const recorded = sql.get("SELECT seq, hash FROM audit_head WHERE one = 1");
      const last = sql.get("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1") ??
        { seq: 0, hash: GENESIS_HASH };
      if (recorded === undefined || recorded.seq !== last.seq || recorded.hash !== last.hash) {
        throw corrupt("the audit log does not end at its recorded head; run verifyAudit");
      }
      head = { seq: last.seq as number, hash: last.hash as string };
    }
    const row = nextAuditRow(head, time, kind, data);
    // Secrets are returned once and stored only as their SHA-256: the log
    // must not keep a copy either.
    if (SECRET_LIKE.test(row.data)) {
      throw new TypeError("audit data must not contain a ticket secret or a license key");
    }
    this.#statement(INSERT_AUDIT).run(
      row.seq,
      row.time,
      row.kind,
      row.data,
      row.prevHash,
      row.hash,
    );
    this.#head = { seq: row.seq, hash: row.hash };
    return decodeAuditRow(row);
  }
}
