/**
 * Cryptographic helpers shared by identity, credential and channel code.
 *
 * @module
 */
export { DER_PREFIX, derWrap } from "./der.ts";
export { verifyEd25519 } from "./ed25519.ts";
export { bytesEqual, randomBytes, sha256 } from "./hash.ts";
export {
  AES_KEY_BYTES,
  type AesGcm,
  type AesGcmKey,
  DEFAULT_LIBCRYPTO,
  GCM_NONCE_BYTES,
  GCM_TAG_BYTES,
  nodeAesGcm,
  openSslAesGcm,
} from "./aes_gcm.ts";
