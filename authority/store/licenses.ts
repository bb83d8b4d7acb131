/**
 * The authority store's reusable license keys, one per customer and tier.
 * A key is returned once, when it is created, and never stored: the store
 * keeps its SHA-256 (hex), which is also the license's id in the audit log.
 *
 * @module
 */
import { type Attributes, normalizeAttributes } from "../../src/credential/attributes.ts";
import { AuthorityError } from "../../src/errors.ts";
import {
  attributesText,
  checkIdentifier,
  checkText,
  hashId,
  nowOr,
  randomToken,
  readAttributes,
  sameAttributes,
} from "./_util.ts";
import type { Members } from "./members.ts";
import type { StoreCore } from "./store_core.ts";

/** Prefix of license keys. */
export const LICENSE_PREFIX = "nxl_";

const LICENSE_KEY = /^nxl_[A-Za-z0-9_-]{32}$/;
const HASH_ID = /^[0-9a-f]{64}$/;

/** The licenses table, through a {@link StoreCore}; redemption enrolls through {@link Members}. */
export class Licenses {
  #core: StoreCore;
  #members: Members;

  /** Licenses kept through `core`, enrolling into `members`. */
  constructor(core: StoreCore, members: Members) {
    this.#core = core;
    this.#members = members;
  }

  /**
   * Creates a license key (see `AuthorityStore.createLicense`).
   * @throws {CredentialError} `bad_attributes`
   * @throws {TypeError} when `customerId` or `tier` is empty.
   */
  async create(
    o: { customerId: string; tier: string; attributes?: Record<string, unknown>; now?: number },
  ): Promise<{ key: string; id: string }> {
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
    await this.#core.write(async (tx) => {
      await tx.run(
        "INSERT INTO licenses (id, customer_id, tier, attributes, created_at) VALUES (?, ?, ?, ?, ?)",
        id,
        o.customerId,
        o.tier,
        attributesText(attributes),
        now,
      );
      await tx.audit(now, "license.create", {
        license: id,
        customer_id: o.customerId,
        tier: o.tier,
        attributes,
      });
    });
    return { key, id };
  }

  /**
   * Makes `identifier` a member with the license's attributes (see
   * `AuthorityStore.redeemLicense`).
   * @throws {AuthorityError} `license_unknown`, `license_revoked`,
   *   `member_revoked`, `already_member`.
   * @throws {TypeError} when `identifier` is malformed.
   */
  async redeem(key: string, identifier: string, now?: number): Promise<Attributes> {
    const time = nowOr(now);
    checkIdentifier(identifier);
    if (typeof key !== "string" || !LICENSE_KEY.test(key)) {
      throw new AuthorityError("license_unknown", "no such license");
    }
    const id = hashId(key);
    return await this.#core.write(async (tx) => {
      const row = await tx.get("SELECT * FROM licenses WHERE id = ?", id);
      if (row === undefined) throw new AuthorityError("license_unknown", "no such license");
      if (row.revoked_at !== null) {
        throw new AuthorityError("license_revoked", `license ${id} is revoked`);
      }
      const attributes = readAttributes(row.attributes, `license ${id}`);
      const existing = await this.#members.active(tx, identifier);
      if (
        existing !== null && existing.via !== "license" &&
        !sameAttributes(existing.attributes, attributes)
      ) {
        throw new AuthorityError(
          "already_member",
          `${identifier} is already a member with other attributes`,
        );
      }
      await this.#members.put(tx, identifier, attributes, "license", time, existing, {
        license: id,
      });
      return attributes;
    });
  }

  /**
   * Revokes a license given its key or its id (see
   * `AuthorityStore.revokeLicense`). Revoking twice is a no-op.
   * @throws {AuthorityError} `license_unknown`
   */
  async revoke(key: string, now?: number): Promise<void> {
    const time = nowOr(now);
    const id = typeof key === "string" && HASH_ID.test(key)
      ? key
      : typeof key === "string" && LICENSE_KEY.test(key)
      ? hashId(key)
      : undefined;
    if (id === undefined) throw new AuthorityError("license_unknown", "no such license");
    await this.#core.write(async (tx) => {
      const row = await tx.get("SELECT revoked_at FROM licenses WHERE id = ?", id);
      if (row === undefined) throw new AuthorityError("license_unknown", "no such license");
      if (row.revoked_at !== null) return;
      await tx.run("UPDATE licenses SET revoked_at = ? WHERE id = ?", time, id);
      await tx.audit(time, "license.revoke", { license: id });
    });
  }
}
