/**
 * Checks a proof of identity in relay admission (admission.ts): the
 * relay's challenge, checked by the member, and the member's admission,
 * checked by the relay. Cheap checks first, so that a peer that is no
 * member costs one signature check, not a whole history:
 *
 * 1. the history's shape (no signatures): its identifier and current key;
 * 2. the credential (the issuer's signature, trusted issuer, about that
 *    identifier and issued for that key, valid now, not revoked): one
 *    Ed25519 check, and a non-member stops here;
 * 3. the proof's own signature under the current key: one check;
 * 4. the history's every change (up to 127 checks for a long history),
 *    verified once per distinct history and remembered (history_cache.ts).
 *
 * Returns a verdict rather than throwing: refusals are normal traffic at a
 * relay, and each is counted by its code.
 *
 * @module
 */
import { type Credential, verifyCredential } from "../credential/credential.ts";
import type { RevocationRegistry } from "../credential/revocation.ts";
import type { TrustStore } from "../credential/trust_store.ts";
import { verifyEd25519 } from "../crypto/ed25519.ts";
import { CredentialError } from "../errors.ts";
import { ChangeHistory, type VerifiedIdentity } from "../identity/change_history.ts";
import { verifyHistoryCached } from "../identity/history_cache.ts";
import type { Proof } from "./admission.ts";

/** Why a proof was refused: the codes a relay counts and tells the member. */
export type ProofRefusal =
  | "malformed"
  | "bad_identity"
  | "bad_signature"
  | "untrusted_issuer"
  | "expired"
  | "not_yet_valid"
  | "revoked"
  | "key_mismatch"
  | "bad_credential";

/** What {@link verifyProof} decided. */
export type ProofVerdict =
  | { readonly ok: true; readonly identity: VerifiedIdentity; readonly credential: Credential }
  | { readonly ok: false; readonly code: ProofRefusal };

const CREDENTIAL_CODES: ReadonlySet<string> = new Set([
  "untrusted_issuer",
  "expired",
  "not_yet_valid",
  "revoked",
  "key_mismatch",
]);

/** Options of {@link verifyProof}. */
export interface VerifyProofOptions {
  /** The authorities whose credentials count. */
  trust: TrustStore;
  /** Revocations to refuse credentials by (default: none). */
  revocations?: RevocationRegistry;
  /** Clock, Unix seconds (default: now). */
  now?: number;
}

/**
 * Checks `proof`: a credential from a trusted authority about the history's
 * identity and key, and a signature over `message` by that key.
 *
 * @example
 * ```ts ignore
 * const verdict = await verifyProof(decodeAdmit(frame), admissionMessage(me, relayNonce, memberNonce), { trust });
 * if (!verdict.ok) refuse(verdict.code);
 * ```
 */
export async function verifyProof(
  proof: Proof,
  message: Uint8Array,
  options: VerifyProofOptions,
): Promise<ProofVerdict> {
  let shape: ChangeHistory;
  try {
    shape = ChangeHistory.decode(proof.history);
  } catch {
    return { ok: false, code: "bad_identity" };
  }
  let credential: Credential;
  try {
    credential = await verifyCredential(proof.credential, {
      trust: options.trust,
      subject: shape.identifier,
      subjectKey: shape.primaryKey,
      revocations: options.revocations,
      now: options.now,
    });
  } catch (error) {
    const code = error instanceof CredentialError ? error.code : "bad_credential";
    return {
      ok: false,
      code: CREDENTIAL_CODES.has(code) ? code as ProofRefusal : "bad_credential",
    };
  }
  if (!await verifyEd25519(shape.primaryKey, message, proof.signature)) {
    return { ok: false, code: "bad_signature" };
  }
  let identity: VerifiedIdentity;
  try {
    identity = await verifyHistoryCached(proof.history);
  } catch {
    return { ok: false, code: "bad_identity" };
  }
  return { ok: true, identity, credential };
}
