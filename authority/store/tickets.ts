/**
 * The authority store's one-time enrollment tickets. A ticket's secret is
 * returned once, when it is created, and never stored: the store keeps its
 * SHA-256 (hex), which is also the ticket's id in the audit log.
 *
 * @module
 */
import { type Attributes, normalizeAttributes } from "../../src/credential/attributes.ts";
import { AuthorityError } from "../../src/errors.ts";
import {
  attributesText,
  checkIdentifier,
  hashId,
  nowOr,
  randomToken,
  readAttributes,
  sameAttributes,
} from "./_util.ts";
import type { Members } from "./members.ts";
import type { Row, StoreCore } from "./store_core.ts";

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

/** Prefix of ticket secrets. */
export const TICKET_PREFIX = "nxt_";

const TICKET_SECRET = /^nxt_[A-Za-z0-9_-]{43}$/;

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

/** The tickets table, through a {@link StoreCore}; redemption enrolls through {@link Members}. */
export class Tickets {
  #core: StoreCore;
  #members: Members;

  /** Tickets kept through `core`, enrolling into `members`. */
  constructor(core: StoreCore, members: Members) {
    this.#core = core;
    this.#members = members;
  }

  /**
   * Creates a one-time ticket (see `AuthorityStore.createTicket`).
   * @throws {CredentialError} `bad_attributes`
   * @throws {RangeError} when `ttlSeconds` is not a positive integer.
   */
  async create(
    o: { attributes: Record<string, unknown>; ttlSeconds: number; now?: number },
  ): Promise<{ secret: string; ticket: TicketRecord }> {
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
    await this.#core.write(async (tx) => {
      await tx.run(
        "INSERT INTO tickets (id, attributes, created_at, expires_at) VALUES (?, ?, ?, ?)",
        ticket.id,
        attributesText(attributes),
        now,
        ticket.expiresAt,
      );
      await tx.audit(now, "ticket.create", {
        ticket: ticket.id,
        attributes,
        expires_at: ticket.expiresAt,
      });
    });
    return { secret, ticket };
  }

  /** The ticket with this id (hex SHA-256 of its secret), or null. */
  async get(id: string): Promise<TicketRecord | null> {
    const row = await this.#core.sql.get("SELECT * FROM tickets WHERE id = ?", String(id));
    return row === undefined ? null : toTicket(row);
  }

  /** Every ticket, oldest first. */
  async list(): Promise<TicketRecord[]> {
    return (await this.#core.sql.all("SELECT * FROM tickets ORDER BY created_at, id")).map(
      toTicket,
    );
  }

  /**
   * Redeems a ticket for `identifier` (see `AuthorityStore.redeemTicket`).
   * The ticket is looked up, checked and marked used in one write
   * transaction with the enrollment, so two redemptions of one ticket
   * cannot both see it unused; when refused, the ticket stays unused.
   * @throws {AuthorityError} `ticket_unknown`, `ticket_used`,
   *   `ticket_expired`, `member_revoked`, `already_member`.
   * @throws {TypeError} when `identifier` is malformed.
   */
  async redeem(secret: string, identifier: string, now?: number): Promise<Attributes> {
    const time = nowOr(now);
    checkIdentifier(identifier);
    if (typeof secret !== "string" || !TICKET_SECRET.test(secret)) {
      throw new AuthorityError("ticket_unknown", "no such ticket");
    }
    const id = hashId(secret);
    return await this.#core.write(async (tx) => {
      const row = await tx.get("SELECT * FROM tickets WHERE id = ?", id);
      if (row === undefined) throw new AuthorityError("ticket_unknown", "no such ticket");
      const ticket = toTicket(row);
      if (ticket.usedAt !== null) {
        throw new AuthorityError("ticket_used", `ticket ${id} was already used`);
      }
      if (time >= ticket.expiresAt) {
        throw new AuthorityError("ticket_expired", `ticket ${id} expired`);
      }
      const existing = await this.#members.active(tx, identifier);
      if (existing !== null && !sameAttributes(existing.attributes, ticket.attributes)) {
        throw new AuthorityError(
          "already_member",
          `${identifier} is already a member with other attributes`,
        );
      }
      await tx.run(
        "UPDATE tickets SET used_at = ?, used_by = ? WHERE id = ?",
        time,
        identifier,
        id,
      );
      await this.#members.put(tx, identifier, ticket.attributes, "ticket", time, existing, {
        ticket: id,
      });
      return ticket.attributes;
    });
  }
}
