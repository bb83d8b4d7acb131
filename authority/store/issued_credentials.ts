/**
 * The authority store's record of issued credentials: id, subject and
 * validity of each, so that a credential can be revoked by id and its
 * issuance appears in the audit log.
 *
 * Records are written in batches (the queue of `group_commit.ts`): the
 * records of the credentials submitted together share one write
 * transaction, each checked and audited in turn, in a fixed number of
 * statements. A single record is a batch of one.
 *
 * @module
 */
import { AuthorityError } from "../../src/errors.ts";
import { checkIdentifier, inLists, marks, nowOr } from "./_util.ts";
import {
  GroupCommit,
  type GroupCommitStats,
  type Outcome,
  StoreBatchError,
} from "./group_commit.ts";
import type { Members } from "./members.ts";
import type { Sql, StoreCore } from "./store_core.ts";

const CREDENTIAL_ID = /^[0-9a-f]{32}$/;

/** The record of one issued credential. */
export interface CredentialRecord {
  /** 32 lowercase hex digits. */
  id: string;
  subject: string;
  issuedAt: number;
  expiresAt: number;
  /** A refresh (`credential.refresh`) rather than the credential of an enrollment (`credential.issue`). */
  refresh: boolean;
}

/**
 * A record's fields checked; the same fields.
 * @throws {TypeError | RangeError} on a malformed id, subject or time.
 */
function checkRecord(o: CredentialRecord): CredentialRecord {
  if (typeof o.id !== "string" || !CREDENTIAL_ID.test(o.id)) {
    throw new TypeError("a credential id is 32 lowercase hex digits");
  }
  checkIdentifier(o.subject);
  const issuedAt = nowOr(o.issuedAt ?? Number.NaN, "issuedAt");
  const expiresAt = nowOr(o.expiresAt ?? Number.NaN, "expiresAt");
  if (expiresAt < issuedAt) throw new RangeError("expiresAt is before issuedAt");
  return { id: o.id, subject: o.subject, issuedAt, expiresAt, refresh: Boolean(o.refresh) };
}

/** The credentials table, through a {@link StoreCore}; subjects are checked in {@link Members}. */
export class IssuedCredentials {
  #core: StoreCore;
  #members: Members;
  #queue: GroupCommit<CredentialRecord, void>;

  /** Issued credentials kept through `core`, for subjects in `members`. */
  constructor(core: StoreCore, members: Members) {
    this.#core = core;
    this.#members = members;
    this.#queue = new GroupCommit({ write: (records) => this.recordBatch(records) });
  }

  /**
   * Records an issued credential, audited as `credential.issue` or
   * `credential.refresh` (see `AuthorityStore.recordCredential`). The
   * membership check and the record share one transaction, so a revocation
   * that lands between the service's own check and this call still stops it.
   * @throws {AuthorityError} `not_member`, `member_revoked`, `bad_request`
   *   (id already recorded).
   * @throws {TypeError | RangeError} on a malformed id, subject or time.
   */
  async record(o: CredentialRecord): Promise<void> {
    let outcome: Outcome<void>;
    try {
      [outcome] = await this.recordBatch([o]);
    } catch (error) {
      // A batch of one: its own failure, as the database or the log reported it.
      throw error instanceof StoreBatchError ? error.cause : error;
    }
    if (!outcome.ok) throw outcome.error;
  }

  /**
   * Records `o` with the other records submitted in this event-loop turn,
   * in one transaction (see `AuthorityStore.submitCredential`). Resolves once
   * the record is committed.
   * @throws {AuthorityError} (rejects) `not_member`, `member_revoked`,
   *   `bad_request` (id already recorded) for this record alone;
   *   {StoreBatchError} when the whole batch failed and nothing of it was written.
   * @throws {TypeError | RangeError} (rejects) on a malformed id, subject or time.
   */
  submit(o: CredentialRecord): Promise<void> {
    return this.#queue.submit(o);
  }

  /** Batches written by {@link submit} (a live view). */
  get batches(): Readonly<GroupCommitStats> {
    return this.#queue.stats;
  }

  /**
   * Records several credentials in one write transaction, with routine
   * durability (the one write on the hot path, see SqliteCore.write): one
   * outcome per record, in order. A malformed record, a subject that is not
   * an active member and an id already recorded (also earlier in the same
   * batch) refuse that record alone; it writes nothing.
   * @throws {StoreBatchError} when the transaction failed: nothing was written.
   */
  async recordBatch(records: readonly CredentialRecord[]): Promise<Outcome<void>[]> {
    const outcomes: Outcome<void>[] = new Array(records.length);
    const checked: CredentialRecord[] = [];
    const at: number[] = [];
    records.forEach((o, i) => {
      try {
        checked.push(checkRecord(o));
        at.push(i);
      } catch (error) {
        outcomes[i] = { ok: false, error: error as Error };
      }
    });
    if (checked.length > 0) {
      const written = await this.#writeChecked(checked);
      written.forEach((outcome, j) => outcomes[at[j]] = outcome);
    }
    return outcomes;
  }

  /**
   * One write transaction for checked records, in a fixed number of
   * statements whatever the batch's size (on a database server each is a
   * round trip made while every other writer waits): the subjects' states
   * and the ids already recorded in one query each, the decisions in order
   * (so an id twice in the batch refuses the second), the rows in one
   * multi-row INSERT, the audit entries appended in order (written together
   * at the commit, `audit_append.ts`).
   */
  async #writeChecked(records: readonly CredentialRecord[]): Promise<Outcome<void>[]> {
    try {
      return await this.#core.write(async (tx) => {
        const subjects = [...new Set(records.map((o) => o.subject))];
        const ids = [...new Set(records.map((o) => o.id))];
        const states = await this.#members.revocationTimes(tx, subjects);
        const known = new Set<string>();
        for (const part of inLists(ids)) {
          for (
            const row of await tx.all(
              `SELECT id FROM credentials WHERE id IN (${marks(part)})`,
              ...part,
            )
          ) known.add(row.id as string);
        }
        const outcomes: Outcome<void>[] = [];
        const accepted: CredentialRecord[] = [];
        for (const o of records) {
          // Recording is the last step before a credential is handed out, so
          // a revocation that landed since the service's check still stops it.
          const error = this.#members.refusal(states, o.subject) ??
            (known.has(o.id)
              ? new AuthorityError("bad_request", `credential ${o.id} is already recorded`)
              : null);
          if (error !== null) {
            outcomes.push({ ok: false, error });
            continue;
          }
          known.add(o.id);
          accepted.push(o);
          outcomes.push({ ok: true, value: undefined });
        }
        for (const part of inLists(accepted)) {
          await tx.run(
            "INSERT INTO credentials (id, subject, issued_at, expires_at, refresh) VALUES " +
              part.map(() => "(?, ?, ?, ?, ?)").join(", "),
            ...part.flatMap((o) => [o.id, o.subject, o.issuedAt, o.expiresAt, o.refresh ? 1 : 0]),
          );
        }
        for (const o of accepted) {
          await tx.audit(o.issuedAt, o.refresh ? "credential.refresh" : "credential.issue", {
            id: o.id,
            subject: o.subject,
            issued_at: o.issuedAt,
            expires_at: o.expiresAt,
          });
        }
        return outcomes;
      }, "routine");
    } catch (cause) {
      throw new StoreBatchError(records.length, cause);
    }
  }

  /** The subject of a recorded credential, or null. */
  async subject(id: string): Promise<string | null> {
    const row = await this.#core.sql.get(
      "SELECT subject FROM credentials WHERE id = ?",
      String(id),
    );
    return row === undefined ? null : row.subject as string;
  }

  /** Whether a credential with this id (32 lowercase hex) is recorded. */
  async exists(sql: Pick<Sql, "get">, id: string): Promise<boolean> {
    return (await sql.get("SELECT 1 FROM credentials WHERE id = ?", id)) !== undefined;
  }
}
