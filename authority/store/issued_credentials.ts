/**
 * The authority store's record of issued credentials: id, subject and
 * validity of each, so that a credential can be revoked by id and its
 * issuance appears in the audit log.
 *
 * @module
 */
import { AuthorityError } from "../../src/errors.ts";
import { checkIdentifier, nowOr } from "./_util.ts";
import type { Members } from "./members.ts";
import type { Sql, StoreCore } from "./store_core.ts";

const CREDENTIAL_ID = /^[0-9a-f]{32}$/;

/** The credentials table, through a {@link StoreCore}; subjects are checked in {@link Members}. */
export class IssuedCredentials {
  #core: StoreCore;
  #members: Members;

  /** Issued credentials kept through `core`, for subjects in `members`. */
  constructor(core: StoreCore, members: Members) {
    this.#core = core;
    this.#members = members;
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
  record(
    o: { id: string; subject: string; issuedAt: number; expiresAt: number; refresh: boolean },
  ): void {
    if (typeof o.id !== "string" || !CREDENTIAL_ID.test(o.id)) {
      throw new TypeError("a credential id is 32 lowercase hex digits");
    }
    checkIdentifier(o.subject);
    const issuedAt = nowOr(o.issuedAt ?? Number.NaN, "issuedAt");
    const expiresAt = nowOr(o.expiresAt ?? Number.NaN, "expiresAt");
    if (expiresAt < issuedAt) throw new RangeError("expiresAt is before issuedAt");
    // Routine durability: the one write on the hot path (see SqliteCore.write).
    this.#core.write((tx) => {
      if (this.#members.active(tx, o.subject) === null) {
        throw new AuthorityError("not_member", `${o.subject} is not a member`);
      }
      if (this.exists(tx, o.id)) {
        throw new AuthorityError("bad_request", `credential ${o.id} is already recorded`);
      }
      tx.run(
        "INSERT INTO credentials (id, subject, issued_at, expires_at, refresh) VALUES (?, ?, ?, ?, ?)",
        o.id,
        o.subject,
        issuedAt,
        expiresAt,
        o.refresh ? 1 : 0,
      );
      tx.audit(issuedAt, o.refresh ? "credential.refresh" : "credential.issue", {
        id: o.id,
        subject: o.subject,
        issued_at: issuedAt,
        expires_at: expiresAt,
      });
    }, "routine");
  }

  /** The subject of a recorded credential, or null. */
  subject(id: string): string | null {
    const row = this.#core.sql.get("SELECT subject FROM credentials WHERE id = ?", String(id));
    return row === undefined ? null : row.subject as string;
  }

  /** Whether a credential with this id (32 lowercase hex) is recorded. */
  exists(sql: Sql, id: string): boolean {
    return sql.get("SELECT 1 FROM credentials WHERE id = ?", id) !== undefined;
  }
}
