/**
 * The authorities a verifier trusts, by identifier, each with the newest
 * change history it has accepted.
 *
 * @module
 */
import { bytesEqual } from "../crypto/hash.ts";
import {
  acceptHistoryUpdate,
  ChangeHistory,
  type VerifiedIdentity,
} from "../identity/change_history.ts";

/**
 * Trust anchors: authorities whose credentials and revocation lists count.
 *
 * @example
 * ```ts
 * import { TrustStore } from "./trust_store.ts";
 * import { Identity } from "../identity/identity.ts";
 * import { SoftwareSigner } from "../identity/software_signer.ts";
 *
 * const authority = await Identity.create(await SoftwareSigner.generate());
 * const trust = new TrustStore([authority]);
 *
 * // After the authority rotates its key, a verifier accepts the longer history.
 * const rotated = await authority.rotate(await SoftwareSigner.generate());
 * await trust.update(rotated.history.encoded); // true
 * console.log(trust.get(authority.identifier)?.history.changes.length); // 2
 * ```
 */
export class TrustStore {
  #anchors = new Map<string, VerifiedIdentity>();

  /** A store that trusts `identities`. */
  constructor(identities: Iterable<VerifiedIdentity> = []) {
    for (const identity of identities) this.add(identity);
  }

  /**
   * Trusts `identity` (already verified, e.g. by `importIdentity`).
   * @throws {TypeError} when a different history of the same identifier is
   *   already trusted: a newer one must come through {@link update}, which
   *   checks that it extends the one held, and an older one must never
   *   replace it (that would roll back a key rotation).
   */
  add(identity: VerifiedIdentity): void {
    const current = this.#anchors.get(identity.identifier);
    if (current !== undefined) {
      if (bytesEqual(current.history.encoded, identity.history.encoded)) return;
      throw new TypeError(
        `${identity.identifier} is already trusted with another history; use update()`,
      );
    }
    this.#anchors.set(identity.identifier, identity);
  }

  /** The trusted identity with this identifier, if any. */
  get(identifier: string): VerifiedIdentity | undefined {
    return this.#anchors.get(identifier);
  }

  /** Identifiers of every trusted authority. */
  identifiers(): string[] {
    return [...this.#anchors.keys()];
  }

  /**
   * Accepts a newer history of a trusted authority (after a key rotation).
   * Returns false when the history is for an authority not trusted here.
   * @throws {IdentityError} when the history does not extend the one held.
   */
  async update(candidate: Uint8Array | ChangeHistory): Promise<boolean> {
    // The common case, the history already held, costs a comparison, not a
    // verification of every change.
    const bytes = candidate instanceof Uint8Array ? candidate : candidate.encoded;
    for (const anchor of this.#anchors.values()) {
      if (bytesEqual(anchor.history.encoded, bytes)) return true;
    }
    const history = candidate instanceof Uint8Array ? ChangeHistory.decode(candidate) : candidate;
    const current = this.#anchors.get(history.identifier);
    if (current === undefined) return false;
    this.#anchors.set(current.identifier, await acceptHistoryUpdate(current, history));
    return true;
  }
}
