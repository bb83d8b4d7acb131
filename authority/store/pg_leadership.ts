/**
 * The revocation-list leader among authority replicas sharing a PostgreSQL
 * database: a session-level advisory lock (see `leadership.ts` for why a
 * stale leader cannot fork the lists).
 *
 * @module
 */
import pg from "pg";
import type { Leadership } from "./leadership.ts";

/** The advisory lock's key: "nexus-rl" as a signed 64-bit integer. */
export const LEADER_LOCK_KEY = 0x6e65_7875_732d_726cn;

/** Options of {@link PgLeadership}. */
export interface PgLeadershipOptions {
  /** How long connecting may take, ms (default 2,000). */
  connectTimeoutMs?: number;
}

/**
 * The leadership among replicas sharing a PostgreSQL database: a
 * session-level advisory lock held on a connection of its own.
 * @example
 * ```ts ignore
 * const leadership = new PgLeadership("postgres://nexus@db.internal:5432/authority");
 * if (await leadership.check()) signTheNextList();
 * await leadership.close();
 * ```
 */
export class PgLeadership implements Leadership {
  #url: string;
  #connectTimeoutMs: number;
  #client: pg.Client | null = null;
  #leading = false;
  #closed = false;

  /** Leadership over the database at `url` (nothing is connected until {@link check}). */
  constructor(url: string, options: PgLeadershipOptions = {}) {
    this.#url = url;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 2000;
  }

  /**
   * While leading: proves the lock's session is still alive (one round
   * trip). Otherwise: tries to take the lock, on a connection kept for the
   * next try. Any failure drops the connection, and with it the lock.
   */
  async check(): Promise<boolean> {
    if (this.#closed) return false;
    try {
      const client = this.#client ??= await this.#connect();
      if (this.#leading) {
        await client.query("SELECT 1");
        return true;
      }
      const result = await client.query("SELECT pg_try_advisory_lock($1) AS taken", [
        LEADER_LOCK_KEY.toString(),
      ]);
      this.#leading = result.rows[0]?.taken === true;
      return this.#leading;
    } catch {
      await this.#drop();
      return false;
    }
  }

  async #connect(): Promise<pg.Client> {
    const client = new pg.Client({
      connectionString: this.#url,
      connectionTimeoutMillis: this.#connectTimeoutMs,
      application_name: "nexus-authority-leader",
    });
    // A broken connection emits 'error' outside any query; unhandled, it
    // would end the process. The next check finds the client gone.
    client.on("error", () => void this.#drop());
    try {
      await client.connect();
    } catch (error) {
      client.end().catch(() => {});
      throw error;
    }
    return client;
  }

  async #drop(): Promise<void> {
    const client = this.#client;
    this.#client = null;
    this.#leading = false;
    await client?.end().catch(() => {});
  }

  /** Gives the leadership up; later checks answer false. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#drop();
  }
}
