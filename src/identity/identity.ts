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
  /** The identity's change history, verified or built here. */
  readonly history: ChangeHistory;
  /** The signer of the history's current primary key. */
  readonly signer: Signer;

  private constructor(history: ChangeHistory, signer: Signer) {
    this.history = history;
    this.signer = signer;
  }

  /** `"I"` + hex SHA-256 of the first change's signed bytes. */
  get identifier(): string {
    return this.history.identifier;
  }

  /** The current Ed25519 primary public key (32 bytes): the newest change's. */
  get primaryKey(): Uint8Array {
    return this.history.primaryKey;
  }

  /**
   * A new identity whose first key is `signer`'s.
   *
   * @example
   * ```ts
   * import { Identity } from "./identity.ts";
   * import { SoftwareSigner } from "./software_signer.ts";
   *
   * const identity = await Identity.create(await SoftwareSigner.generate());
   * console.log(identity.identifier); // "I" + 64 hex digits
   *
   * const rotated = await identity.rotate(await SoftwareSigner.generate());
   * console.log(rotated.identifier === identity.identifier); // true
   * ```
   */
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
