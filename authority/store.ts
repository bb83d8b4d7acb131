/**
 * The credential authority's embedded state (DESIGN.md §8): members,
 * enrollment tickets, license keys, issued credentials, revocations, signed
 * revocation lists, a small key/value table and the hash-chained audit log
 * (`audit.ts`), in one SQLite file (node:sqlite).
 *
 * Sharing: the file is in WAL mode with a busy timeout, so the service and
 * an operator's CLI process can use it at the same time. Every change runs
 * in a `BEGIN IMMEDIATE` transaction, which takes the write lock before the
 * first read: a check and the write that depends on it (a ticket is unused,
 * then it is marked used; the last audit entry, then the next one) see no
 * other writer in between, in this process or another. A change and its
 * audit entry commit together or not at all.
 *
 * Secrets: ticket secrets and license keys are returned once and never
 * stored; the store keeps their SHA-256 (hex), which is also their id in
 * the audit log. They are 256 and 192 random bits, so the hash cannot be
 * reversed by search, and looking one up by its hash leaks nothing useful
 * through timing. {@link AuthorityStore.appendAudit} refuses data that
 * contains anything shaped like a secret or key.
 *
 * The file is created with mode 0600, and a file that group or others may
 * access is refused, as key files are (`src/identity/key_file.ts`). SQLite
 * creates its `-wal` and `-shm` files with the database file's mode.
 *
 * @module
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { type Attributes, normalizeAttributes } from "../src/credential/attributes.ts";
import { decodeRevocationList } from "../src/credential/revocation.ts";
import { randomBytes, sha256 } from "../src/crypto/hash.ts";
import { toHex } from "../src/encoding/hex.ts";
import { AuthorityError } from "../src/errors.ts";
import { isIdentifier } from "../src/identity/change_history.ts";
import {
  type AuditEntry,
  type AuditHead,
  type AuditRow,
  type AuditVerification,
  canonicalJson,
  decodeAuditRow,
  GENESIS_HASH,
  nextAuditRow,
  verifyChain,
} from "./audit.ts";

export type { AuditEntry, AuditHead, AuditVerification } from "./audit.ts";

/** A one-time enrollment ticket. The secret itself is never stored. */
export interface TicketRecord {
  /** Hex SHA-256 of the secret's UTF-8 text. */
  id: string;
  attributes: Attributes;
  createdAt: number;
  expiresAt: number;
  usedAt: number | null;
  usedBy: string | null;
}

/** An enrolled identity. Revoked members stay, with `revokedAt` set. */
export interface Member {
  identifier: string;
  attributes: Attributes;
  /** When the identifier first became a member. */
  enrolledAt: number;
  revokedAt: number | null;
  /** How the current attributes were granted. */
  via: "ticket" | "license" | "operator";
}

/** The complete revocation state; `serial` grows by one per revocation. */
export interface RevocationState {
  serial: number;
  /** Revoked credential ids (32 hex digits), sorted. */
  credentialIds: string[];
  /** Revoked identifiers, sorted. */
  identifiers: string[];
}

/** Options for {@link AuthorityStore.open}. */
export interface AuthorityStoreOptions {
  /** How long to wait for another connection's write lock, in ms (default 5000). */
  busyTimeoutMs?: number;
}

/** The version of the schema this code writes. */
export const SCHEMA_VERSION = 1;

/** Prefix of ticket secrets. */
export const TICKET_PREFIX = "nxt_";
/** Prefix of license keys. */
export const LICENSE_PREFIX = "nxl_";

const TICKET_SECRET = /^nxt_[A-Za-z0-9_-]{43}$/;
const LICENSE_KEY = /^nxl_[A-Za-z0-9_-]{32}$/;
/** Anything that looks like a secret or key, anywhere in a text. */
const SECRET_LIKE = /nx[tl]_[A-Za-z0-9_-]{32}/;
const HASH_ID = /^[0-9a-f]{64}$/;
const CREDENTIAL_ID = /^[0-9a-f]{32}$/;
const VIAS: readonly Member["via"][] = ["ticket", "license", "operator"];
const encoder = new TextEncoder();

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
  via TEXT NOT NULL CHECK (via IN ('ticket', 'license', 'operator'))
) STRICT;
CREATE TABLE credentials (
  id TEXT PRIMARY KEY,
  subject TEXT NOT NULL,
  issued_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  refresh INTEGER NOT NULL CHECK (refresh IN (0, 1))
) STRICT;
CREATE INDEX credentials_by_subject ON credentials (subject);
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

type Row = Record<string, unknown>;

function nowOr(now: number | undefined, what = "now"): number {
  const value = now ?? Math.floor(Date.now() / 1000);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${what} must be a non-negative safe integer (Unix seconds)`);
  }
  return value;
}

function hashId(text: string): string {
  return toHex(sha256(encoder.encode(text)));
}

/** `prefix` + base64url of `length` fresh random bytes; the bytes are wiped after. */
function randomToken(prefix: string, length: number): string {
  const bytes = randomBytes(length);
  try {
    return prefix + bytes.toBase64({ alphabet: "base64url", omitPadding: true });
  } finally {
    bytes.fill(0);
  }
}

function checkIdentifier(identifier: string): void {
  if (typeof identifier !== "string" || !isIdentifier(identifier)) {
    throw new TypeError(`not an identifier: expected "I" followed by 64 lowercase hex digits`);
  }
}

function checkText(value: string, what: string): void {
  if (typeof value !== "string" || value.length === 0) {
    throw new TypeError(`${what} must be a non-empty string`);
  }
}

function corrupt(message: string, cause?: unknown): AuthorityError {
  return new AuthorityError("store_corrupt", message, cause === undefined ? undefined : { cause });
}

/** Stored attributes: canonical JSON, so equal attributes have equal text. */
function attributesText(attributes: Attributes): string {
  return canonicalJson(attributes);
}

function readAttributes(text: unknown, where: string): Attributes {
  try {
    return normalizeAttributes(JSON.parse(String(text)));
  } catch (cause) {
    throw corrupt(`${where}: stored attributes are invalid`, cause);
  }
}

function toMember(row: Row): Member {
  const via = row.via as Member["via"];
  if (!VIAS.includes(via)) throw corrupt(`member ${row.identifier}: unknown via`);
  return {
    identifier: row.identifier as string,
    attributes: readAttributes(row.attributes, `member ${row.identifier}`),
    enrolledAt: row.enrolled_at as number,
    revokedAt: row.revoked_at as number | null,
    via,
  };
}

function toTicket(row: Row): TicketRecord {
  return {
    id: row.id as string,
    attributes: readAttributes(row.attributes, `ticket ${row.id}`),
    createdAt: row.created_at as number,
    expiresAt: row.expires_at as number,
    usedAt: row.used_at as number | null,
    usedBy: row.used_by as string | null,
  };
}

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

/** The authority's state in one SQLite file. */
export class AuthorityStore {
  #db: DatabaseSync;
  #statements = new Map<string, StatementSync>();
  #closed = false;

  private constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /**
   * Opens (creating if needed) the store at `path`.
   * @throws {AuthorityError} `store_permissions` when group or others may
   *   access the file, `store_corrupt` when it is not an authority store,
   *   `store_version` when a newer version wrote it.
   */
  static open(path: string, options: AuthorityStoreOptions = {}): AuthorityStore {
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
      const store = new AuthorityStore(db);
      store.#migrate(path);
      return store;
    } catch (cause) {
      db.close();
      if (cause instanceof AuthorityError) throw cause;
      throw corrupt(`authority store ${path} is not usable`, cause);
    }
  }

  #migrate(path: string): void {
    this.#write(() => {
      const tables = this.#all("SELECT name FROM sqlite_schema WHERE type = 'table'")
        .map((row) => row.name as string);
      if (!tables.includes("schema_version")) {
        if (tables.length > 0) throw corrupt(`${path} is not an authority store`);
        this.#db.exec("CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT");
        this.#db.exec(SCHEMA);
        this.#run("INSERT INTO schema_version (version) VALUES (?)", SCHEMA_VERSION);
        this.#run("INSERT INTO audit_head (one, seq, hash) VALUES (1, 0, ?)", GENESIS_HASH);
        return;
      }
      const rows = this.#all("SELECT version FROM schema_version");
      const version = rows.length === 1 ? rows[0].version : undefined;
      if (typeof version !== "number") throw corrupt(`${path}: no schema version`);
      if (version > SCHEMA_VERSION) {
        throw new AuthorityError(
          "store_version",
          `${path} has schema version ${version}; this authority knows ${SCHEMA_VERSION}`,
        );
      }
      if (version !== SCHEMA_VERSION) throw corrupt(`${path}: unknown schema version ${version}`);
    });
  }

  /** Closes the file. Later calls fail; closing twice is harmless. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#statements.clear();
    this.#db.close();
  }

  // -------------------------------------------------------------------------
  // SQL helpers

  #statement(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  #get(sql: string, ...params: SQLInputValue[]): Row | undefined {
    return this.#statement(sql).get(...params) as Row | undefined;
  }

  #all(sql: string, ...params: SQLInputValue[]): Row[] {
    return this.#statement(sql).all(...params) as Row[];
  }

  #run(sql: string, ...params: SQLInputValue[]): number {
    return Number(this.#statement(sql).run(...params).changes);
  }

  /**
   * Runs `fn` in a `BEGIN IMMEDIATE` transaction (or in the caller's, when
   * one is open), committing if it returns and rolling back if it throws.
   */
  #write<T>(fn: () => T): T {
    return this.#transaction("BEGIN IMMEDIATE", fn);
  }

  /**
   * Runs `fn` like {@link #write}, but commits with `synchronous = NORMAL`:
   * in WAL mode that is safe against a crash of the process (nothing is
   * corrupted or half-written) but a power loss may drop the newest such
   * commits. Used for the record of routine credential issuance, the one
   * write on the hot path (an fsync per credential held issuance to about
   * 300 per second); tickets, enrollments, licenses and revocations keep
   * `FULL`, so an operator's action is on disk when the command returns.
   * A dropped tail is a consistent shorter log: the head row moves with it.
   */
  #routineWrite<T>(fn: () => T): T {
    if (this.#db.isTransaction) return fn();
    this.#db.exec("PRAGMA synchronous = NORMAL");
    try {
      return this.#write(fn);
    } finally {
      this.#db.exec("PRAGMA synchronous = FULL");
    }
  }

  /** Runs `fn` in a read transaction: all its queries see one snapshot. */
  #read<T>(fn: () => T): T {
    return this.#transaction("BEGIN", fn);
  }

  #transaction<T>(begin: string, fn: () => T): T {
    if (this.#db.isTransaction) return fn();
    this.#db.exec(begin);
    try {
      const result = fn();
      this.#db.exec("COMMIT");
      return result;
    } catch (error) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  // -------------------------------------------------------------------------
  // Tickets

  /**
   * Creates a one-time ticket granting `attributes`, valid for `ttlSeconds`.
   * The secret is returned here and only here.
   * @throws {CredentialError} `bad_attributes`
   * @throws {RangeError} when `ttlSeconds` is not a positive integer.
   */
  createTicket(
    o: { attributes: Record<string, unknown>; ttlSeconds: number; now?: number },
  ): { secret: string; ticket: TicketRecord } {
    const now = nowOr(o.now);
    if (!Number.isSafeInteger(o.ttlSeconds) || o.ttlSeconds <= 0) {
      throw new RangeError("ttlSeconds must be a positive integer");
    }
    const attributes = normalizeAttributes(o.attributes);
    const secret = randomToken(TICKET_PREFIX, 32);
    const ticket: TicketRecord = {
      id: hashId(secret),
      attributes,
      createdAt: now,
      expiresAt: now + o.ttlSeconds,
      usedAt: null,
      usedBy: null,
    };
    this.#write(() => {
      this.#run(
        "INSERT INTO tickets (id, attributes, created_at, expires_at) VALUES (?, ?, ?, ?)",
        ticket.id,
        attributesText(attributes),
        now,
        ticket.expiresAt,
      );
      this.#audit(now, "ticket.create", {
        ticket: ticket.id,
        attributes,
        expires_at: ticket.expiresAt,
      });
    });
    return { secret, ticket };
  }

  /** The ticket with this id (hex SHA-256 of its secret), or null. */
  getTicket(id: string): TicketRecord | null {
    const row = this.#get("SELECT * FROM tickets WHERE id = ?", String(id));
    return row === undefined ? null : toTicket(row);
  }

  /** Every ticket, oldest first. */
  listTickets(): TicketRecord[] {
    return this.#all("SELECT * FROM tickets ORDER BY created_at, id").map(toTicket);
  }

  /**
   * Redeems a ticket for `identifier`, atomically: the ticket is marked used
   * and the identifier becomes a member with the ticket's attributes, or
   * neither happens. A ticket is used once, even by the same identifier.
   *
   * An identifier that is already an active member may redeem a new ticket
   * only if it grants the same attributes (the ticket is then used up and
   * the membership unchanged); changing a member's attributes is an
   * operator's act ({@link addMember}), so a ticket meant for one role
   * cannot silently change an enrolled identity's role. When refused, the
   * ticket stays unused.
   *
   * @throws {AuthorityError} `ticket_unknown` (also for a malformed secret),
   *   `ticket_used`, `ticket_expired` (at or after `expiresAt`),
   *   `member_revoked`, `already_member`.
   * @throws {TypeError} when `identifier` is malformed.
   */
  redeemTicket(secret: string, identifier: string, now?: number): Attributes {
    const time = nowOr(now);
    checkIdentifier(identifier);
    if (typeof secret !== "string" || !TICKET_SECRET.test(secret)) {
      throw new AuthorityError("ticket_unknown", "no such ticket");
    }
    const id = hashId(secret);
    return this.#write(() => {
      const row = this.#get("SELECT * FROM tickets WHERE id = ?", id);
      if (row === undefined) throw new AuthorityError("ticket_unknown", "no such ticket");
      const ticket = toTicket(row);
      if (ticket.usedAt !== null) {
        throw new AuthorityError("ticket_used", `ticket ${id} was already used`);
      }
      if (time >= ticket.expiresAt) {
        throw new AuthorityError("ticket_expired", `ticket ${id} expired`);
      }
      const existing = this.#memberRow(identifier);
      if (existing !== null && !sameAttributes(existing.attributes, ticket.attributes)) {
        throw new AuthorityError(
          "already_member",
          `${identifier} is already a member with other attributes`,
        );
      }
      this.#run("UPDATE tickets SET used_at = ?, used_by = ? WHERE id = ?", time, identifier, id);
      this.#putMember(identifier, ticket.attributes, "ticket", time, existing, { ticket: id });
      return ticket.attributes;
    });
  }

  // -------------------------------------------------------------------------
  // Licenses

  /**
   * Creates a reusable license key for a customer. Redeeming it grants
   * `{customer_id, tier, role: "edge", ...attributes}` (in that order, so
   * `attributes` may override). The key is returned here and only here.
   * @throws {CredentialError} `bad_attributes`
   * @throws {TypeError} when `customerId` or `tier` is empty.
   */
  createLicense(
    o: { customerId: string; tier: string; attributes?: Record<string, unknown>; now?: number },
  ): { key: string; id: string } {
    const now = nowOr(o.now);
    checkText(o.customerId, "customerId");
    checkText(o.tier, "tier");
    const attributes = normalizeAttributes({
      customer_id: o.customerId,
      tier: o.tier,
      role: "edge",
      ...o.attributes,
    });
    const key = randomToken(LICENSE_PREFIX, 24);
    const id = hashId(key);
    this.#write(() => {
      this.#run(
        "INSERT INTO licenses (id, customer_id, tier, attributes, created_at) VALUES (?, ?, ?, ?, ?)",
        id,
        o.customerId,
        o.tier,
        attributesText(attributes),
        now,
      );
      this.#audit(now, "license.create", {
        license: id,
        customer_id: o.customerId,
        tier: o.tier,
        attributes,
      });
    });
    return { key, id };
  }

  /**
   * Makes `identifier` a member with the license's attributes. A member
   * enrolled through a license is refreshed to the attributes of the
   * license presented; a member enrolled by ticket or operator with other
   * attributes is refused (`already_member`).
   * @throws {AuthorityError} `license_unknown`, `license_revoked`,
   *   `member_revoked`, `already_member`.
   * @throws {TypeError} when `identifier` is malformed.
   */
  redeemLicense(key: string, identifier: string, now?: number): Attributes {
    const time = nowOr(now);
    checkIdentifier(identifier);
    if (typeof key !== "string" || !LICENSE_KEY.test(key)) {
      throw new AuthorityError("license_unknown", "no such license");
    }
    const id = hashId(key);
    return this.#write(() => {
      const row = this.#get("SELECT * FROM licenses WHERE id = ?", id);
      if (row === undefined) throw new AuthorityError("license_unknown", "no such license");
      if (row.revoked_at !== null) {
        throw new AuthorityError("license_revoked", `license ${id} is revoked`);
      }
      const attributes = readAttributes(row.attributes, `license ${id}`);
      const existing = this.#memberRow(identifier);
      if (
        existing !== null && existing.via !== "license" &&
        !sameAttributes(existing.attributes, attributes)
      ) {
        throw new AuthorityError(
          "already_member",
          `${identifier} is already a member with other attributes`,
        );
      }
      this.#putMember(identifier, attributes, "license", time, existing, { license: id });
      return attributes;
    });
  }

  /**
   * Revokes a license, given its key or its id (hex SHA-256 of the key, as
   * the audit log shows it): later redemptions fail with `license_revoked`.
   * Members already enrolled through it stay until revoked themselves.
   * Revoking twice is a no-op.
   * @throws {AuthorityError} `license_unknown`
   */
  revokeLicense(key: string, now?: number): void {
    const time = nowOr(now);
    const id = typeof key === "string" && HASH_ID.test(key)
      ? key
      : typeof key === "string" && LICENSE_KEY.test(key)
      ? hashId(key)
      : undefined;
    if (id === undefined) throw new AuthorityError("license_unknown", "no such license");
    this.#write(() => {
      const row = this.#get("SELECT revoked_at FROM licenses WHERE id = ?", id);
      if (row === undefined) throw new AuthorityError("license_unknown", "no such license");
      if (row.revoked_at !== null) return;
      this.#run("UPDATE licenses SET revoked_at = ? WHERE id = ?", time, id);
      this.#audit(time, "license.revoke", { license: id });
    });
  }

  // -------------------------------------------------------------------------
  // Members

  /**
   * Adds a member or sets an existing member's attributes (an operator's
   * act; also usable by enrollment flows). Audited as `enroll`, with the
   * previous attributes when there were any.
   * @throws {AuthorityError} `member_revoked`: a revoked identifier stays
   *   revoked (it is on every later revocation list).
   * @throws {TypeError} on a malformed identifier or `via`.
   * @throws {CredentialError} `bad_attributes`
   */
  addMember(
    identifier: string,
    attributes: Record<string, unknown>,
    via: Member["via"],
    now?: number,
  ): Member {
    const time = nowOr(now);
    checkIdentifier(identifier);
    if (!VIAS.includes(via)) throw new TypeError("via must be ticket, license or operator");
    const normalized = normalizeAttributes(attributes);
    return this.#write(() => {
      const existing = this.#memberRow(identifier);
      return this.#putMember(identifier, normalized, via, time, existing, {});
    });
  }

  /** The member (active or revoked), or null. */
  getMember(identifier: string): Member | null {
    const row = this.#get("SELECT * FROM members WHERE identifier = ?", String(identifier));
    return row === undefined ? null : toMember(row);
  }

  /** Every member, active and revoked, in order of enrollment. */
  listMembers(): Member[] {
    return this.#all("SELECT * FROM members ORDER BY enrolled_at, identifier").map(toMember);
  }

  /** The member row, refusing a revoked one. */
  #memberRow(identifier: string): Member | null {
    const member = this.getMember(identifier);
    if (member !== null && member.revokedAt !== null) {
      throw new AuthorityError("member_revoked", `${identifier} is revoked`);
    }
    return member;
  }

  /** Inserts or updates a member and audits it; inside a write transaction. */
  #putMember(
    identifier: string,
    attributes: Attributes,
    via: Member["via"],
    time: number,
    existing: Member | null,
    source: Record<string, string>,
  ): Member {
    const member: Member = {
      identifier,
      attributes,
      enrolledAt: existing?.enrolledAt ?? time,
      revokedAt: null,
      via,
    };
    this.#run(
      `INSERT INTO members (identifier, attributes, enrolled_at, via) VALUES (?, ?, ?, ?)
       ON CONFLICT (identifier) DO UPDATE SET attributes = excluded.attributes, via = excluded.via`,
      identifier,
      attributesText(attributes),
      member.enrolledAt,
      via,
    );
    this.#audit(time, "enroll", {
      identifier,
      via,
      ...source,
      attributes,
      previous: existing === null ? null : existing.attributes,
    });
    return member;
  }

  // -------------------------------------------------------------------------
  // Credentials

  /**
   * Records an issued credential (audited as `credential.issue` or
   * `credential.refresh`). The subject must be an active member: recording
   * is the last step before a credential is handed out, so a revocation
   * that lands between the service's membership check and this call still
   * stops it.
   * @throws {AuthorityError} `not_member`, `member_revoked`, `bad_request`
   *   (id already recorded).
   * @throws {TypeError | RangeError} on a malformed id, subject or time.
   */
  recordCredential(
    o: { id: string; subject: string; issuedAt: number; expiresAt: number; refresh: boolean },
  ): void {
    if (typeof o.id !== "string" || !CREDENTIAL_ID.test(o.id)) {
      throw new TypeError("a credential id is 32 lowercase hex digits");
    }
    checkIdentifier(o.subject);
    const issuedAt = nowOr(o.issuedAt ?? Number.NaN, "issuedAt");
    const expiresAt = nowOr(o.expiresAt ?? Number.NaN, "expiresAt");
    if (expiresAt < issuedAt) throw new RangeError("expiresAt is before issuedAt");
    this.#routineWrite(() => {
      if (this.#memberRow(o.subject) === null) {
        throw new AuthorityError("not_member", `${o.subject} is not a member`);
      }
      if (this.#get("SELECT 1 FROM credentials WHERE id = ?", o.id) !== undefined) {
        throw new AuthorityError("bad_request", `credential ${o.id} is already recorded`);
      }
      this.#run(
        "INSERT INTO credentials (id, subject, issued_at, expires_at, refresh) VALUES (?, ?, ?, ?, ?)",
        o.id,
        o.subject,
        issuedAt,
        expiresAt,
        o.refresh ? 1 : 0,
      );
      this.#audit(issuedAt, o.refresh ? "credential.refresh" : "credential.issue", {
        id: o.id,
        subject: o.subject,
        issued_at: issuedAt,
        expires_at: expiresAt,
      });
    });
  }

  /** The subject of a recorded credential, or null. */
  credentialSubject(id: string): string | null {
    const row = this.#get("SELECT subject FROM credentials WHERE id = ?", String(id));
    return row === undefined ? null : row.subject as string;
  }

  // -------------------------------------------------------------------------
  // Revocation

  /**
   * Revokes a member identifier (`"I"` + 64 hex) or a recorded credential id
   * (32 hex; hex digits in either case). In one transaction: the member is
   * marked revoked, the target joins the revoked set, the serial grows by
   * one and an audit entry records it. Revoking a target already revoked
   * changes nothing and returns the current state (same serial).
   * @throws {AuthorityError} `unknown_target` for a target that is neither
   *   a member nor a recorded credential (or is malformed).
   */
  revoke(target: string, now?: number): RevocationState {
    const time = nowOr(now);
    const parsed = parseTarget(target);
    if (parsed === undefined) {
      throw new AuthorityError(
        "unknown_target",
        "a revocation target is an identifier or a credential id",
      );
    }
    return this.#write(() => {
      const { kind, value } = parsed;
      const known = kind === "identifier"
        ? this.#get("SELECT 1 FROM members WHERE identifier = ?", value)
        : this.#get("SELECT 1 FROM credentials WHERE id = ?", value);
      if (known === undefined) {
        throw new AuthorityError("unknown_target", `${value} is neither a member nor a credential`);
      }
      if (this.#get("SELECT 1 FROM revocations WHERE target = ?", value) !== undefined) {
        return this.revocationState();
      }
      const serial = this.#serial() + 1;
      this.#run(
        "INSERT INTO revocations (target, kind, serial, revoked_at) VALUES (?, ?, ?, ?)",
        value,
        kind,
        serial,
        time,
      );
      if (kind === "identifier") {
        this.#run("UPDATE members SET revoked_at = ? WHERE identifier = ?", time, value);
      }
      this.#audit(time, "revoke", { target: value, kind, serial });
      return this.revocationState();
    });
  }

  /** The current revocation state: serial 0 and empty sets before any revocation. */
  revocationState(): RevocationState {
    return this.#read(() => this.#stateAt(this.#serial()));
  }

  #serial(): number {
    return this.#get("SELECT coalesce(max(serial), 0) AS serial FROM revocations")!
      .serial as number;
  }

  #stateAt(serial: number): RevocationState {
    const rows = this.#all(
      "SELECT target, kind FROM revocations WHERE serial <= ? ORDER BY target",
      serial,
    );
    return {
      serial,
      credentialIds: rows.filter((r) => r.kind === "credential").map((r) => r.target as string),
      identifiers: rows.filter((r) => r.kind === "identifier").map((r) => r.target as string),
    };
  }

  /**
   * Keeps the signed revocation list for `serial`. The list must decode,
   * carry that serial and name exactly the targets revoked up to it; a
   * serial not yet allocated, older than the newest list kept, or already
   * kept with other bytes is refused, since verifiers refuse a rollback and
   * two different lists with one serial. Saving the same bytes again is a
   * no-op.
   * @throws {AuthorityError} `bad_request`
   * @throws {MalformedError | LimitError} when `encoded` is not a revocation list.
   */
  saveRevocationList(serial: number, encoded: Uint8Array, now?: number): void {
    const time = nowOr(now);
    if (!Number.isSafeInteger(serial) || serial < 0) {
      throw new RangeError("serial must be a non-negative integer");
    }
    const list = decodeRevocationList(encoded);
    if (list.serial !== serial) {
      throw new AuthorityError(
        "bad_request",
        `the list carries serial ${list.serial}, not ${serial}`,
      );
    }
    const bytes = new Uint8Array(encoded);
    this.#write(() => {
      if (serial > this.#serial()) {
        throw new AuthorityError("bad_request", `revocation serial ${serial} is not allocated`);
      }
      const latest = this.#get(
        "SELECT serial, encoded FROM revocation_lists ORDER BY serial DESC LIMIT 1",
      );
      if (latest !== undefined && serial <= (latest.serial as number)) {
        if (serial === latest.serial && sameBytes(latest.encoded as Uint8Array, bytes)) return;
        throw new AuthorityError(
          "bad_request",
          serial === latest.serial
            ? `a different list with serial ${serial} is already kept`
            : `serial ${serial} is older than the kept list ${latest.serial}`,
        );
      }
      const state = this.#stateAt(serial);
      if (
        !sameStrings([...list.credentialIds].sort(), state.credentialIds) ||
        !sameStrings([...list.identifiers].sort(), state.identifiers)
      ) {
        throw new AuthorityError(
          "bad_request",
          `the list does not name exactly the targets revoked up to serial ${serial}`,
        );
      }
      this.#run(
        "INSERT INTO revocation_lists (serial, encoded, saved_at) VALUES (?, ?, ?)",
        serial,
        bytes,
        time,
      );
      this.#audit(time, "revocation_list.save", { serial, sha256: toHex(sha256(bytes)) });
    });
  }

  /** The kept list with the highest serial, or null. */
  latestRevocationList(): { serial: number; encoded: Uint8Array } | null {
    const row = this.#get(
      "SELECT serial, encoded FROM revocation_lists ORDER BY serial DESC LIMIT 1",
    );
    if (row === undefined) return null;
    return { serial: row.serial as number, encoded: new Uint8Array(row.encoded as Uint8Array) };
  }

  // -------------------------------------------------------------------------
  // Audit

  /**
   * Appends an entry (in its own transaction, or in the caller's). `data`
   * must be a plain JSON object; text shaped like a ticket secret or a
   * license key is refused anywhere in it.
   * @throws {TypeError | RangeError} on a bad kind, data or time.
   * @throws {AuthorityError} `store_corrupt` when the log's last entry does
   *   not match its recorded head (the log was cut or edited): nothing more
   *   is appended to a log known to be broken.
   */
  appendAudit(kind: string, data: Record<string, unknown>, now?: number): AuditEntry {
    const time = nowOr(now);
    return this.#write(() => this.#audit(time, kind, data));
  }

  #audit(time: number, kind: string, data: Record<string, unknown>): AuditEntry {
    const head = this.#get("SELECT seq, hash FROM audit_head WHERE one = 1");
    const last = this.#get("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1") ??
      { seq: 0, hash: GENESIS_HASH };
    if (head === undefined || head.seq !== last.seq || head.hash !== last.hash) {
      throw corrupt("the audit log does not end at its recorded head; run verifyAudit");
    }
    const row = nextAuditRow(
      { seq: last.seq as number, hash: last.hash as string },
      time,
      kind,
      data,
    );
    if (SECRET_LIKE.test(row.data)) {
      throw new TypeError("audit data must not contain a ticket secret or a license key");
    }
    this.#run(
      "INSERT INTO audit (seq, time, kind, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)",
      row.seq,
      row.time,
      row.kind,
      row.data,
      row.prevHash,
      row.hash,
    );
    this.#run("UPDATE audit_head SET seq = ?, hash = ? WHERE one = 1", row.seq, row.hash);
    return decodeAuditRow(row);
  }

  /**
   * The log's entries in order, as stored (not verified: see
   * {@link verifyAudit}). `afterSeq` and `limit` page through a long log.
   * @throws {AuthorityError} `store_corrupt` when an entry's data is not a JSON object.
   */
  auditEntries(options: { afterSeq?: number; limit?: number } = {}): AuditEntry[] {
    const { afterSeq = 0, limit } = options;
    if (!Number.isSafeInteger(afterSeq) || afterSeq < 0) {
      throw new RangeError("afterSeq must be a non-negative integer");
    }
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) {
      throw new RangeError("limit must be a non-negative integer");
    }
    // LIMIT -1 is SQLite's "no limit".
    const rows = this.#all(
      "SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
      afterSeq,
      limit ?? -1,
    );
    return rows.map((row) => {
      try {
        return decodeAuditRow(toAuditRow(row));
      } catch (cause) {
        throw corrupt(`audit entry ${row.seq} is unreadable`, cause);
      }
    });
  }

  /** The log's recorded head: seq 0 and 64 zeros when empty. Export it as a checkpoint. */
  auditHead(): AuditHead {
    const row = this.#get("SELECT seq, hash FROM audit_head WHERE one = 1");
    if (row === undefined) throw corrupt("the audit head is missing");
    return { seq: row.seq as number, hash: row.hash as string };
  }

  /**
   * Verifies the whole log (see `verifyChain` in `audit.ts`) against the
   * head recorded beside it and any `checkpoints` (heads exported earlier).
   * Reads one snapshot, so a concurrent append cannot make it fail.
   */
  verifyAudit(options: { checkpoints?: readonly AuditHead[] } = {}): AuditVerification {
    return this.#read(() => {
      const head = this.#get("SELECT seq, hash FROM audit_head WHERE one = 1");
      if (head === undefined) return { ok: false, seq: 1, reason: "the audit head is missing" };
      const rows = this.#statement("SELECT * FROM audit ORDER BY seq").iterate() as Iterable<Row>;
      return verifyChain(mapIterable(rows, toAuditRow), {
        head: { seq: head.seq as number, hash: head.hash as string },
        checkpoints: options.checkpoints,
      });
    });
  }

  // -------------------------------------------------------------------------
  // Meta

  /** Sets a value in the service's key/value table (not audited). */
  setMeta(key: string, value: string): void {
    checkText(key, "meta key");
    if (typeof value !== "string") throw new TypeError("meta value must be a string");
    this.#run(
      "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      key,
      value,
    );
  }

  /** A value from the key/value table, or null. */
  getMeta(key: string): string | null {
    const row = this.#get("SELECT value FROM meta WHERE key = ?", String(key));
    return row === undefined ? null : row.value as string;
  }
}

function* mapIterable<A, B>(items: Iterable<A>, fn: (item: A) => B): Generator<B> {
  for (const item of items) yield fn(item);
}

function parseTarget(
  target: string,
): { kind: "identifier" | "credential"; value: string } | undefined {
  if (typeof target !== "string") return undefined;
  if (/^I[0-9a-fA-F]{64}$/.test(target)) {
    return { kind: "identifier", value: "I" + target.slice(1).toLowerCase() };
  }
  if (/^[0-9a-fA-F]{32}$/.test(target)) return { kind: "credential", value: target.toLowerCase() };
  return undefined;
}

function sameAttributes(a: Attributes, b: Attributes): boolean {
  return attributesText(a) === attributesText(b);
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((item, i) => item === b[i]);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
