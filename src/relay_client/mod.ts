/**
 * Relay admission (version 2: the relay and the member prove themselves to
 * each other, the member's proof bound to that relay and connection) and
 * the relay client.
 *
 * @module
 */
export {
  ADMISSION_VERSION,
  admissionMessage,
  type Challenge,
  challengeMessage,
  decodeAdmit,
  decodeChallenge,
  decodeHello,
  decodeVerdict,
  encodeAdmit,
  encodeChallenge,
  encodeHello,
  encodeVerdict,
  MAX_ADMISSION_BYTES,
  MAX_HELLO_BYTES,
  type Proof,
  refreshMessage,
  type Verdict,
} from "./admission.ts";
export {
  type ProofRefusal,
  type ProofVerdict,
  verifyProof,
  type VerifyProofOptions,
} from "./proof.ts";
export {
  connectRelay,
  type ConnectRelayOptions,
  lookupAlias,
  pingRelay,
  refreshAtRelay,
  registerAlias,
  type RelayConnection,
} from "./relay_client.ts";
