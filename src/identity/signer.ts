/**
 * The signer interface: everything that holds an Ed25519 primary key, in
 * process ({@link SoftwareSigner}) or in an HSM (`hsm/`), looks like this.
 *
 * @module
 */

/** An Ed25519 private key that can sign but never hands out its secret. */
export interface Signer {
  /** The 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** Where the key lives, for operators (`software`, `pkcs11:...`). */
  readonly description: string;
  /** A 64-byte Ed25519 signature (RFC 8032, pure) of `message`. */
  sign(message: Uint8Array): Promise<Uint8Array>;
}
