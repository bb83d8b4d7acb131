/**
 * The authority store's revocations and the signed revocation lists kept
 * for them. Each revocation takes the next serial; a list is kept only if it
 * names exactly the targets revoked up to its serial, and never behind or
 * beside a list already kept, since verifiers refuse a rollback and two
 * different lists with one serial.
 *
 * @module
 */
import { decodeRevocationList } from "../../src/credential/revocation.ts";
import { sha256 } from "../../src/crypto/hash.ts";
import { toHex } from "../../src/encoding/hex.ts";
import { AuthorityError } from "../../src/errors.ts";
import { nowOr } from "./_util.ts";
import type { IssuedCredentials } from "./issued_credentials.ts";
import type { Members } from "./members.ts";
import type { Row, Sql, StoreCore } from "./store_core.ts";

/** The complete revocation state; `serial` grows by one per revocation. */
export interface RevocationState {
  serial: number;
  /** Revoked credential ids (32 hex digits), sorted. */
  credentialIds: string[];
  /** Revoked identifiers, sorted. */
  identifiers: string[];
}

const LATEST_LIST = "SELECT serial, encoded FROM revocation_lists ORDER BY serial DESC LIMIT 1";

/**
 * The revocations and revocation_lists tables, through a {@link StoreCore};
 * targets are looked up in {@link Members} and {@link IssuedCredentials}.
 */
export class Revocations {
  #core: StoreCore;
  #members: Members;
  #credentials: IssuedCredentials;

  /** Revocations kept through `core`, of targets in `members` and `credentials`. */
  constructor(core: StoreCore, members: Members, credentials: IssuedCredentials) {
    this.#core = core;
    this.#members = members;
    this.#credentials = credentials;
  }

  /**
   * Revokes a member identifier or a recorded credential id (see
   * `AuthorityStore.revoke`): the member is marked revoked, the target
   * joins the revoked set, the serial grows by one and an audit entry
   * records it, all in one write transaction. Revoking a target already
   * revoked changes nothing and returns the current state.
   * @throws {AuthorityError} `unknown_target`
   */
  async revoke(target: string, now?: number): Promise<RevocationState> {
    const time = nowOr(now);
    const parsed = parseTarget(target);
    if (parsed === undefined) {
      throw new AuthorityError(
        "unknown_target",
        "a revocation target is an identifier or a credential id",
      );
    }
    return await this.#core.write(async (tx) => {
      const { kind, value } = parsed;
      const known = kind === "identifier"
        ? await this.#members.exists(tx, value)
        : await this.#credentials.exists(tx, value);
      if (!known) {
        throw new AuthorityError("unknown_target", `${value} is neither a member nor a credential`);
      }
      if ((await tx.get("SELECT 1 FROM revocations WHERE target = ?", value)) !== undefined) {
        return stateAt(tx, await serialOf(tx));
      }
      const serial = await serialOf(tx) + 1;
      await tx.run(
        "INSERT INTO revocations (target, kind, serial, revoked_at) VALUES (?, ?, ?, ?)",
        value,
        kind,
        serial,
        time,
      );
      if (kind === "identifier") await this.#members.markRevoked(tx, value, time);
      await tx.audit(time, "revoke", { target: value, kind, serial });
      return stateAt(tx, serial);
    });
  }

  /** The current revocation state, read from one snapshot. */
  state(): Promise<RevocationState> {
    return this.#core.read(async (tx) => stateAt(tx, await serialOf(tx)));
  }

  /**
   * Keeps the signed revocation list for `serial` (see
   * `AuthorityStore.saveRevocationList`). Saving the same bytes again is a
   * no-op.
   * @throws {AuthorityError} `bad_request`
   * @throws {MalformedError | LimitError} when `encoded` is not a revocation list.
   */
  async saveList(serial: number, encoded: Uint8Array, now?: number): Promise<void> {
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
    await this.#core.write(async (tx) => {
      if (serial > await serialOf(tx)) {
        throw new AuthorityError("bad_request", `revocation serial ${serial} is not allocated`);
      }
      const latest = await tx.get(LATEST_LIST);
      if (latest !== undefined && serial <= (latest.serial as number)) {
        if (serial === latest.serial && sameBytes(latest.encoded as Uint8Array, bytes)) return;
        throw new AuthorityError(
          "bad_request",
          serial === latest.serial
            ? `a different list with serial ${serial} is already kept`
            : `serial ${serial} is older than the kept list ${latest.serial}`,
        );
      }
      const state = await stateAt(tx, serial);
      if (
        !sameStrings([...list.credentialIds].sort(), state.credentialIds) ||
        !sameStrings([...list.identifiers].sort(), state.identifiers)
      ) {
        throw new AuthorityError(
          "bad_request",
          `the list does not name exactly the targets revoked up to serial ${serial}`,
        );
      }
      await tx.run(
        "INSERT INTO revocation_lists (serial, encoded, saved_at) VALUES (?, ?, ?)",
        serial,
        bytes,
        time,
      );
      await tx.audit(time, "revocation_list.save", { serial, sha256: toHex(sha256(bytes)) });
    });
  }

  /**
   * The newest serial allocated (0 before any revocation) and the newest
   * kept in a signed list (0 before any), in one statement: what a poll
   * asks before reading a state or a list.
   */
  async serials(): Promise<{ allocated: number; kept: number }> {
    const row = await this.#core.sql.get(
      "SELECT (SELECT coalesce(max(serial), 0) FROM revocations) AS allocated, " +
        "(SELECT coalesce(max(serial), 0) FROM revocation_lists) AS kept",
    );
    return { allocated: Number(row!.allocated), kept: Number(row!.kept) };
  }

  /** The kept list with the highest serial, or null. */
  async latestList(): Promise<{ serial: number; encoded: Uint8Array } | null> {
    const row: Row | undefined = await this.#core.sql.get(LATEST_LIST);
    if (row === undefined) return null;
    return { serial: row.serial as number, encoded: new Uint8Array(row.encoded as Uint8Array) };
  }
}

/** The newest serial allocated: 0 before any revocation. */
async function serialOf(sql: Sql): Promise<number> {
  const row = await sql.get("SELECT coalesce(max(serial), 0) AS serial FROM revocations");
  return Number(row!.serial);
}

/** The targets revoked up to `serial`. */
async function stateAt(sql: Sql, serial: number): Promise<RevocationState> {
  const rows = await sql.all(
    "SELECT target, kind FROM revocations WHERE serial <= ? ORDER BY target",
    serial,
  );
  return {
    serial,
    credentialIds: rows.filter((r) => r.kind === "credential").map((r) => r.target as string),
    identifiers: rows.filter((r) => r.kind === "identifier").map((r) => r.target as string),
  };
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

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((item, i) => item === b[i]);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
