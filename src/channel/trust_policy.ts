/**
 * Whom a secure channel accepts (docs/design.md §4): the peer's change history
 * verifies, its current key attested the Noise static key it used, and
 * the policy holds: a credential from a trusted authority about it (unless
 * not required), optionally a pinned identifier, optionally attributes.
 *
 * @module
 */
import type { AttributeValue } from "../credential/attributes.ts";
import { type Credential, verifyCredential } from "../credential/credential.ts";
import type { RevocationRegistry } from "../credential/revocation.ts";
import type { TrustStore } from "../credential/trust_store.ts";
import { CredentialError, HandshakeError, IdentityError } from "../errors.ts";
import { type Attestation, verifyAttestation } from "../identity/attestation.ts";
import type { VerifiedIdentity } from "../identity/change_history.ts";
import { verifyHistoryCached } from "../identity/history_cache.ts";
import type { Policy } from "../policy/policy.ts";
import { attributesRule } from "../policy/rules.ts";
import { decodeIdentityPayload } from "./identity_payload.ts";

/** The checks a channel end applies to its peer. */
export interface TrustPolicy {
  /** Authorities whose credentials count. */
  readonly trust: TrustStore;
  /** Revocations to honour, kept current by the caller. */
  readonly revocations?: RevocationRegistry;
  /** Require a valid credential (default true). The authority's enrollment listener sets false. */
  readonly requireCredential?: boolean;
  /** When given, the peer's identifier must be one of these. */
  readonly pinned?: Iterable<string>;
  /**
   * When given, the peer's credential must satisfy this rule (src/policy/rules.ts):
   * the one evaluator of every authorization decision.
   */
  readonly admit?: Policy;
  /**
   * Shorthand for a rule: the credential must carry each attribute with
   * exactly this value (text, an integer or a boolean). Evaluated as
   * {@link attributesRule} by the same policy engine as {@link admit}.
   */
  readonly requiredAttributes?: Readonly<Record<string, AttributeValue>>;
  /** Clock skew allowed, seconds (default 60). */
  readonly skewSeconds?: number;
  /** Clock, seconds since the epoch (default: now). */
  readonly now?: () => number;
}

/** A peer that passed the policy. */
export interface VerifiedPeer {
  /** The peer's verified change history and current primary key. */
  readonly identity: VerifiedIdentity;
  /** The peer's identifier (the same as `identity.identifier`). */
  readonly identifier: string;
  /** The verified attestation of the Noise static key the peer used. */
  readonly attestation: Attestation;
  /** The credential that satisfied the policy, or null when none was required and none verified. */
  readonly credential: Credential | null;
}

function nowOf(policy: TrustPolicy): number {
  return policy.now?.() ?? Math.floor(Date.now() / 1000);
}

/** `requiredAttributes` objects as rules, parsed once per object. */
const attributeRules = new WeakMap<object, Policy>();

function rulesOf(policy: TrustPolicy): Policy[] {
  const rules: Policy[] = [];
  if (policy.requiredAttributes !== undefined) {
    let rule = attributeRules.get(policy.requiredAttributes);
    if (rule === undefined) {
      rule = attributesRule(policy.requiredAttributes);
      attributeRules.set(policy.requiredAttributes, rule);
    }
    rules.push(rule);
  }
  if (policy.admit !== undefined) rules.push(policy.admit);
  return rules;
}

/**
 * Checks one credential about `identifier` against the policy: verified
 * (issuer, signature, validity, revocations; issued for `subjectKey`, the
 * key of the history the peer presented, when given), then every rule of
 * the policy.
 * @throws {HandshakeError} `credential_rejected` (cause: the CredentialError)
 *   or `missing_attribute`.
 */
export async function checkCredential(
  encoded: Uint8Array | Credential,
  identifier: string,
  policy: TrustPolicy,
  subjectKey?: Uint8Array,
): Promise<Credential> {
  let credential: Credential;
  try {
    credential = await verifyCredential(encoded, {
      trust: policy.trust,
      subject: identifier,
      subjectKey,
      revocations: policy.revocations,
      skewSeconds: policy.skewSeconds,
      now: nowOf(policy),
    });
  } catch (cause) {
    const why = cause instanceof CredentialError ? cause.code : "malformed";
    throw new HandshakeError("credential_rejected", `peer credential rejected: ${why}`, { cause });
  }
  const subject = { identifier, attributes: credential.attributes };
  for (const rule of rulesOf(policy)) {
    if (!rule.allows(subject)) {
      throw new HandshakeError(
        "missing_attribute",
        `peer credential refused by policy: ${rule.evaluate(subject).reason}`,
      );
    }
  }
  return credential;
}

/**
 * Verifies a peer from its identity payload and the Noise static key it
 * used in the handshake.
 * @throws {HandshakeError} `bad_payload`, `identity_rejected`,
 *   `attestation_mismatch`, `not_pinned`, `missing_credential`,
 *   `credential_rejected`, `missing_attribute`.
 *
 * @example
 * ```ts
 * import { createChannelIdentity } from "./channel_identity.ts";
 * import { encodeIdentityPayload } from "./identity_payload.ts";
 * import { verifyPeer } from "./trust_policy.ts";
 * import { issueCredential } from "../credential/credential.ts";
 * import { TrustStore } from "../credential/trust_store.ts";
 * import { Identity } from "../identity/identity.ts";
 * import { SoftwareSigner } from "../identity/software_signer.ts";
 *
 * const authority = await Identity.create(await SoftwareSigner.generate());
 * const edge = await Identity.create(await SoftwareSigner.generate());
 * const credential = await issueCredential(authority, {
 *   subject: edge.identifier,
 *   subjectKey: edge.primaryKey,
 *   attributes: { role: "edge" },
 * });
 * const local = await createChannelIdentity(edge, { credentials: () => [credential.encoded] });
 *
 * // What the edge sends in its handshake message, and the static key it used there.
 * const payload = encodeIdentityPayload({
 *   history: edge.history.encoded,
 *   attestation: local.attestation,
 *   credentials: local.credentials(),
 * });
 * const peer = await verifyPeer(payload, local.staticKeyPair.publicKey, {
 *   trust: new TrustStore([authority]),
 *   requiredAttributes: { role: "edge" },
 * });
 * console.log(peer.identifier === edge.identifier); // true
 * ```
 */
export async function verifyPeer(
  payload: Uint8Array,
  remoteStaticKey: Uint8Array,
  policy: TrustPolicy,
): Promise<VerifiedPeer> {
  let decoded;
  try {
    decoded = decodeIdentityPayload(payload);
  } catch (cause) {
    throw new HandshakeError("bad_payload", "the peer's identity payload is malformed", { cause });
  }
  let identity: VerifiedIdentity;
  try {
    identity = await verifyHistoryCached(decoded.history);
  } catch (cause) {
    throw new HandshakeError("identity_rejected", "the peer's change history does not verify", {
      cause,
    });
  }
  if (policy.pinned !== undefined && ![...policy.pinned].includes(identity.identifier)) {
    throw new HandshakeError("not_pinned", `peer ${identity.identifier} is not a pinned identity`);
  }
  let attestation: Attestation;
  try {
    attestation = await verifyAttestation(decoded.attestation, identity, {
      expectedKey: remoteStaticKey,
      skewSeconds: policy.skewSeconds,
      now: nowOf(policy),
    });
  } catch (cause) {
    if (cause instanceof IdentityError && cause.code === "key_mismatch") {
      throw new HandshakeError(
        "attestation_mismatch",
        `peer ${identity.identifier} attested another key than the one it used`,
        { cause },
      );
    }
    throw new HandshakeError("identity_rejected", "the peer's key attestation does not verify", {
      cause,
    });
  }
  let credential: Credential | null = null;
  let firstError: unknown = null;
  for (const encoded of decoded.credentials) {
    try {
      credential = await checkCredential(encoded, identity.identifier, policy, identity.primaryKey);
      break;
    } catch (error) {
      firstError ??= error;
    }
  }
  if (credential === null && (policy.requireCredential ?? true)) {
    if (firstError !== null) throw firstError;
    throw new HandshakeError(
      "missing_credential",
      `peer ${identity.identifier} presented no credential`,
    );
  }
  return { identity, identifier: identity.identifier, attestation, credential };
}
