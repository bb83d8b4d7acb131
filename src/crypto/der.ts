/**
 * DER wrappings of raw 32-byte Curve25519 keys (RFC 8410), for importing
 * them into node:crypto and WebCrypto: a fixed prefix, then the key.
 *
 * @module
 */

/** Fixed DER prefixes: SubjectPublicKeyInfo and PKCS#8 for Ed25519 and X25519. */
export const DER_PREFIX = {
  ed25519Spki: Uint8Array.of(
    0x30,
    0x2a,
    0x30,
    0x05,
    0x06,
    0x03,
    0x2b,
    0x65,
    0x70,
    0x03,
    0x21,
    0x00,
  ),
  ed25519Pkcs8: Uint8Array.of(
    0x30,
    0x2e,
    0x02,
    0x01,
    0x00,
    0x30,
    0x05,
    0x06,
    0x03,
    0x2b,
    0x65,
    0x70,
    0x04,
    0x22,
    0x04,
    0x20,
  ),
  x25519Spki: Uint8Array.of(0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00),
  x25519Pkcs8: Uint8Array.of(
    0x30,
    0x2e,
    0x02,
    0x01,
    0x00,
    0x30,
    0x05,
    0x06,
    0x03,
    0x2b,
    0x65,
    0x6e,
    0x04,
    0x22,
    0x04,
    0x20,
  ),
} as const;

/**
 * `prefix || key` as a Buffer for node:crypto. For private keys the caller
 * wipes the result (`.fill(0)`) once imported.
 * @throws {RangeError} when `key` is not 32 bytes.
 */
export function derWrap(prefix: Uint8Array, key: Uint8Array): Buffer {
  if (key.length !== 32) throw new RangeError("a Curve25519 key is 32 bytes");
  const der = Buffer.alloc(prefix.length + 32);
  der.set(prefix, 0);
  der.set(key, prefix.length);
  return der;
}
