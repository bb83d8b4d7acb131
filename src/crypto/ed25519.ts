/**
 * Ed25519 verification by the runtime's native code (WebCrypto).
 *
 * WebCrypto verifies about five times faster than pure JavaScript here
 * (DESIGN.md §4), but importing a key costs about as much as a
 * verification, so imported public keys are cached: the same few authority
 * keys verify every credential.
 *
 * @module
 */
import { toHex } from "../encoding/hex.ts";

const cache = new Map<string, Promise<CryptoKey>>();
const cacheLimit = 4096;

function importPublicKey(publicKey: Uint8Array): Promise<CryptoKey> {
  const id = toHex(publicKey);
  let key = cache.get(id);
  if (key === undefined) {
    if (cache.size >= cacheLimit) cache.delete(cache.keys().next().value!);
    key = crypto.subtle.importKey("raw", publicKey.slice(), "Ed25519", false, ["verify"]);
    cache.set(id, key);
    // A key the runtime refuses (not a curve point) must not stay cached.
    key.catch(() => cache.delete(id));
  }
  return key;
}

/**
 * True when `signature` is a valid Ed25519 signature of `message` by
 * `publicKey`; false for a wrong signature, a wrongly sized input, or a
 * public key that is not a valid point. Never throws for bad input.
 */
export async function verifyEd25519(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    const key = await importPublicKey(publicKey);
    return await crypto.subtle.verify("Ed25519", key, signature.slice(), message.slice());
  } catch {
    return false;
  }
}
