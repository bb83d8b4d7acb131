/**
 * Relay admission and the relay client.
 *
 * @module
 */
export {
  type Admit,
  decodeAdmit,
  decodeChallenge,
  decodeVerdict,
  encodeAdmit,
  encodeChallenge,
  encodeVerdict,
  MAX_ADMISSION_BYTES,
  type Verdict,
} from "./admission.ts";
export {
  connectRelay,
  type ConnectRelayOptions,
  registerAlias,
  type RelayConnection,
} from "./relay_client.ts";
