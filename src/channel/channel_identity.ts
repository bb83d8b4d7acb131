/**
 * What a channel end presents in its handshake (docs/design.md §2, §4):
 * its identity's change history, an X25519 static key, the attestation by
 * which the identity's current primary key vouches for that key, and its
 * credentials.
 *
 * Attestations expire (30 days by default), so a long-running process
 * renews its own: {@link RenewableChannelIdentity.renew} makes a fresh
 * static key and has the identity attest it. Handshakes that start
 * afterwards use the new pair; open channels, whose keys came from Split()
 * long ago, are unaffected. The member runtime (src/member/) renews at two
 * thirds of the lifetime.
 *
 * @module
 */
import { createAttestation } from "../identity/attestation.ts";
import type { Identity } from "../identity/identity.ts";
import { type DhKeyPair, generateDhKeyPair } from "./noise/x25519.ts";

/** Default lifetime of a channel attestation: 30 days. */
export const DEFAULT_ATTESTATION_TTL_SECONDS = 30 * 24 * 3600;

/** What this end presents: identity, attested static key, credentials. */
export interface ChannelIdentity {
  /** The identity this end acts as; its change history goes into the handshake. */
  readonly identity: Identity;
  /** The Noise static key pair `s`. */
  readonly staticKeyPair: DhKeyPair;
  /** Encoded attestation of `staticKeyPair.publicKey` by `identity`. */
  readonly attestation: Uint8Array;
  /** The credentials to present now (read at each handshake). */
  readonly credentials: () => readonly Uint8Array[];
}

/** A {@link ChannelIdentity} whose static key and attestation can be renewed in place. */
export interface RenewableChannelIdentity extends ChannelIdentity {
  /** When the current attestation expires, Unix seconds. */
  readonly attestationExpiresAt: number;
  /** When the current attestation was made, Unix seconds. */
  readonly attestationCreatedAt: number;
  /**
   * A fresh static key pair and its attestation, both replaced at once so
   * that no handshake ever pairs a key with another key's attestation.
   * @throws whatever the identity's signer throws (an HSM failure): the
   *   current pair is kept.
   */
  renew(): Promise<void>;
}

/** Options of {@link createChannelIdentity}. */
export interface ChannelIdentityOptions {
  /** The credentials to present, read at each handshake (default: none). */
  credentials?: () => readonly Uint8Array[];
  /** Attestation lifetime, seconds (default {@link DEFAULT_ATTESTATION_TTL_SECONDS}). */
  ttlSeconds?: number;
}

/**
 * A channel identity with a fresh X25519 static key attested by `identity`
 * for `ttlSeconds`.
 *
 * @example
 * ```ts
 * import { createChannelIdentity } from "./channel_identity.ts";
 * import { Identity } from "../identity/identity.ts";
 * import { SoftwareSigner } from "../identity/software_signer.ts";
 * const me = await Identity.create(await SoftwareSigner.generate());
 * const local = await createChannelIdentity(me, { ttlSeconds: 3600 });
 * await local.renew(); // a new static key, attested for another hour
 * ```
 */
export async function createChannelIdentity(
  identity: Identity,
  options: ChannelIdentityOptions = {},
): Promise<RenewableChannelIdentity> {
  const ttlSeconds = options.ttlSeconds ?? DEFAULT_ATTESTATION_TTL_SECONDS;
  const attest = async () => {
    const staticKeyPair = await generateDhKeyPair();
    const attestation = await createAttestation(identity, staticKeyPair.publicKey, { ttlSeconds });
    return {
      staticKeyPair,
      attestation: attestation.encoded,
      attestationCreatedAt: attestation.createdAt,
      attestationExpiresAt: attestation.expiresAt,
    };
  };
  const local = {
    identity,
    credentials: options.credentials ?? (() => []),
    ...await attest(),
    async renew() {
      // Made in full before anything is replaced, then replaced in one step.
      Object.assign(local, await attest());
    },
  };
  return local;
}
