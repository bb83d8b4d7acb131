/**
 * The authority store's small key/value table for the service's own
 * settings. Not audited.
 *
 * @module
 */
import { checkText } from "./_util.ts";
import type { StoreCore } from "./store_core.ts";

/** The meta table, through a {@link StoreCore}. */
export class Meta {
  #core: StoreCore;

  /** The key/value table kept through `core`. */
  constructor(core: StoreCore) {
    this.#core = core;
  }

  /**
   * Sets a value (not audited).
   * @throws {TypeError} on an empty key or a value that is not a string.
   */
  async set(key: string, value: string): Promise<void> {
    checkText(key, "meta key");
    if (typeof value !== "string") throw new TypeError("meta value must be a string");
    await this.#core.sql.run(
      "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      key,
      value,
    );
  }

  /** A value, or null. */
  async get(key: string): Promise<string | null> {
    const row = await this.#core.sql.get("SELECT value FROM meta WHERE key = ?", String(key));
    return row === undefined ? null : row.value as string;
  }
}
