/**
 * The HSM signer (PKCS#11) and PIN sources.
 *
 * @module
 */
export {
  CKK_EC_EDWARDS,
  CKM_EC_EDWARDS_KEY_PAIR_GEN,
  CKM_EDDSA,
  type HsmOptions,
  HsmSession,
  type KeySelector,
  Pkcs11Signer,
} from "./pkcs11_signer.ts";
export { type PinSource, readPin } from "./pin.ts";
