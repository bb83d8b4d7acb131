/**
 * Identities: Ed25519 signers, change histories, purpose key attestations,
 * key files and public identity files.
 *
 * @module
 */
export {
  acceptHistoryUpdate,
  type Change,
  ChangeHistory,
  type ClockOptions,
  createChangeHistory,
  identifierFromBytes,
  identifierOf,
  identifierToBytes,
  isIdentifier,
  MAX_CHANGES,
  MAX_HISTORY_BYTES,
  rotateChangeHistory,
  type RotateOptions,
  type VerifiedIdentity,
  verifyChangeHistory,
} from "./change_history.ts";
export {
  type Attestation,
  createAttestation,
  type CreateAttestationOptions,
  decodeAttestation,
  DEFAULT_SKEW_SECONDS,
  PURPOSE,
  verifyAttestation,
  type VerifyAttestationOptions,
} from "./attestation.ts";
export { HISTORY_CACHE_LIMIT, verifyHistoryCached } from "./history_cache.ts";
export { Identity } from "./identity.ts";
export {
  exportIdentity,
  importIdentity,
  readIdentityFile,
  writeIdentityFile,
} from "./identity_file.ts";
export { createKeyFile, loadOrCreateKeyFile, readKeyFile } from "./key_file.ts";
export { loadOrCreateIdentity } from "./identity_store.ts";
export type { Signer } from "./signer.ts";
export { SoftwareSigner } from "./software_signer.ts";
