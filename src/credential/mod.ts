/**
 * Credentials, trust anchors and revocation lists.
 *
 * @module
 */
export {
  type Attributes,
  type AttributeValue,
  MAX_ATTRIBUTES,
  MAX_LIST_ITEMS,
  MAX_TEXT_LENGTH,
  normalizeAttributes,
} from "./attributes.ts";
export {
  type Credential,
  decodeCredential,
  issueCredential,
  type IssueOptions,
  MAX_CREDENTIAL_BYTES,
  verifyCredential,
  type VerifyCredentialOptions,
} from "./credential.ts";
export {
  createRevocationList,
  type CreateRevocationListOptions,
  decodeRevocationList,
  MAX_REVOCATION_BYTES,
  type RevocationList,
  RevocationRegistry,
  verifyRevocationList,
} from "./revocation.ts";
export { TrustStore } from "./trust_store.ts";
