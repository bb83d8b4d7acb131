/**
 * Cryptographic helpers shared by identity, credential and channel code.
 *
 * @module
 */
export { verifyEd25519 } from "./ed25519.ts";
export { bytesEqual, randomBytes, sha256 } from "./hash.ts";
