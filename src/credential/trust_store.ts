/**
 * The authorities a verifier trusts, by identifier, each with the newest
 * change history it has accepted.
 *
 * @module
 */
import {
  acceptHistoryUpdate,
  ChangeHistory,
  type VerifiedIdentity,
} from "../identity/change_history.ts";

/** Trust anchors: authorities whose credentials and revocation lists count. */
export class TrustStore {
  #anchors = new Map<string, VerifiedIdentity>();

  /** A store that trusts `identities`. */
  constructor(identities: Iterable<VerifiedIdentity> = []) {
    for (const identity of identities) this.add(identity);
  }

  /** Trusts `identity` (already verified, e.g. by `importIdentity`). */
  add(identity: VerifiedIdentity): void {
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
    const history = candidate instanceof Uint8Array ? ChangeHistory.decode(candidate) : candidate;
    const current = this.#anchors.get(history.identifier);
    if (current === undefined) return false;
    this.#anchors.set(current.identifier, await acceptHistoryUpdate(current, history));
    return true;
  }
}
