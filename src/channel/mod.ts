/**
 * Secure channels: Noise XX bound to identities, transport records, trust policies.
 *
 * @module
 */
export { CipherState, MAX_NONCE } from "./noise/cipher_state.ts";
export { PROTOCOL_NAME, XXHandshake, type XXHandshakeOptions } from "./noise/handshake_state.ts";
export type { SplitKeys } from "./noise/symmetric_state.ts";
export { type DhKeyPair, dhKeyPairFromPrivate, generateDhKeyPair } from "./noise/x25519.ts";
export { type DhPrivateKey, setNoiseBackend } from "./noise/openssl.ts";
export {
  type ChannelIdentity,
  type ChannelIdentityOptions,
  createChannelIdentity,
  DEFAULT_ATTESTATION_TTL_SECONDS,
  type RenewableChannelIdentity,
} from "./channel_identity.ts";
export {
  type ChannelOptions,
  type ChannelStats,
  type CloseInfo,
  MAX_MESSAGE_PAYLOAD,
  PROLOGUE,
  SecureChannel,
} from "./secure_channel.ts";
export {
  type ConnectOptions,
  connectSecureChannel,
  type ListenOptions,
  listenSecureChannels,
  type SecureChannelListener,
} from "./handshake.ts";
export { REPLAY_WINDOW, ReplayWindow, type WindowVerdict } from "./replay_window.ts";
export {
  COUNTER_BYTES,
  DEFAULT_REKEY_INTERVAL,
  type DropReason,
  type OpenedRecord,
  type OpenResult,
  ReceiveCipher,
  recordCipherName,
  SendCipher,
  setRecordCipher,
  type TransportCipherOptions,
} from "./transport_cipher.ts";
export { chooseRecordCipher, type CipherChoice } from "./cipher_choice.ts";
export {
  PlaintextLoan,
  PlaintextPool,
  plaintextPool,
  type PlaintextPoolOptions,
  type PlaintextPoolStats,
} from "./plaintext_pool.ts";
export {
  checkCredential,
  type TrustPolicy,
  type VerifiedPeer,
  verifyPeer,
} from "./trust_policy.ts";
export type { SecureChannelInfo } from "./channel_info.ts";
export {
  decodeIdentityPayload,
  encodeIdentityPayload,
  type IdentityPayload,
} from "./identity_payload.ts";
