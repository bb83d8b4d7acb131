/**
 * The authority store's transaction core over PostgreSQL (`pg`): one
 * database shared by any number of authority replicas. It connects, creates
 * or checks the schema, runs the aggregates' statements and transactions,
 * and makes each write's audit append. The aggregates reach it only through
 * {@link StoreCore}.
 *
 * Why concurrent replicas are safe:
 *
 * - Writers: a write transaction's first statement (after `BEGIN`) is
 *   `SELECT ... FROM audit_head ... FOR UPDATE`. Every write takes that one
 *   row lock, held until its commit or rollback, so at most one write
 *   transaction of the whole database, across all replicas, is past its
 *   first statement at any time: the module rule "Writers" of
 *   `store_core.ts`. A check and the write that depends on it (a ticket is
 *   unused, then it is marked used) see no other writer in between.
 * - Writes run at READ COMMITTED, where every statement reads the newest
 *   committed data: once the lock is granted, the statements that follow see
 *   everything the previous holder committed (a REPEATABLE READ snapshot
 *   taken before the lock wait would not, and would fail or miss it). The
 *   head row itself is re-read at its newest version by `FOR UPDATE`.
 * - The audit head is checked against the last entry under the lock, so a
 *   log that does not end at its recorded head is never appended to.
 * - Reads run at REPEATABLE READ, READ ONLY: all their queries see one
 *   snapshot, and they take no lock that a writer waits for.
 *
 * Failures: a server that cannot be reached (refused, dropped, timed out,
 * shutting down) is an `AuthorityError` `store_unavailable`, with the `pg`
 * error as its cause. A connection that failed is discarded (not returned
 * to the pool), and the pool connects again on the next call, so the core
 * works again as soon as the server does, without being reopened. A
 * connection lost during `COMMIT` leaves the outcome unknown, and the
 * message says so.
 *
 * One difference from SQLite that the aggregates may meet: a statement
 * that fails aborts the whole PostgreSQL transaction, where SQLite's goes
 * on. A write whose function catches such an error and resolves is
 * therefore refused at its commit (which the server turns into a rollback),
 * never reported as done.
 *
 * Text is compared in byte order (`COLLATE "C"`), as SQLite compares it, so
 * `ORDER BY` on ids and names gives the same order on both engines whatever
 * the database's locale.
 *
 * @module
 */
import pg from "pg";
import { AuthorityError } from "../../src/errors.ts";
import { type Logger, silentLogger } from "../../src/log.ts";
import { GENESIS_HASH } from "../audit.ts";
import { corrupt } from "./_util.ts";
import { AuditAppender, checkAuditHead, LAST_AUDIT_ENTRY } from "./audit_append.ts";
import type { Durability, ReadTx, Row, Sql, SqlValue, StoreCore, WriteTx } from "./store_core.ts";

/** The version of the schema this code writes (the same numbering as `sqlite_core.ts`). */
export const SCHEMA_VERSION = 2;

/**
 * The transaction-level advisory lock taken while the schema is created or
 * checked, so that replicas starting at once do it one after the other:
 * "nexus-sc" as a signed 64-bit integer (`pg_leadership.ts` uses "nexus-rl").
 */
export const SCHEMA_LOCK_KEY = 0x6e65_7875_732d_7363n;

/**
 * What turns a database of schema version `n` into version `n + 1`, applied
 * in order inside the opening transaction (under the schema lock): an older
 * database is brought up to date, never rewritten. Empty so far: PostgreSQL
 * databases start at version 2 (SQLite's version 1 never existed here), and a
 * future version 3 adds `2: "ALTER TABLE ..."`, the same step as SQLite's.
 */
const MIGRATIONS: Readonly<Record<number, string>> = {};

/**
 * `sqlite_core.ts`'s schema, translated: INTEGER as BIGINT, BLOB as BYTEA,
 * the same CHECK constraints, and text compared byte by byte (see the
 * module comment).
 */
const SCHEMA = `
CREATE TABLE schema_version (version BIGINT NOT NULL);
CREATE TABLE meta (key TEXT COLLATE "C" PRIMARY KEY, value TEXT COLLATE "C" NOT NULL);
CREATE TABLE tickets (
  id TEXT COLLATE "C" PRIMARY KEY,
  attributes TEXT COLLATE "C" NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  used_at BIGINT,
  used_by TEXT COLLATE "C",
  CHECK ((used_at IS NULL) = (used_by IS NULL))
);
CREATE TABLE licenses (
  id TEXT COLLATE "C" PRIMARY KEY,
  customer_id TEXT COLLATE "C" NOT NULL,
  tier TEXT COLLATE "C" NOT NULL,
  attributes TEXT COLLATE "C" NOT NULL,
  created_at BIGINT NOT NULL,
  revoked_at BIGINT
);
CREATE TABLE members (
  identifier TEXT COLLATE "C" PRIMARY KEY,
  attributes TEXT COLLATE "C" NOT NULL,
  enrolled_at BIGINT NOT NULL,
  revoked_at BIGINT,
  via TEXT COLLATE "C" NOT NULL CHECK (via IN ('ticket', 'license', 'operator')),
  key BYTEA
);
CREATE TABLE credentials (
  id TEXT COLLATE "C" PRIMARY KEY,
  subject TEXT COLLATE "C" NOT NULL,
  issued_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  refresh BIGINT NOT NULL CHECK (refresh IN (0, 1))
);
CREATE TABLE revocations (
  target TEXT COLLATE "C" PRIMARY KEY,
  kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('identifier', 'credential')),
  serial BIGINT NOT NULL UNIQUE,
  revoked_at BIGINT NOT NULL
);
CREATE TABLE revocation_lists (
  serial BIGINT PRIMARY KEY,
  encoded BYTEA NOT NULL,
  saved_at BIGINT NOT NULL
);
CREATE TABLE audit (
  seq BIGINT PRIMARY KEY,
  time BIGINT NOT NULL,
  kind TEXT COLLATE "C" NOT NULL,
  data TEXT COLLATE "C" NOT NULL,
  prev_hash TEXT COLLATE "C" NOT NULL,
  hash TEXT COLLATE "C" NOT NULL
);
CREATE TABLE audit_head (
  one BIGINT PRIMARY KEY CHECK (one = 1),
  seq BIGINT NOT NULL,
  hash TEXT COLLATE "C" NOT NULL
);
`;

/** The relations (tables, views, foreign tables) where unqualified names resolve. */
const RELATIONS = `SELECT c.relname AS name FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f')`;

/**
 * The last entry, read in a write after the head row's lock is granted
 * (READ COMMITTED: a new snapshot per statement, so the previous writer's
 * entries are seen).
 */

/** Rows a cursor of {@link ReadTx.iterate} fetches per round trip. */
const PAGE = 500;

/** Options for {@link PgCore.open}. */
export interface PgCoreOptions {
  /** Most connections this core keeps to the server (default 10). */
  maxConnections?: number;
  /**
   * How long connecting, or waiting for a free connection of the pool, may
   * take, in ms (default 5,000): how long a call waits when the server is
   * down before it fails with `store_unavailable`.
   */
  connectTimeoutMs?: number;
  /**
   * The server cancels a statement that runs longer, in ms (default 30,000;
   * 0: no limit). It bounds a writer's wait for the head lock, and a session
   * idle inside a transaction for longer is ended by the server, so a
   * replica cut off mid-transaction does not hold the lock for the others.
   * A server that stops answering without closing the connection is given up
   * on after this plus `connectTimeoutMs`.
   */
  statementTimeoutMs?: number;
  /** Where lost connections are reported (default: nowhere). */
  log?: Logger;
}

/** Network errors (Node's `code`) that mean the server cannot be reached. */
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETUNREACH",
  "ENETDOWN",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/** `pg`'s own messages for a connection that failed or timed out. */
const PG_CONNECTION_MESSAGES =
  /^Connection terminated|timeout exceeded when trying to connect|Query read timeout|is not queryable/i;

/**
 * Whether `error` means the database cannot be used right now, rather than
 * that a statement is wrong: the network, `pg`'s connection timeouts, and
 * the server's SQLSTATEs for a lost or refused session (class 08), a
 * shutdown or cancellation (57P01-57P05, 57014: a statement timeout), too
 * many connections (53300), refused credentials (class 28) and a missing
 * database (3D000).
 */
function isUnreachable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string") {
    if (NETWORK_CODES.has(code)) return true;
    if (/^(08|28|57P)/.test(code) || ["57014", "53300", "3D000"].includes(code)) return true;
  }
  return PG_CONNECTION_MESSAGES.test(error.message);
}

/** PostgreSQL's type ids (`pg_type.oid`) of `int8`, `numeric` and `bytea`. */
const INT8 = 20;
const NUMERIC = 1700;
const BYTEA = 17;

/** BIGINT and NUMERIC values as numbers: every integer this store keeps is a safe integer. */
function parseInteger(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) {
    throw corrupt(`the authority database returned ${text}, not a safe integer`);
  }
  return value;
}

/** BYTEA as a plain Uint8Array (not a Buffer), from the server's hex output. */
function parseBytes(text: string): Uint8Array {
  if (text.startsWith("\\x")) return Uint8Array.fromHex(text.slice(2));
  // bytea_output = 'escape' (set by an operator): pg's parser knows it.
  const buffer = pg.types.getTypeParser(BYTEA, "text")(text) as Uint8Array;
  return new Uint8Array(buffer);
}

/**
 * This core's type parsers, given to its pool (and so to its clients only):
 * `pg.types.setTypeParser` would change every other `pg` user in the
 * process.
 */
const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") => {
    if (format !== "binary") {
      if (oid === INT8 || oid === NUMERIC) return parseInteger;
      if (oid === BYTEA) return parseBytes;
    }
    return pg.types.getTypeParser(oid, format ?? "text");
  }) as pg.CustomTypesConfig["getTypeParser"],
};

/** Translations of `?` placeholders, by SQL text (the aggregates' texts are few and fixed). */
const numbered = new Map<string, string>();
/** Dynamic texts could grow the cache without bound: the oldest go first. */
const NUMBERED_CACHE_SIZE = 1024;

/**
 * `sql` with its `?` placeholders numbered `$1`, `$2`, ... in order,
 * leaving alone quoted text, quoted identifiers, dollar-quoted text and
 * comments, where a `?` is literal. Exported for tests.
 */
export function numberPlaceholders(sql: string): string {
  const cached = numbered.get(sql);
  if (cached !== undefined) return cached;
  let out = "";
  let n = 0;
  let i = 0;
  while (i < sql.length) {
    const c = sql[i];
    if (c === "?") {
      out += `$${++n}`;
      i++;
      continue;
    }
    const end = skipLiteral(sql, i);
    out += sql.slice(i, end);
    i = end;
  }
  if (numbered.size >= NUMBERED_CACHE_SIZE) numbered.delete(numbered.keys().next().value!);
  numbered.set(sql, out);
  return out;
}

/** The index just past the literal or comment starting at `i`, or `i + 1` if none does. */
function skipLiteral(sql: string, i: number): number {
  const c = sql[i];
  const rest = (close: string, from: number) => {
    const end = sql.indexOf(close, from);
    return end === -1 ? sql.length : end + close.length;
  };
  if (c === "'") {
    // E'...' strings take backslash escapes; '' is a quote in every kind.
    const escapes = i > 0 && /[eE]/.test(sql[i - 1]) && !isWordChar(sql[i - 2]);
    let j = i + 1;
    while (j < sql.length) {
      if (escapes && sql[j] === "\\") j += 2;
      else if (sql[j] === "'" && sql[j + 1] === "'") j += 2;
      else if (sql[j] === "'") return j + 1;
      else j++;
    }
    return sql.length;
  }
  if (c === '"') {
    // "" inside a quoted identifier is a quote: two closings in a row go on.
    let j = i + 1;
    for (;;) {
      j = rest('"', j);
      if (sql[j] !== '"' || j >= sql.length) return j;
      j++;
    }
  }
  if (c === "-" && sql[i + 1] === "-") return rest("\n", i + 2);
  if (c === "/" && sql[i + 1] === "*") {
    // Block comments nest in PostgreSQL.
    let depth = 1;
    let j = i + 2;
    while (j < sql.length && depth > 0) {
      if (sql.startsWith("/*", j)) (depth++, j += 2);
      else if (sql.startsWith("*/", j)) (depth--, j += 2);
      else j++;
    }
    return j;
  }
  if (c === "$" && !isWordChar(sql[i - 1])) {
    // $tag$...$tag$, but not $1 (a numbered parameter) nor a$b (an identifier).
    const tag = /^\$([A-Za-z_\u0080-\uffff][\w\u0080-\uffff]*)?\$/.exec(sql.slice(i));
    if (tag !== null) return rest(tag[0], i + tag[0].length);
  }
  return i + 1;
}

function isWordChar(c: string | undefined): boolean {
  return c !== undefined && /[\w$\u0080-\uffff]/.test(c);
}

/** The target of a connection string, for messages: never its password. */
function describe(url: URL): string {
  const user = url.username === "" ? "" : `${decodeURIComponent(url.username)}@`;
  return `postgres://${user}${url.host}${url.pathname}`;
}

/** The URL's password as `pg` uses it (decoded), to keep it out of messages. */
function password(url: URL): string {
  try {
    return decodeURIComponent(url.password);
  } catch {
    return url.password;
  }
}

/** One connection taken from the pool, marked broken when it fails. */
class Lease {
  readonly client: pg.PoolClient;
  /** Why the connection cannot be used any more, once it failed. */
  #broken: Error | null = null;
  #released = false;
  /**
   * A connection that fails while checked out emits 'error' (the pool
   * listens only to idle ones); unhandled, the event would end the process.
   * Its queries are failed too, which is where the caller hears of it.
   */
  #onError = (error: Error) => {
    this.#broken ??= error;
  };

  constructor(client: pg.PoolClient) {
    this.client = client;
    client.on("error", this.#onError);
  }

  get broken(): boolean {
    return this.#broken !== null;
  }

  /** Runs one statement; a failure of the connection marks it broken. */
  async query(config: pg.QueryConfig): Promise<pg.QueryResult<Row>> {
    if (this.#broken !== null) throw this.#broken;
    try {
      return await this.client.query<Row>(config);
    } catch (error) {
      if (isUnreachable(error)) this.#broken ??= error as Error;
      throw error;
    }
  }

  /** Runs a script of several statements (simple protocol), returning each one's result. */
  async script(text: string): Promise<pg.QueryResult<Row>[]> {
    const result = await this.query({ text }) as unknown as
      | pg.QueryResult<Row>
      | pg.QueryResult<Row>[];
    return Array.isArray(result) ? result : [result];
  }

  /** Marks the connection broken: it is closed on release rather than reused. */
  discard(error: Error): void {
    this.#broken ??= error;
  }

  /** Returns the connection to the pool, which closes it if it is broken; once only. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.client.removeListener("error", this.#onError);
    this.client.release(this.#broken ?? undefined);
  }
}

/** `error` as thrown to callers: a connection failure as `store_unavailable`. */
function translate(error: unknown, redact: (text: string) => string): unknown {
  if (error instanceof AuthorityError || !isUnreachable(error)) return error;
  return new AuthorityError(
    "store_unavailable",
    `the authority database is unreachable: ${redact((error as Error).message)}`,
    { cause: error },
  );
}

/** Statement parameters for `pg`: bigints as their decimal text, bytes as they are. */
function values(params: readonly SqlValue[]): unknown[] {
  return params.map((value) => typeof value === "bigint" ? value.toString() : value);
}

/** {@link StoreCore} over a PostgreSQL database (see the module comment). */
export class PgCore implements StoreCore {
  readonly engine = "postgres" as const;
  /** Single statements outside any transaction, each committing on its own. */
  readonly sql: Sql;
  #pool: pg.Pool;
  #target: string;
  #password: string;
  #closing: Promise<void> | null = null;
  /** Names of server-side cursors, unique per core. */
  #cursors = 0;

  private constructor(pool: pg.Pool, target: string, password: string) {
    this.#pool = pool;
    this.#target = target;
    this.#password = password;
    this.sql = Object.freeze(
      {
        get: async (text, ...params) => (await this.#autocommit(text, params)).rows[0],
        all: async (text, ...params) => (await this.#autocommit(text, params)).rows,
        run: async (text, ...params) => (await this.#autocommit(text, params)).rowCount ?? 0,
      } satisfies Sql,
    );
  }

  /**
   * Connects to the database at `url` (`postgres://user[:password]@host:port/db`),
   * creating the schema in an empty database or checking (and migrating) an
   * existing one, under an advisory lock so that replicas starting at once
   * take turns.
   * @throws {AuthorityError} `store_unavailable` when the server cannot be
   *   reached, `store_corrupt` when the database holds other tables and no
   *   authority schema, or is not usable, `store_version` when a newer
   *   version wrote it.
   * @throws {TypeError} when `url` is not a postgres:// URL.
   * @throws {RangeError} on a bad option.
   * @example
   * ```ts ignore
   * const core = await PgCore.open("postgres://nexus@db.internal:5432/authority", {
   *   connectTimeoutMs: 2000,
   * });
   * try {
   *   const n = await core.read(async (tx) => (await tx.get("SELECT count(*) AS n FROM members"))?.n);
   * } finally {
   *   await core.close();
   * }
   * ```
   */
  static async open(url: string, options: PgCoreOptions = {}): Promise<PgCore> {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      // Not echoed: the text may hold a password.
      throw new TypeError("the authority database must be a postgres:// URL");
    }
    if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
      throw new TypeError("the authority database must be a postgres:// URL");
    }
    const max = options.maxConnections ?? 10;
    const connectTimeout = options.connectTimeoutMs ?? 5000;
    const statementTimeout = options.statementTimeoutMs ?? 30_000;
    if (!Number.isSafeInteger(max) || max < 1) {
      throw new RangeError("maxConnections must be a positive integer");
    }
    if (!Number.isSafeInteger(connectTimeout) || connectTimeout < 1) {
      throw new RangeError("connectTimeoutMs must be a positive integer");
    }
    if (!Number.isSafeInteger(statementTimeout) || statementTimeout < 0) {
      throw new RangeError("statementTimeoutMs must be a non-negative integer");
    }
    const log = options.log ?? silentLogger;
    const target = describe(parsed);
    const pool = new pg.Pool({
      connectionString: url,
      max,
      connectionTimeoutMillis: connectTimeout,
      // Sent at connection start: no round trip per transaction.
      statement_timeout: statementTimeout,
      idle_in_transaction_session_timeout: statementTimeout,
      // 0 is pg's "none".
      query_timeout: statementTimeout === 0 ? 0 : statementTimeout + connectTimeout,
      // A half-open connection (a peer gone without a FIN) is found out.
      keepAlive: true,
      application_name: "nexus-authority",
      types: TYPES,
    });
    // An idle connection that fails (the server restarts) is removed by the
    // pool, which then emits 'error': unhandled, that would end the process.
    pool.on("error", (error) => {
      log.warn("authority database connection lost", {
        database: target,
        reason: error.message,
      });
    });
    const core = new PgCore(pool, target, password(parsed));
    try {
      await core.#migrate();
      return core;
    } catch (error) {
      await core.close().catch(() => {});
      if (error instanceof AuthorityError) throw error;
      throw corrupt(
        `the authority database ${target} is not usable: ${
          core.#redact(error instanceof Error ? error.message : String(error))
        }`,
        error,
      );
    }
  }

  /** Creates or checks the schema in one transaction, under the schema lock. */
  async #migrate(): Promise<void> {
    const target = this.#target;
    // The lock waits for another replica's opening to commit: then its
    // schema is there to be checked, rather than created twice.
    const opening =
      `BEGIN ISOLATION LEVEL READ COMMITTED;SELECT pg_advisory_xact_lock(${SCHEMA_LOCK_KEY})`;
    await this.#transaction(opening, async (lease) => {
      const tables = (await lease.query({ text: RELATIONS })).rows.map((row) => String(row.name));
      if (!tables.includes("schema_version")) {
        if (tables.length > 0) {
          throw corrupt(`${target} is not an authority store: it has other tables`);
        }
        await lease.script(SCHEMA);
        await lease.query({
          text: "INSERT INTO schema_version (version) VALUES ($1)",
          values: [SCHEMA_VERSION],
        });
        await lease.query({
          text: "INSERT INTO audit_head (one, seq, hash) VALUES (1, 0, $1)",
          values: [GENESIS_HASH],
        });
      } else {
        const rows = (await lease.query({ text: "SELECT version FROM schema_version" })).rows;
        const version = rows.length === 1 ? rows[0].version : undefined;
        if (typeof version !== "number") throw corrupt(`${target}: no schema version`);
        if (version > SCHEMA_VERSION) {
          throw new AuthorityError(
            "store_version",
            `${target} has schema version ${version}; this authority knows ${SCHEMA_VERSION}`,
          );
        }
        for (let from = version; from < SCHEMA_VERSION; from++) {
          const step = MIGRATIONS[from];
          if (step === undefined) throw corrupt(`${target}: unknown schema version ${from}`);
          await lease.script(step);
        }
        if (version !== SCHEMA_VERSION) {
          await lease.query({
            text: "UPDATE schema_version SET version = $1",
            values: [SCHEMA_VERSION],
          });
        }
      }
      await this.#commit(lease);
    });
  }

  /** Ends the pool, after the transactions in progress. Later calls fail; closing twice is harmless. */
  close(): Promise<void> {
    this.#closing ??= this.#pool.end();
    return this.#closing;
  }

  /** `text` without this database's password, in case a message quotes it. */
  #redact(text: string): string {
    return this.#password === "" ? text : text.replaceAll(this.#password, "***");
  }

  /** A connection from the pool, watched for failures. */
  async #lease(): Promise<Lease> {
    if (this.#closing !== null) throw new Error("the authority store is closed");
    try {
      return new Lease(await this.#pool.connect());
    } catch (error) {
      throw translate(error, (text) => this.#redact(text));
    }
  }

  /**
   * Runs `opening` (when not null: the transaction's BEGIN and first
   * statements, as one script) and then `fn` with its results, on one
   * connection of the pool, which is then returned (or, when it failed,
   * closed), with failures of the connection as `store_unavailable`.
   *
   * A pooled connection may have died while idle without the pool hearing
   * of it yet (the server restarted, a firewall dropped it): when the
   * opening fails on the connection itself, before the server answered
   * anything, it is retried once on a new connection. Nothing of the
   * transaction can have happened: the server rolls back a transaction
   * whose connection is gone. Single statements are never retried (one may
   * have been made before its answer was lost).
   */
  async #transaction<T>(
    opening: string | null,
    fn: (lease: Lease, opened: pg.QueryResult<Row>[]) => Promise<T>,
  ): Promise<T> {
    let lease = await this.#lease();
    try {
      let opened: pg.QueryResult<Row>[] = [];
      if (opening !== null) {
        try {
          opened = await lease.script(opening);
        } catch (error) {
          // Not a server's answer, nor a wait that ran out (it would wait again).
          const dead = lease.broken && !(error instanceof pg.DatabaseError) &&
            !/timeout/i.test((error as Error).message);
          if (!dead) throw error;
          lease.release();
          lease = await this.#lease();
          opened = await lease.script(opening);
        }
      }
      return await fn(lease, opened);
    } catch (error) {
      // A rollback that failed leaves the session in an unknown state.
      if (!lease.broken && lease.client.getTransactionStatus() !== "I") {
        await lease.query({ text: "ROLLBACK" }).catch((cause) => lease.discard(cause));
      }
      throw translate(error, (text) => this.#redact(text));
    } finally {
      lease.release();
    }
  }

  /**
   * Commits, telling a failed commit from one whose outcome is unknown, and
   * one the server turned into a rollback (a statement failed and `fn`
   * caught its error: PostgreSQL aborts the whole transaction then).
   */
  async #commit(lease: Lease): Promise<void> {
    let result: pg.QueryResult<Row>;
    try {
      result = await lease.query({ text: "COMMIT" });
    } catch (error) {
      if (!isUnreachable(error)) throw error;
      throw new AuthorityError(
        "store_unavailable",
        "the authority database is unreachable: the connection failed during the commit, " +
          `so whether the write was committed is unknown: ${
            this.#redact((error as Error).message)
          }`,
        { cause: error },
      );
    }
    if (result.command !== "COMMIT") {
      throw new Error(
        "the transaction was rolled back: one of its statements failed (and its error was caught)",
      );
    }
  }

  /** One statement in autocommit mode, on a connection of its own. */
  #autocommit(text: string, params: readonly SqlValue[]): Promise<pg.QueryResult<Row>> {
    return this.#transaction(null, (lease) => lease.query(statement(text, params)));
  }

  /**
   * Statements on `lease` while `open()` says so: a `tx` kept past its
   * transaction is refused. Connection failures surface as
   * `store_unavailable` right away, so `fn` sees what the caller will.
   */
  #scoped(lease: Lease, open: () => boolean): Sql {
    const run = async (text: string, params: readonly SqlValue[]) => {
      if (!open()) throw new Error("this transaction is over");
      try {
        return await lease.query(statement(text, params));
      } catch (error) {
        throw translate(error, (message) => this.#redact(message));
      }
    };
    return {
      get: async (text, ...params) => (await run(text, params)).rows[0],
      all: async (text, ...params) => (await run(text, params)).rows,
      run: async (text, ...params) => (await run(text, params)).rowCount ?? 0,
    };
  }

  /**
   * Runs `fn` in a REPEATABLE READ, READ ONLY transaction: all its queries
   * see one snapshot (taken at its first query), and it blocks no writer.
   */
  read<T>(fn: (tx: ReadTx) => Promise<T>): Promise<T> {
    const opening = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
    return this.#transaction(opening, async (lease) => {
      let open = true;
      const sql = this.#scoped(lease, () => open);
      const nextCursor = () => `c${++this.#cursors}`;
      const tx: ReadTx = {
        ...sql,
        async *iterate(text: string, ...params: SqlValue[]): AsyncGenerator<Row> {
          // A server-side cursor in the transaction's snapshot: a page of
          // rows in memory at a time, however long the result.
          const name = nextCursor();
          await sql.run(`DECLARE ${name} NO SCROLL CURSOR FOR ${text}`, ...params);
          let done = false;
          try {
            for (;;) {
              const rows = await sql.all(`FETCH ${PAGE} FROM ${name}`);
              yield* rows;
              if (rows.length < PAGE) break;
            }
            done = true;
          } finally {
            // Also on an early `break`; after an error the transaction is
            // rolled back, which closes the cursor with it.
            if (open && (done || !lease.broken)) await sql.run(`CLOSE ${name}`).catch(() => {});
          }
        },
      };
      try {
        const result = await fn(tx);
        open = false;
        await this.#commit(lease);
        return result;
      } finally {
        open = false;
      }
    });
  }

  /**
   * Runs `fn` in a write transaction, after taking the audit head's row
   * lock (see the module comment): committing if it resolves and rolling
   * back if it rejects.
   *
   * `routine` durability commits with `synchronous_commit = off`: the
   * commit returns before the server has flushed it. That survives a crash
   * of the authority (the server has the commit) and never corrupts
   * anything, but a crash of the PostgreSQL server may lose the newest
   * such commits, a consistent shorter state (the head row moves with the
   * log). Used for the record of routine credential issuance, the one write
   * on the hot path. `full` leaves the server's own setting, which must be
   * `on` (the default) or stronger for an operator's action to be durable
   * when the command returns.
   */
  write<T>(fn: (tx: WriteTx) => Promise<T>, durability: Durability = "full"): Promise<T> {
    const opening = [
      // Explicit: a database default of REPEATABLE READ would keep the
      // snapshot taken before the lock wait (see the module comment).
      "BEGIN ISOLATION LEVEL READ COMMITTED",
      ...(durability === "routine" ? ["SET LOCAL synchronous_commit = off"] : []),
      // The lock: every other writer, of every replica, waits here until
      // this transaction ends.
      "SELECT seq, hash FROM audit_head WHERE one = 1 FOR UPDATE",
      // Read once the lock is granted: where the previous writer left the log.
      LAST_AUDIT_ENTRY,
    ].join(";");
    return this.#transaction(opening, async (lease, opened) => {
      /** running: `fn`'s statements allowed; finishing: only the appender's head write. */
      let state: "running" | "finishing" | "over" = "running";
      const sql = this.#scoped(lease, () => state === "running");
      const appender = new AuditAppender(this.#scoped(lease, () => state !== "over"));
      const tx: WriteTx = {
        ...sql,
        audit: (time, kind, data) => appender.append(time, kind, data),
      };
      try {
        const [recorded, last] = opened.slice(-2).map((result) => result.rows[0]);
        appender.startAt(checkAuditHead(recorded, last));
        const result = await fn(tx);
        state = "finishing";
        await appender.finish();
        state = "over";
        await this.#commit(lease);
        return result;
      } catch (error) {
        appender.abandon();
        throw error;
      } finally {
        state = "over";
      }
    });
  }
}

/** A statement of the aggregates: numbered placeholders, one statement only (extended protocol). */
function statement(text: string, params: readonly SqlValue[]): pg.QueryConfig {
  return {
    text: numberPlaceholders(text),
    values: values(params),
    queryMode: "extended",
  } as pg.QueryConfig;
}
