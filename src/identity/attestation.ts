/**
 * Purpose key attestations (docs/design.md §2): an identity's current primary key
 * vouches for an X25519 key used as a Noise static key.
 *
 * ```
 * AttestationData = [1, subject: bstr .size 32, purpose: uint, public_key: bstr .size 32,
 *                    created_at: uint, expires_at: uint]
 * Attestation     = [data: bstr, signature: bstr .size 64]
 * ```
 *
 * @module
 */
import { verifyEd25519 } from "../crypto/ed25519.ts";
import { bytesEqual } from "../crypto/hash.ts";
import { decodeCbor, encodeCbor } from "../encoding/cbor.ts";
import { DOMAIN, signedMessage } from "../encoding/domain.ts";
import {
  expectArray,
  expectBytes,
  expectUint,
  expectVersion,
  wrongShape,
} from "../encoding/shape.ts";
import { IdentityError } from "../errors.ts";
import {
  type ClockOptions,
  identifierFromBytes,
  identifierToBytes,
  type VerifiedIdentity,
} from "./change_history.ts";
import type { Identity } from "./identity.ts";
import { VerifiedCache } from "./verified_cache.ts";

/** Purposes a key can be attested for. */
export const PURPOSE = { secureChannel: 1 } as const;
/** Largest encoded attestation accepted. */
export const MAX_ATTESTATION_BYTES = 512;
/** Clock skew allowed when checking validity windows, in seconds. */
export const DEFAULT_SKEW_SECONDS = 60;

/** A decoded attestation. */
export interface Attestation {
  /** The whole encoded attestation (at most {@link MAX_ATTESTATION_BYTES}). */
  readonly encoded: Uint8Array;
  /** The encoded `AttestationData`, exactly as signed. */
  readonly data: Uint8Array;
  /** 64-byte Ed25519 signature by the subject's primary key over `data` (domain-separated). */
  readonly signature: Uint8Array;
  /** Identifier of the attesting identity. */
  readonly subject: string;
  /** What the key is attested for (see {@link PURPOSE}). */
  readonly purpose: number;
  /** The attested 32-byte X25519 public key. */
  readonly publicKey: Uint8Array;
  /** Start of validity, in seconds since the epoch. */
  readonly createdAt: number;
  /** End of validity, in seconds since the epoch (not before `createdAt`). */
  readonly expiresAt: number;
}

/** Options for {@link createAttestation}. */
export interface CreateAttestationOptions extends ClockOptions {
  /** Lifetime in seconds (default 30 days). */
  ttlSeconds?: number;
  /** Default: secure channel. */
  purpose?: number;
}

/**
 * Signs an attestation of `publicKey` (X25519, 32 bytes) by `identity`'s current key.
 * @throws {RangeError} when `publicKey` is not 32 bytes.
 *
 * @example
 * ```ts
 * import { createAttestation, verifyAttestation } from "./attestation.ts";
 * import { Identity } from "./identity.ts";
 * import { SoftwareSigner } from "./software_signer.ts";
 *
 * const identity = await Identity.create(await SoftwareSigner.generate());
 * const staticKey = crypto.getRandomValues(new Uint8Array(32)); // a Noise static public key
 * const attestation = await createAttestation(identity, staticKey, { ttlSeconds: 3600 });
 *
 * // The peer checks it against the identity and the static key it received.
 * await verifyAttestation(attestation.encoded, identity, { expectedKey: staticKey });
 * ```
 */
export async function createAttestation(
  identity: Identity,
  publicKey: Uint8Array,
  options: CreateAttestationOptions = {},
): Promise<Attestation> {
  if (publicKey.length !== 32) throw new RangeError("an X25519 public key is 32 bytes");
  const createdAt = options.now ?? Math.floor(Date.now() / 1000);
  const expiresAt = createdAt + (options.ttlSeconds ?? 30 * 24 * 3600);
  const purpose = options.purpose ?? PURPOSE.secureChannel;
  const data = encodeCbor([
    1,
    identifierToBytes(identity.identifier),
    purpose,
    publicKey,
    createdAt,
    expiresAt,
  ]);
  const signature = await identity.signer.sign(signedMessage(DOMAIN.attestation, data));
  return decodeAttestation(encodeCbor([data, signature]));
}

/**
 * Decodes and shape-checks an attestation (no signature check).
 * @throws {MalformedError | LimitError}
 */
export function decodeAttestation(encoded: Uint8Array): Attestation {
  const outer = expectArray(
    decodeCbor(encoded, { maxBytes: MAX_ATTESTATION_BYTES }),
    "attestation",
    2,
  );
  const data = expectBytes(outer[0], "attestation data");
  const signature = expectBytes(outer[1], "attestation signature", 64);
  const body = expectArray(decodeCbor(data, { maxBytes: 256 }), "attestation data", 6);
  expectVersion(body[0], "attestation data", 1);
  const createdAt = expectUint(body[4], "attestation created_at");
  const expiresAt = expectUint(body[5], "attestation expires_at");
  if (expiresAt < createdAt) wrongShape("attestation expires_at", "a time after created_at");
  return {
    encoded: new Uint8Array(encoded),
    data,
    signature,
    subject: identifierFromBytes(expectBytes(body[1], "attestation subject", 32)),
    purpose: expectUint(body[2], "attestation purpose"),
    publicKey: expectBytes(body[3], "attested public key", 32),
    createdAt,
    expiresAt,
  };
}

/** Attestations whose signature verified: most kept (least recently used first out). */
export const ATTESTATION_CACHE_LIMIT = 4096;

/**
 * Encoded attestations whose signature verified, with the primary key it
 * verified under: a peer presents the same one at every handshake until
 * it renews its static key. Only the signature is skipped, and only for
 * the same bytes under the same key; every other check runs each time.
 */
const verifiedAttestations = new VerifiedCache<Attestation>(ATTESTATION_CACHE_LIMIT);

/** Options for {@link verifyAttestation}. */
export interface VerifyAttestationOptions extends ClockOptions {
  /** Default: secure channel. */
  purpose?: number;
  /** Allowed clock skew in seconds (default {@link DEFAULT_SKEW_SECONDS}). */
  skewSeconds?: number;
  /** When given, the attested key must equal it (the Noise static key received). */
  expectedKey?: Uint8Array;
}

/**
 * Verifies that `identity`'s current primary key attested a key for the
 * purpose, now. Returns the decoded attestation.
 *
 * The signature check of encoded input is made once per distinct encoding
 * and primary key (bounded, least recently used first out); subject,
 * purpose, validity and key are checked at every call. An attestation
 * given decoded is always verified in full.
 * @throws {IdentityError} `bad_signature`, `subject_mismatch`, `wrong_purpose`,
 *   `expired`, `not_yet_valid`; `key_mismatch` when the attested key is not
 *   `expectedKey`.
 * @throws {MalformedError | LimitError} for malformed bytes.
 */
export async function verifyAttestation(
  input: Uint8Array | Attestation,
  identity: VerifiedIdentity,
  options: VerifyAttestationOptions = {},
): Promise<Attestation> {
  const encoded = input instanceof Uint8Array ? input : null;
  const cached = encoded === null ? undefined : verifiedAttestations.get(encoded);
  const attestation = cached?.value ??
    (encoded === null ? input as Attestation : decodeAttestation(encoded));
  // Signature first: nothing else in the attestation means anything before it.
  // Verified before: these exact bytes, under this identity's current key.
  const verifiedBefore = cached !== undefined && bytesEqual(cached.key, identity.primaryKey);
  if (!verifiedBefore) {
    const message = signedMessage(DOMAIN.attestation, attestation.data);
    if (!await verifyEd25519(identity.primaryKey, message, attestation.signature)) {
      throw new IdentityError("bad_signature", "attestation signature is invalid");
    }
    if (encoded !== null) verifiedAttestations.set(encoded, attestation, identity.primaryKey);
  }
  if (attestation.subject !== identity.identifier) {
    throw new IdentityError("subject_mismatch", "the attestation names another identity");
  }
  if (attestation.purpose !== (options.purpose ?? PURPOSE.secureChannel)) {
    throw new IdentityError("wrong_purpose", `attestation purpose ${attestation.purpose}`);
  }
  const now = options.now ?? Math.floor(Date.now() / 1000);
  const skew = options.skewSeconds ?? DEFAULT_SKEW_SECONDS;
  if (now > attestation.expiresAt + skew) {
    throw new IdentityError("expired", `attestation expired at ${attestation.expiresAt}`);
  }
  if (now + skew < attestation.createdAt) {
    throw new IdentityError("not_yet_valid", `attestation valid from ${attestation.createdAt}`);
  }
  if (
    options.expectedKey !== undefined && !bytesEqual(options.expectedKey, attestation.publicKey)
  ) {
    throw new IdentityError("key_mismatch", "the attested key is not the key the peer presented");
  }
  return attestation;
}
