/**
 * A local identity: its change history and the signer of its current key.
 *
 * @module
 */
import {
  type ChangeHistory,
  type ClockOptions,
  createChangeHistory,
  rotateChangeHistory,
  type VerifiedIdentity,
  verifyChangeHistory,
} from "./change_history.ts";
import type { Signer } from "./signer.ts";

/** An identity this process can act as. */
export class Identity implements VerifiedIdentity {
  readonly history: ChangeHistory;
  readonly signer: Signer;

  private constructor(history: ChangeHistory, signer: Signer) {
    this.history = history;
    this.signer = signer;
  }

  get identifier(): string {
    return this.history.identifier;
  }

  get primaryKey(): Uint8Array {
    return this.history.primaryKey;
  }

  /** A new identity whose first key is `signer`'s. */
  static async create(signer: Signer, options?: ClockOptions): Promise<Identity> {
    return new Identity(await createChangeHistory(signer, options), signer);
  }

  /**
   * The identity held in `history` (verified here) with the signer of its
   * current key.
   * @throws {TypeError} when `signer` does not hold the current key.
   */
  static async fromHistory(history: Uint8Array | ChangeHistory, signer: Signer): Promise<Identity> {
    const verified = await verifyChangeHistory(history);
    const current = verified.primaryKey;
    if (
      current.length !== signer.publicKey.length ||
      current.some((b, i) => b !== signer.publicKey[i])
    ) {
      throw new TypeError("the signer does not hold the identity's current key");
    }
    return new Identity(verified.history, signer);
  }

  /** This identity after a rotation to `next` (signed by the current and the new key). */
  async rotate(next: Signer, options?: ClockOptions): Promise<Identity> {
    const history = await rotateChangeHistory(this.history, {
      previous: this.signer,
      next,
      now: options?.now,
    });
    return new Identity(history, next);
  }
}
