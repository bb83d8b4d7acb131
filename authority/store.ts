/**
 * The credential authority's embedded state (docs/design.md §8): members,
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
 * Layout: {@link AuthorityStore} is a facade. The transaction core
 * (`store/sqlite_core.ts`, behind the engine-neutral `store/store_core.ts`)
 * opens the file, owns the schema, transactions and the audit append; one
 * module per aggregate under `store/` (members, tickets, licenses, issued
 * credentials, revocations, audit log, meta) works through it.
 *
 * Group commit: the service records the credentials it issues through
 * {@link AuthorityStore.submitCredential}, which writes the records
 * submitted in one event-loop turn in one transaction (`store/group_commit.ts`,
 * engine-neutral like the aggregates, so another core behind `store_core.ts`
 * batches the same way). Each record is checked in that transaction and
 * refused alone when its member is not active; a transaction that fails
 * fails every record of its batch and writes nothing.
 *
 * @module
 */
import type { Attributes } from "../src/credential/attributes.ts";
import type { AuditEntry, AuditHead, AuditVerification } from "./audit.ts";
import { AuditLog } from "./store/audit_log.ts";
import { type GroupCommitStats } from "./store/group_commit.ts";
import { type CredentialRecord, IssuedCredentials } from "./store/issued_credentials.ts";
import { Licenses } from "./store/licenses.ts";
import { type Member, Members } from "./store/members.ts";
import { Meta } from "./store/meta.ts";
import { Revocations, type RevocationState } from "./store/revocations.ts";
import { SqliteCore } from "./store/sqlite_core.ts";
import type { StoreCore } from "./store/store_core.ts";
import { type Leadership, soleLeadership } from "./store/leadership.ts";
import { type TicketRecord, Tickets } from "./store/tickets.ts";

export type { AuditEntry, AuditHead, AuditVerification } from "./audit.ts";
export type { Member } from "./store/members.ts";
export type { CredentialRecord } from "./store/issued_credentials.ts";
export { type GroupCommitStats, StoreBatchError } from "./store/group_commit.ts";
export type { RevocationState } from "./store/revocations.ts";
export { TICKET_PREFIX, type TicketRecord } from "./store/tickets.ts";
export { LICENSE_PREFIX } from "./store/licenses.ts";
export { SCHEMA_VERSION } from "./store/sqlite_core.ts";

/** Whether a store location names a PostgreSQL database rather than a SQLite file. */
export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//.test(location);
}

/** Options for {@link AuthorityStore.open}. */
export interface AuthorityStoreOptions {
  /** How long to wait for another connection's write lock, in ms (default 5000). */
  busyTimeoutMs?: number;
}

/** The authority's state in one SQLite file. */
export class AuthorityStore {
  #core: StoreCore;
  #members: Members;
  #tickets: Tickets;
  #licenses: Licenses;
  #credentials: IssuedCredentials;
  #revocations: Revocations;
  #audit: AuditLog;
  #meta: Meta;

  #location: string;

  private constructor(core: StoreCore, location: string) {
    this.#core = core;
    this.#location = location;
    this.#members = new Members(core);
    this.#tickets = new Tickets(core, this.#members);
    this.#licenses = new Licenses(core, this.#members);
    this.#credentials = new IssuedCredentials(core, this.#members);
    this.#revocations = new Revocations(core, this.#members, this.#credentials);
    this.#audit = new AuditLog(core);
    this.#meta = new Meta(core);
  }

  /**
   * Opens (creating if needed) the store at `location`: a SQLite file's
   * path, or a PostgreSQL URL (`postgres://user@host:port/database`) for a
   * database that several authority replicas share.
   * @throws {AuthorityError} `store_permissions` when group or others may
   *   access the file, `store_corrupt` when it is not an authority store,
   *   `store_version` when a newer version wrote it, `store_unavailable`
   *   when the database server cannot be reached.
   * @example
   * ```ts ignore
   * const store = await AuthorityStore.open("/var/lib/nexus/authority.db");
   * const { secret } = await store.createTicket({ attributes: { role: "edge" }, ttlSeconds: 600 });
   * await store.close();
   * ```
   */
  static async open(
    location: string,
    options: AuthorityStoreOptions = {},
  ): Promise<AuthorityStore> {
    if (isPostgresUrl(location)) {
      // Loaded only here: an authority on SQLite never loads the client.
      const { PgCore } = await import("./store/pg_core.ts");
      return new AuthorityStore(await PgCore.open(location), location);
    }
    return new AuthorityStore(
      await SqliteCore.open(location, { busyTimeoutMs: options.busyTimeoutMs }),
      location,
    );
  }

  /**
   * Who signs revocation lists among the services sharing this store
   * (`store/leadership.ts`): on SQLite this one; on PostgreSQL the replica
   * holding the leader lock. The caller closes it.
   */
  async leadership(): Promise<Leadership> {
    if (this.#core.engine === "sqlite") return soleLeadership();
    const { PgLeadership } = await import("./store/pg_leadership.ts");
    return new PgLeadership(this.#location);
  }

  /** Which engine holds this store. */
  get engine(): StoreCore["engine"] {
    return this.#core.engine;
  }

  /** Closes the file. Later calls fail; closing twice is harmless. */
  close(): Promise<void> {
    return this.#core.close();
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
  ): Promise<{ secret: string; ticket: TicketRecord }> {
    return this.#tickets.create(o);
  }

  /** The ticket with this id (hex SHA-256 of its secret), or null. */
  getTicket(id: string): Promise<TicketRecord | null> {
    return this.#tickets.get(id);
  }

  /** Every ticket, oldest first. */
  listTickets(): Promise<TicketRecord[]> {
    return this.#tickets.list();
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
  redeemTicket(secret: string, identifier: string, now?: number): Promise<Attributes> {
    return this.#tickets.redeem(secret, identifier, now);
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
  ): Promise<{ key: string; id: string }> {
    return this.#licenses.create(o);
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
  redeemLicense(key: string, identifier: string, now?: number): Promise<Attributes> {
    return this.#licenses.redeem(key, identifier, now);
  }

  /**
   * Revokes a license, given its key or its id (hex SHA-256 of the key, as
   * the audit log shows it): later redemptions fail with `license_revoked`.
   * Members already enrolled through it stay until revoked themselves.
   * Revoking twice is a no-op.
   * @throws {AuthorityError} `license_unknown`
   */
  revokeLicense(key: string, now?: number): Promise<void> {
    return this.#licenses.revoke(key, now);
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
  ): Promise<Member> {
    return this.#members.add(identifier, attributes, via, now);
  }

  /** The member (active or revoked), or null. */
  getMember(identifier: string): Promise<Member | null> {
    return this.#members.get(identifier);
  }

  /** The member's current primary key as last seen, or null. */
  memberKey(identifier: string): Promise<Uint8Array | null> {
    return this.#members.key(identifier);
  }

  /**
   * The member (active or revoked) and its current primary key as last
   * seen, read together (what the service checks before each credential);
   * null when the identifier is not a member.
   */
  memberWithKey(identifier: string): Promise<{ member: Member; key: Uint8Array | null } | null> {
    return this.#members.withKey(identifier);
  }

  /** Records the member's current primary key (it presented a verified history with it). */
  setMemberKey(identifier: string, key: Uint8Array): Promise<void> {
    return this.#members.setKey(identifier, key);
  }

  /** Every member, active and revoked, in order of enrollment. */
  listMembers(): Promise<Member[]> {
    return this.#members.list();
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
  recordCredential(o: CredentialRecord): Promise<void> {
    return this.#credentials.record(o);
  }

  /**
   * Records an issued credential as {@link recordCredential} does, together
   * with the other records submitted in the same event-loop turn: one write
   * transaction for all of them (group commit), written once the code that
   * submitted them yields, with no timer, so a lone record is written at
   * once. Each record is checked in turn inside that transaction and keeps
   * its own outcome; their audit entries follow each other in the chain.
   * Resolves once the record is committed.
   * @throws {AuthorityError} (rejects) `not_member`, `member_revoked`,
   *   `bad_request` (id already recorded): this record alone is refused.
   * @throws {StoreBatchError} (rejects) when the transaction failed (the
   *   database, or an audit log that does not end at its head): every
   *   record of the batch is refused and nothing of it was written.
   * @throws {TypeError | RangeError} (rejects) on a malformed id, subject or time.
   */
  submitCredential(o: CredentialRecord): Promise<void> {
    return this.#credentials.submit(o);
  }

  /** The batches {@link submitCredential} has written: counters, a live view. */
  get credentialBatches(): Readonly<GroupCommitStats> {
    return this.#credentials.batches;
  }

  /** The subject of a recorded credential, or null. */
  credentialSubject(id: string): Promise<string | null> {
    return this.#credentials.subject(id);
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
  revoke(target: string, now?: number): Promise<RevocationState> {
    return this.#revocations.revoke(target, now);
  }

  /** The current revocation state: serial 0 and empty sets before any revocation. */
  revocationState(): Promise<RevocationState> {
    return this.#revocations.state();
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
  saveRevocationList(serial: number, encoded: Uint8Array, now?: number): Promise<void> {
    return this.#revocations.saveList(serial, encoded, now);
  }

  /**
   * The newest revocation serial allocated and the newest kept in a signed
   * list (0 for none), in one read: a poll's cheap question before it reads
   * a state or a list.
   */
  revocationSerials(): Promise<{ allocated: number; kept: number }> {
    return this.#revocations.serials();
  }

  /** The kept list with the highest serial, or null. */
  latestRevocationList(): Promise<{ serial: number; encoded: Uint8Array } | null> {
    return this.#revocations.latestList();
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
  appendAudit(kind: string, data: Record<string, unknown>, now?: number): Promise<AuditEntry> {
    return this.#audit.append(kind, data, now);
  }

  /**
   * The log's entries in order, as stored (not verified: see
   * {@link verifyAudit}). `afterSeq` and `limit` page through a long log.
   * @throws {AuthorityError} `store_corrupt` when an entry's data is not a JSON object.
   */
  auditEntries(options: { afterSeq?: number; limit?: number } = {}): Promise<AuditEntry[]> {
    return this.#audit.entries(options);
  }

  /** The log's recorded head: seq 0 and 64 zeros when empty. Export it as a checkpoint. */
  auditHead(): Promise<AuditHead> {
    return this.#audit.head();
  }

  /**
   * Verifies the whole log (see `verifyChain` in `audit.ts`) against the
   * head recorded beside it and any `checkpoints` (heads exported earlier).
   * Reads one snapshot, so a concurrent append cannot make it fail.
   */
  verifyAudit(options: { checkpoints?: readonly AuditHead[] } = {}): Promise<AuditVerification> {
    return this.#audit.verify(options);
  }

  // -------------------------------------------------------------------------
  // Meta

  /** Sets a value in the service's key/value table (not audited). */
  setMeta(key: string, value: string): Promise<void> {
    return this.#meta.set(key, value);
  }

  /** A value from the key/value table, or null. */
  getMeta(key: string): Promise<string | null> {
    return this.#meta.get(key);
  }
}
