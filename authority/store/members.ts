/**
 * The authority store's members: enrolled identities and their attributes.
 * Tickets, licenses, issued credentials and revocations reach the members
 * table only through {@link Members}, inside their own transactions.
 *
 * @module
 */
import { toHex } from "../../src/encoding/hex.ts";
import { type Attributes, normalizeAttributes } from "../../src/credential/attributes.ts";
import { AuthorityError } from "../../src/errors.ts";
import {
  attributesText,
  checkIdentifier,
  corrupt,
  inLists,
  marks,
  nowOr,
  readAttributes,
} from "./_util.ts";
import type { Row, Sql, StoreCore, WriteTx } from "./store_core.ts";

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

const VIAS: readonly Member["via"][] = ["ticket", "license", "operator"];

/** A row's recorded key, as a copy; null when none is recorded. */
function keyOf(row: Row | undefined): Uint8Array | null {
  const key = row?.key;
  return key instanceof Uint8Array ? new Uint8Array(key) : null;
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

/** The members table, through a {@link StoreCore}. */
export class Members {
  #core: StoreCore;

  /** Members kept through `core`. */
  constructor(core: StoreCore) {
    this.#core = core;
  }

  /**
   * Adds a member or sets an existing member's attributes, audited as
   * `enroll` (see `AuthorityStore.addMember`).
   * @throws {AuthorityError} `member_revoked`
   * @throws {TypeError} on a malformed identifier or `via`.
   * @throws {CredentialError} `bad_attributes`
   */
  async add(
    identifier: string,
    attributes: Record<string, unknown>,
    via: Member["via"],
    now?: number,
  ): Promise<Member> {
    const time = nowOr(now);
    checkIdentifier(identifier);
    if (!VIAS.includes(via)) throw new TypeError("via must be ticket, license or operator");
    const normalized = normalizeAttributes(attributes);
    return await this.#core.write(async (tx) => {
      const existing = await this.active(tx, identifier);
      return await this.put(tx, identifier, normalized, via, time, existing, {});
    });
  }

  /** The member (active or revoked), or null. */
  async get(identifier: string): Promise<Member | null> {
    return await this.find(this.#core.sql, identifier);
  }

  /** The member's current primary key as last seen, or null (unknown, or no member). */
  async key(identifier: string): Promise<Uint8Array | null> {
    const row = await this.#core.sql.get(
      "SELECT key FROM members WHERE identifier = ?",
      identifier,
    );
    return keyOf(row);
  }

  /** The member (active or revoked) and its current primary key as last seen, in one read; or null. */
  async withKey(identifier: string): Promise<{ member: Member; key: Uint8Array | null } | null> {
    const row = await this.#core.sql.get(
      "SELECT * FROM members WHERE identifier = ?",
      String(identifier),
    );
    return row === undefined ? null : { member: toMember(row), key: keyOf(row) };
  }

  /**
   * Records the member's current primary key (after a verified
   * presentation). A change (the first key, or a rotation) is audited as
   * `member.key`, in the same write: which key may fetch credentials is
   * state an operator must be able to account for.
   */
  async setKey(
    identifier: string,
    key: Uint8Array,
    time = Math.floor(Date.now() / 1000),
  ): Promise<void> {
    if (key.length !== 32) throw new RangeError("a primary key is 32 bytes");
    await this.#core.write(async (tx) => {
      const row = await tx.get("SELECT key FROM members WHERE identifier = ?", identifier);
      if (row === undefined) return;
      const previous = row.key instanceof Uint8Array ? toHex(row.key) : null;
      if (previous === toHex(key)) return;
      await tx.run("UPDATE members SET key = ? WHERE identifier = ?", key, identifier);
      await tx.audit(time, "member.key", { identifier, key: toHex(key), previous });
    });
  }

  /** Every member, active and revoked, in order of enrollment. */
  async list(): Promise<Member[]> {
    return (await this.#core.sql.all("SELECT * FROM members ORDER BY enrolled_at, identifier"))
      .map(toMember);
  }

  /** The member (active or revoked) as `sql` sees it, or null. */
  async find(sql: Sql, identifier: string): Promise<Member | null> {
    const row = await sql.get("SELECT * FROM members WHERE identifier = ?", String(identifier));
    return row === undefined ? null : toMember(row);
  }

  /** Whether `identifier` (already normalized) is a member, active or revoked. */
  async exists(sql: Sql, identifier: string): Promise<boolean> {
    return (await sql.get("SELECT 1 FROM members WHERE identifier = ?", identifier)) !== undefined;
  }

  /**
   * Why `identifier` is not an active member, given what
   * {@link revocationTimes} read; null when it is one.
   */
  refusal(times: ReadonlyMap<string, number | null>, identifier: string): AuthorityError | null {
    if (!times.has(identifier)) {
      return new AuthorityError("not_member", `${identifier} is not a member`);
    }
    if (times.get(identifier) !== null) {
      return new AuthorityError("member_revoked", `${identifier} is revoked`);
    }
    return null;
  }

  /**
   * Of `identifiers`, those that are members, each with its revocation time
   * (null: active), as `sql` sees them: one query per 100 (a batch's check).
   */
  async revocationTimes(
    sql: Pick<Sql, "all">,
    identifiers: readonly string[],
  ): Promise<Map<string, number | null>> {
    const times = new Map<string, number | null>();
    for (const part of inLists(identifiers)) {
      const rows = await sql.all(
        `SELECT identifier, revoked_at FROM members WHERE identifier IN (${marks(part)})`,
        ...part,
      );
      for (const row of rows) times.set(row.identifier as string, row.revoked_at as number | null);
    }
    return times;
  }

  /**
   * The member, refusing a revoked one.
   * @throws {AuthorityError} `member_revoked`
   */
  async active(sql: Sql, identifier: string): Promise<Member | null> {
    const member = await this.find(sql, identifier);
    if (member !== null && member.revokedAt !== null) {
      throw new AuthorityError("member_revoked", `${identifier} is revoked`);
    }
    return member;
  }

  /**
   * Inserts or updates a member and audits it (`enroll`, with `source` and
   * the previous attributes), in `tx`. `existing` is the member as read in
   * the same transaction; its enrollment time is kept.
   */
  async put(
    tx: WriteTx,
    identifier: string,
    attributes: Attributes,
    via: Member["via"],
    time: number,
    existing: Member | null,
    source: Record<string, string>,
  ): Promise<Member> {
    const member: Member = {
      identifier,
      attributes,
      enrolledAt: existing?.enrolledAt ?? time,
      revokedAt: null,
      via,
    };
    await tx.run(
      `INSERT INTO members (identifier, attributes, enrolled_at, via) VALUES (?, ?, ?, ?)
       ON CONFLICT (identifier) DO UPDATE SET attributes = excluded.attributes, via = excluded.via`,
      identifier,
      attributesText(attributes),
      member.enrolledAt,
      via,
    );
    await tx.audit(time, "enroll", {
      identifier,
      via,
      ...source,
      attributes,
      previous: existing === null ? null : existing.attributes,
    });
    return member;
  }

  /** Marks a member revoked at `time`, in `tx` (the caller audits the revocation). */
  async markRevoked(tx: WriteTx, identifier: string, time: number): Promise<void> {
    await tx.run("UPDATE members SET revoked_at = ? WHERE identifier = ?", time, identifier);
  }
}
