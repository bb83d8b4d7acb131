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
 * One transaction at a time: node:sqlite answers synchronously, but a
 * transaction's function yields between statements (the interface is
 * asynchronous for the PostgreSQL core), so another request's code could run
 * on the same connection in between and join the open transaction. The core
 * therefore queues its transactions, and a single statement that arrives
 * while one is open waits for it. No I/O happens inside a transaction, so the
 * queue holds a transaction for microseconds.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { AuthorityError } from "../../src/errors.ts";
import { GENESIS_HASH } from "../audit.ts";
import { corrupt } from "./_util.ts";
import { AuditAppender } from "./audit_append.ts";
import type { Durability, ReadTx, Row, Sql, SqlValue, StoreCore, WriteTx } from "./store_core.ts";

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

/** `fn()` as a settled promise: resolved with its value or rejected with what it threw. */
function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (error) {
    return Promise.reject(error);
  }
}

/** {@link StoreCore} over one SQLite file, with its prepared statements cached. */
export class SqliteCore implements StoreCore {
  readonly engine = "sqlite" as const;
  #db: DatabaseSync;
  #statements = new Map<string, StatementSync>();
  #closed = false;
  /** Whether a transaction is open (its function is running). */
  #busy = false;
  /** The end of the queue of transactions (and statements waiting for one). */
  #tail: Promise<unknown> = Promise.resolve();
  /** Single statements outside any transaction (each its own implicit transaction). */
  readonly sql: Sql;

  private constructor(db: DatabaseSync) {
    this.#db = db;
    // A transaction open on this connection: wait for it, or the statement
    // would join it.
    const now = <T>(fn: () => T): Promise<T> =>
      this.#busy ? this.#exclusive(() => settle(fn)) : settle(fn);
    this.sql = Object.freeze(
      {
        get: (text, ...params) => now(() => this.#get(text, params)),
        all: (text, ...params) => now(() => this.#all(text, params)),
        run: (text, ...params) => now(() => this.#run(text, params)),
      } satisfies Sql,
    );
  }

  #get(text: string, params: SqlValue[]): Row | undefined {
    return this.#statement(text).get(...params) as Row | undefined;
  }

  #all(text: string, params: SqlValue[]): Row[] {
    return this.#statement(text).all(...params) as Row[];
  }

  #run(text: string, params: SqlValue[]): number {
    return Number(this.#statement(text).run(...params).changes);
  }

  /**
   * Opens (creating if needed) the store at `path`, creating the schema in
   * a new file and checking the version of an existing one.
   * @throws {AuthorityError} `store_permissions` when group or others may
   *   access the file, `store_corrupt` when it is not an authority store,
   *   `store_version` when a newer version wrote it.
   * @throws {RangeError} when `busyTimeoutMs` is not a non-negative integer.
   * @example
   * ```ts ignore
   * const core = await SqliteCore.open("/var/lib/nexus/authority.db");
   * const n = await core.read(async (tx) => (await tx.get("SELECT count(*) AS n FROM members"))?.n);
   * await core.close();
   * ```
   */
  static async open(path: string, options: SqliteCoreOptions = {}): Promise<SqliteCore> {
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
      await core.#migrate(path);
      return core;
    } catch (cause) {
      db.close();
      if (cause instanceof AuthorityError) throw cause;
      throw corrupt(`authority store ${path} is not usable`, cause);
    }
  }

  #migrate(path: string): Promise<void> {
    return this.write(async (tx) => {
      const tables = (await tx.all("SELECT name FROM sqlite_schema WHERE type = 'table'"))
        .map((row) => row.name as string);
      if (!tables.includes("schema_version")) {
        if (tables.length > 0) throw corrupt(`${path} is not an authority store`);
        this.#db.exec("CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT");
        this.#db.exec(SCHEMA);
        await tx.run("INSERT INTO schema_version (version) VALUES (?)", SCHEMA_VERSION);
        await tx.run("INSERT INTO audit_head (one, seq, hash) VALUES (1, 0, ?)", GENESIS_HASH);
        return;
      }
      const rows = await tx.all("SELECT version FROM schema_version");
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
        await tx.run("UPDATE schema_version SET version = ?", SCHEMA_VERSION);
      }
      // Earlier files index credentials by subject, which no query uses and
      // which cost every credential record a page write. Dropping an index
      // changes no table, so the version stays and older code still opens
      // the file.
      if (await tx.get(UNUSED_INDEX) !== undefined) {
        this.#db.exec("DROP INDEX credentials_by_subject");
      }
    });
  }

  /** Closes the file, after the transaction in progress. Later calls fail; closing twice is harmless. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#tail.catch(() => {});
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

  /** Runs `fn` after every transaction queued before it, alone on the connection. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = async () => {
      this.#busy = true;
      try {
        return await fn();
      } finally {
        this.#busy = false;
      }
    };
    const result = this.#tail.then(run, run);
    this.#tail = result.catch(() => {});
    return result;
  }

  /** Statements valid while `open()` says so: a `tx` kept past its transaction is refused. */
  #scoped(open: () => boolean): Sql {
    const guard = <T>(fn: () => T): Promise<T> => {
      if (!open()) return Promise.reject(new Error("this transaction is over"));
      return settle(fn);
    };
    return {
      get: (text, ...params) => guard(() => this.#get(text, params)),
      all: (text, ...params) => guard(() => this.#all(text, params)),
      run: (text, ...params) => guard(() => this.#run(text, params)),
    };
  }

  /** Runs `fn` in a read transaction: all its queries see one snapshot. */
  read<T>(fn: (tx: ReadTx) => Promise<T>): Promise<T> {
    return this.#exclusive(async () => {
      let open = true;
      const sql = this.#scoped(() => open);
      const statement = (text: string) => this.#statement(text);
      const tx: ReadTx = {
        ...sql,
        async *iterate(text: string, ...params: SqlValue[]): AsyncGenerator<Row> {
          if (!open) throw new Error("this transaction is over");
          for (const row of statement(text).iterate(...params)) yield row as Row;
        },
      };
      this.#db.exec("BEGIN");
      try {
        const result = await fn(tx);
        this.#db.exec("COMMIT");
        return result;
      } catch (error) {
        if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
        throw error;
      } finally {
        open = false;
      }
    });
  }

  /**
   * Runs `fn` in a `BEGIN IMMEDIATE` transaction, committing if it resolves
   * and rolling back if it rejects.
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
  write<T>(fn: (tx: WriteTx) => Promise<T>, durability: Durability = "full"): Promise<T> {
    return this.#exclusive(async () => {
      let open = true;
      const sql = this.#scoped(() => open);
      const appender = new AuditAppender(sql);
      const tx: WriteTx = {
        ...sql,
        audit: (time, kind, data) => appender.append(time, kind, data),
      };
      const routine = durability === "routine";
      if (routine) this.#db.exec("PRAGMA synchronous = NORMAL");
      try {
        this.#db.exec("BEGIN IMMEDIATE");
        try {
          const result = await fn(tx);
          await appender.finish();
          this.#db.exec("COMMIT");
          return result;
        } catch (error) {
          appender.abandon();
          if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
          throw error;
        }
      } finally {
        open = false;
        if (routine) this.#db.exec("PRAGMA synchronous = FULL");
      }
    });
  }
}
