/**
 * Which of the authority processes sharing one store signs revocation lists:
 * the leader. Every replica pushes every new list to its own subscribers;
 * only the leader signs one, so a new serial costs one HSM signature, not
 * one per replica.
 *
 * - SQLite: one authority service per file, so it is always the leader
 *   ({@link soleLeadership}).
 * - PostgreSQL: a session-level advisory lock
 *   (`pg_try_advisory_lock`) on a connection of its own
 *   (`PgLeadership`, `pg_leadership.ts`). The server releases it when that session ends:
 *   a leader that is killed, or whose connection breaks, loses the lock,
 *   and the next replica to ask takes it (every poll, 250 ms by default).
 *
 * Why a stale leader cannot fork the lists: leadership only saves work. The
 * database stays the arbiter: a list is kept only through the store's write
 * transaction, which allows one list per serial and refuses a serial older
 * than the newest kept (`store/revocations.ts`). Two processes that both
 * believe they lead (a partitioned leader whose session the server has not
 * yet ended) sign the same serial; one save wins, the other is refused and
 * that process takes the kept list instead.
 *
 * @module
 */
/** Whether this process signs revocation lists. */
export interface Leadership {
  /** Whether this process is the leader now, trying to become it when not. Never rejects. */
  check(): Promise<boolean>;
  /** Gives the leadership up (ends the lock's session). */
  close(): Promise<void>;
}

/**
 * The leadership of the only service on a store: always held.
 * @example
 * ```ts
 * const leadership = soleLeadership();
 * console.assert(await leadership.check());
 * ```
 */
export function soleLeadership(): Leadership {
  return { check: () => Promise.resolve(true), close: () => Promise.resolve() };
}
