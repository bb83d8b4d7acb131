/**
 * Credentials (docs/design.md §3): an authority's signed statement about a subject.
 *
 * ```
 * CredentialData = [2, subject: bstr .size 32, subject_key: bstr .size 32,
 *                   issuer: bstr .size 32,
 *                   attributes: { * text => text / int / bool / [* text] },
 *                   created_at: uint, expires_at: uint, id: bstr .size 16]
 * Credential     = [data: bstr, signature: bstr .size 64]
 * ```
 *
 * The signature covers `signedMessage(DOMAIN.credential, data)` and is made
 * by the issuer's current primary key (inside the HSM for the authority).
 *
 * `subject_key` is the subject's current primary key when the credential
 * was issued. Any prefix of a change history verifies as the same
 * identifier, so without it someone holding a key the member has rotated
 * away from could present the old prefix with a fresh attestation and be
 * taken for the member; a verifier that knows which history it was shown
 * checks the key too (`subjectKey`), and such a prefix is refused
 * (`key_mismatch`). Credentials are short-lived, so a rotation retires the
 * old key everywhere within a credential's lifetime.
 *
 * @module
 */
import { verifyEd25519 } from "../crypto/ed25519.ts";
import { bytesEqual, randomBytes } from "../crypto/hash.ts";
import { decodeCbor, encodeCbor } from "../encoding/cbor.ts";
import { DOMAIN, signedMessage } from "../encoding/domain.ts";
import { toHex } from "../encoding/hex.ts";
import {
  expectArray,
  expectBytes,
  expectUint,
  expectVersion,
  wrongShape,
} from "../encoding/shape.ts";
import { CredentialError } from "../errors.ts";
import { DEFAULT_SKEW_SECONDS } from "../identity/attestation.ts";
import {
  type ClockOptions,
  identifierFromBytes,
  identifierToBytes,
} from "../identity/change_history.ts";
import type { Identity } from "../identity/identity.ts";
import { VerifiedCache } from "../identity/verified_cache.ts";
import { type Attributes, attributesToMap, normalizeAttributes } from "./attributes.ts";
import type { RevocationRegistry } from "./revocation.ts";
import type { TrustStore } from "./trust_store.ts";

/** Largest encoded credential accepted. */
export const MAX_CREDENTIAL_BYTES = 8 * 1024;

/** A decoded credential. Nothing in it is trusted before {@link verifyCredential}. */
export interface Credential {
  /** The exact encoded credential, as sent in handshakes and stored in files. */
  readonly encoded: Uint8Array;
  /** The encoded `CredentialData`, exactly as signed. */
  readonly data: Uint8Array;
  /** 64-byte Ed25519 signature by the issuer's primary key over `data` (domain-separated). */
  readonly signature: Uint8Array;
  /** Identifier of the member the credential is about. */
  readonly subject: string;
  /** The member's primary key the credential was issued for (32 bytes, Ed25519). */
  readonly subjectKey: Uint8Array;
  /** Identifier of the authority that signed it. */
  readonly issuer: string;
  /** The attributes, normalized and frozen (null prototype). */
  readonly attributes: Attributes;
  /** Start of validity, in seconds since the epoch. */
  readonly createdAt: number;
  /** End of validity, in seconds since the epoch (not before `createdAt`). */
  readonly expiresAt: number;
  /** 16 random bytes as 32 hex digits: what revocation names. */
  readonly id: string;
}

/** Options for {@link issueCredential}. */
export interface IssueOptions extends ClockOptions {
  /** The member's identifier. */
  subject: string;
  /** The member's current primary key (32 bytes): the credential is bound to it. */
  subjectKey: Uint8Array;
  /** The attributes to state; checked and normalized (docs/protocol.md §7.1). */
  attributes: Readonly<Record<string, unknown>>;
  /** Lifetime in seconds (default one hour, docs/design.md §3). */
  ttlSeconds?: number;
  /** Fixed id (16 bytes), for golden vectors; random by default. */
  id?: Uint8Array;
}

/**
 * Issues a credential signed by `issuer`'s current key.
 * @throws {CredentialError} `bad_attributes`; {TypeError} for a bad subject;
 *   {RangeError} for a `ttlSeconds` that is not a positive integer or an `id`
 *   that is not 16 bytes; {LimitError} when the credential would exceed
 *   {@link MAX_CREDENTIAL_BYTES}.
 *
 * @example
 * ```ts
 * import { issueCredential, verifyCredential } from "./credential.ts";
 * import { TrustStore } from "./trust_store.ts";
 * import { Identity } from "../identity/identity.ts";
 * import { SoftwareSigner } from "../identity/software_signer.ts";
 *
 * const authority = await Identity.create(await SoftwareSigner.generate());
 * const member = await Identity.create(await SoftwareSigner.generate());
 * const credential = await issueCredential(authority, {
 *   subject: member.identifier,
 *   subjectKey: member.primaryKey,
 *   attributes: { role: "edge", customer_id: "cust_001", capabilities: ["search", "query"] },
 *   ttlSeconds: 3600,
 * });
 *
 * const trust = new TrustStore([authority]);
 * const verified = await verifyCredential(credential.encoded, {
 *   trust,
 *   subject: member.identifier,
 *   subjectKey: member.primaryKey,
 * });
 * console.log(verified.attributes.role); // "edge"
 * ```
 */
export async function issueCredential(
  issuer: Identity,
  options: IssueOptions,
): Promise<Credential> {
  const attributes = normalizeAttributes(options.attributes);
  const createdAt = options.now ?? Math.floor(Date.now() / 1000);
  const ttl = options.ttlSeconds ?? 3600;
  if (!Number.isSafeInteger(ttl) || ttl <= 0) throw new RangeError("ttlSeconds must be positive");
  const id = options.id ?? randomBytes(16);
  if (id.length !== 16) throw new RangeError("a credential id is 16 bytes");
  if (!(options.subjectKey instanceof Uint8Array) || options.subjectKey.length !== 32) {
    throw new RangeError("a subject key is 32 bytes");
  }
  const data = encodeCbor([
    2,
    identifierToBytes(options.subject),
    options.subjectKey,
    identifierToBytes(issuer.identifier),
    attributesToMap(attributes),
    createdAt,
    createdAt + ttl,
    id,
  ]);
  const signature = await issuer.signer.sign(signedMessage(DOMAIN.credential, data));
  return decodeCredential(encodeCbor([data, signature]));
}

/**
 * Decodes and shape-checks a credential (no signature or trust check).
 * @throws {MalformedError | LimitError} for malformed bytes;
 *   {CredentialError} `bad_attributes`.
 */
export function decodeCredential(encoded: Uint8Array): Credential {
  const outer = expectArray(
    decodeCbor(encoded, { maxBytes: MAX_CREDENTIAL_BYTES }),
    "credential",
    2,
  );
  const data = expectBytes(outer[0], "credential data");
  const signature = expectBytes(outer[1], "credential signature", 64);
  const body = expectArray(
    decodeCbor(data, { maxBytes: MAX_CREDENTIAL_BYTES, maxDepth: 3 }),
    "credential data",
    8,
  );
  expectVersion(body[0], "credential data", 2);
  if (!(body[4] instanceof Map)) {
    throw new CredentialError("bad_attributes", "credential attributes are not a map");
  }
  const createdAt = expectUint(body[5], "credential created_at");
  const expiresAt = expectUint(body[6], "credential expires_at");
  if (expiresAt < createdAt) wrongShape("credential expires_at", "a time after created_at");
  return {
    encoded: new Uint8Array(encoded),
    data,
    signature,
    subject: identifierFromBytes(expectBytes(body[1], "credential subject", 32)),
    subjectKey: expectBytes(body[2], "credential subject key", 32),
    issuer: identifierFromBytes(expectBytes(body[3], "credential issuer", 32)),
    attributes: normalizeAttributes(body[4]),
    createdAt,
    expiresAt,
    id: toHex(expectBytes(body[7], "credential id", 16)),
  };
}

/** Credentials whose signature verified: most kept (least recently used first out). */
export const CREDENTIAL_CACHE_LIMIT = 4096;

/**
 * Encoded credentials whose signature verified, with the issuer key it
 * verified under: a peer presents the same credential at every handshake
 * of its lifetime (an hour by default). Only the signature is skipped,
 * and only for the same bytes under the same issuer key; every other
 * check runs each time.
 */
const verifiedCredentials = new VerifiedCache<Credential>(CREDENTIAL_CACHE_LIMIT);

/** Options for {@link verifyCredential}. */
export interface VerifyCredentialOptions extends ClockOptions {
  /** Authorities whose credentials are accepted. */
  trust: TrustStore;
  /** The identifier the credential must be about (the channel's peer). */
  subject?: string;
  /**
   * The subject's current primary key, from the history it presented: the
   * credential must have been issued for this key (`key_mismatch` otherwise).
   */
  subjectKey?: Uint8Array;
  /** Allowed clock skew in seconds (default {@link DEFAULT_SKEW_SECONDS}). */
  skewSeconds?: number;
  /** Revocations to honour. */
  revocations?: RevocationRegistry;
}

/**
 * Verifies a credential: issuer trusted, signature valid under the issuer's
 * current key, subject as expected, within its validity window (± skew),
 * and not revoked. Returns the decoded credential.
 *
 * The signature check of encoded input is made once per distinct encoding
 * and issuer key (bounded, least recently used first out); trust, subject,
 * key, validity and revocation are checked at every call. A credential
 * given decoded is always verified in full.
 *
 * @throws {CredentialError} `untrusted_issuer`, `bad_signature`,
 *   `subject_mismatch`, `key_mismatch`, `expired`, `not_yet_valid`, `revoked`.
 * @throws {MalformedError | LimitError} for malformed bytes.
 *
 * @example
 * ```ts
 * import { issueCredential, verifyCredential } from "./credential.ts";
 * import { createRevocationList, RevocationRegistry } from "./revocation.ts";
 * import { TrustStore } from "./trust_store.ts";
 * import { CredentialError } from "../errors.ts";
 * import { Identity } from "../identity/identity.ts";
 * import { SoftwareSigner } from "../identity/software_signer.ts";
 *
 * const authority = await Identity.create(await SoftwareSigner.generate());
 * const member = await Identity.create(await SoftwareSigner.generate());
 * const credential = await issueCredential(authority, {
 *   subject: member.identifier,
 *   subjectKey: member.primaryKey,
 *   attributes: { role: "edge" },
 * });
 * const trust = new TrustStore([authority]);
 * const revocations = new RevocationRegistry();
 * await revocations.apply(
 *   await createRevocationList(authority, { serial: 1, credentialIds: [credential.id] }),
 *   trust,
 * );
 *
 * try {
 *   await verifyCredential(credential, { trust, subject: member.identifier, revocations });
 *   throw new Error("a revoked credential verified");
 * } catch (error) {
 *   if (!(error instanceof CredentialError) || error.code !== "revoked") throw error;
 * }
 * ```
 */
export async function verifyCredential(
  input: Uint8Array | Credential,
  options: VerifyCredentialOptions,
): Promise<Credential> {
  const encoded = input instanceof Uint8Array ? input : null;
  const cached = encoded === null ? undefined : verifiedCredentials.get(encoded);
  const credential = cached?.value ??
    (encoded === null ? input as Credential : decodeCredential(encoded));
  const issuer = options.trust.get(credential.issuer);
  if (issuer === undefined) {
    throw new CredentialError(
      "untrusted_issuer",
      `credential ${credential.id} is issued by ${credential.issuer}, which is not trusted`,
    );
  }
  // Verified before: these exact bytes, under the key the issuer holds now.
  const verifiedBefore = cached !== undefined && bytesEqual(cached.key, issuer.primaryKey);
  if (!verifiedBefore) {
    const message = signedMessage(DOMAIN.credential, credential.data);
    if (!await verifyEd25519(issuer.primaryKey, message, credential.signature)) {
      throw new CredentialError("bad_signature", `credential ${credential.id}: invalid signature`);
    }
    if (encoded !== null) verifiedCredentials.set(encoded, credential, issuer.primaryKey);
  }
  if (options.subject !== undefined && credential.subject !== options.subject) {
    throw new CredentialError(
      "subject_mismatch",
      `credential ${credential.id} is about ${credential.subject}, not ${options.subject}`,
    );
  }
  if (options.subjectKey !== undefined && !bytesEqual(credential.subjectKey, options.subjectKey)) {
    throw new CredentialError(
      "key_mismatch",
      `credential ${credential.id} was issued for another key of ${credential.subject}: ` +
        "the history presented is not its current one",
    );
  }
  const now = options.now ?? Math.floor(Date.now() / 1000);
  const skew = options.skewSeconds ?? DEFAULT_SKEW_SECONDS;
  if (now > credential.expiresAt + skew) {
    throw new CredentialError(
      "expired",
      `credential ${credential.id} expired at ${credential.expiresAt}`,
    );
  }
  if (now + skew < credential.createdAt) {
    throw new CredentialError(
      "not_yet_valid",
      `credential ${credential.id} is valid from ${credential.createdAt}`,
    );
  }
  if (options.revocations?.isRevoked(credential)) {
    throw new CredentialError("revoked", `credential ${credential.id} has been revoked`);
  }
  return credential;
}
