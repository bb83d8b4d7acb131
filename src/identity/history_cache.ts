/**
 * Change histories verified once per distinct byte string: peers that
 * reconnect present the same history, and its verification is pure (a
 * function of the bytes alone), so the result can be kept. This bounds
 * what a peer replaying a long history (up to 64 changes, up to 127
 * signature checks) can make a relay or a gateway do: the first time it
 * costs the signatures, every time after a hash and a lookup.
 *
 * @module
 */
import { sha256 } from "../crypto/hash.ts";
import { toHex } from "../encoding/hex.ts";
import { type VerifiedIdentity, verifyChangeHistory } from "./change_history.ts";

/** Histories kept (least recently added first out). */
export const HISTORY_CACHE_LIMIT = 4096;

const cache = new Map<string, VerifiedIdentity>();

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
  const key = toHex(sha256(history));
  const cached = cache.get(key);
  if (cached !== undefined) return cached;
  const verified = await verifyChangeHistory(history);
  if (cache.size >= HISTORY_CACHE_LIMIT) cache.delete(cache.keys().next().value!);
  cache.set(key, verified);
  return verified;
}
