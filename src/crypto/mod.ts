/**
 * Cryptographic helpers shared by identity, credential and channel code.
 *
 * @module
 */
export { DER_PREFIX, derWrap } from "./der.ts";
export { verifyEd25519 } from "./ed25519.ts";
export { bytesEqual, randomBytes, sha256 } from "./hash.ts";
