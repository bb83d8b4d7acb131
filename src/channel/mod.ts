/**
 * Secure channels: Noise XX bound to identities, transport records, trust policies.
 *
 * @module
 */
export { CipherState, MAX_NONCE } from "./noise/cipher_state.ts";
export { PROTOCOL_NAME, XXHandshake, type XXHandshakeOptions } from "./noise/handshake_state.ts";
export { type DhKeyPair, dhKeyPairFromPrivate, generateDhKeyPair } from "./noise/x25519.ts";
export {
  type ChannelIdentity,
  type ChannelOptions,
  type ChannelStats,
  type CloseInfo,
  type ConnectOptions,
  connectSecureChannel,
  createChannelIdentity,
  type ListenOptions,
  listenSecureChannels,
  PROLOGUE,
  SecureChannel,
  type SecureChannelListener,
} from "./secure_channel.ts";
export {
  COUNTER_BYTES,
  DEFAULT_REKEY_INTERVAL,
  type DropReason,
  ReceiveCipher,
  REPLAY_WINDOW,
  SendCipher,
} from "./transport_cipher.ts";
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
