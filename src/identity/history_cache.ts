/**
 * Change histories verified once per distinct byte string: peers that
 * reconnect present the same history, and its verification is pure (a
 * function of the bytes alone), so the result can be kept. This bounds
 * what a peer replaying a long history (up to 64 changes, up to 127
 * signature checks) can make a relay or a gateway do: the first time it
 * costs the signatures, every time after a lookup: by the exact bytes for
 * the usual history of a few changes, by their SHA-256 beyond 1 KiB (so
 * that 4,096 long histories do not keep 128 MiB of keys as well).
 *
 * @module
 */
import { sha256 } from "../crypto/hash.ts";
import { toHex } from "../encoding/hex.ts";
import { type VerifiedIdentity, verifyChangeHistory } from "./change_history.ts";
import { keyOf } from "./verified_cache.ts";

/** Histories kept (least recently used first out). */
export const HISTORY_CACHE_LIMIT = 4096;

const cache = new Map<string, VerifiedIdentity>();

/** Histories up to this many bytes are keyed by their bytes, longer ones by their hash. */
const EXACT_KEY_LIMIT = 1024;

/** The two kinds of key start with different characters, so they never meet. */
function historyKey(history: Uint8Array): string {
  return history.length <= EXACT_KEY_LIMIT ? "=" + keyOf(history) : "#" + toHex(sha256(history));
}

/**
 * {@link verifyChangeHistory}, remembered per distinct encoding.
 *
 * @example
 * ```ts
 * import { verifyHistoryCached } from "./history_cache.ts";
 * import { Identity } from "./identity.ts";
 * import { SoftwareSigner } from "./software_signer.ts";
 * const me = await Identity.create(await SoftwareSigner.generate());
 * const first = await verifyHistoryCached(me.history.encoded); // verified
 * const again = await verifyHistoryCached(me.history.encoded); // from the cache
 * console.log(first === again); // true
 * ```
 * @throws whatever {@link verifyChangeHistory} throws (failures are not kept).
 */
export async function verifyHistoryCached(history: Uint8Array): Promise<VerifiedIdentity> {
  const key = historyKey(history);
  const cached = cache.get(key);
  if (cached !== undefined) {
    // Now the most recently used: a busy peer's history stays.
    cache.delete(key);
    cache.set(key, cached);
    return cached;
  }
  const verified = await verifyChangeHistory(history);
  if (cache.size >= HISTORY_CACHE_LIMIT) cache.delete(cache.keys().next().value!);
  cache.set(key, verified);
  return verified;
}
