/**
 * Identities as change histories (docs/design.md §2, docs/protocol.md).
 *
 * ```
 * ChangeData    = [1, previous_hash: bstr .size 32 / null, primary_key: bstr .size 32, created_at: uint]
 * Change        = [data: bstr, signature: bstr .size 64]                          ; first change
 *               / [data: bstr, signature: bstr .size 64, previous_signature: bstr .size 64]
 * ChangeHistory = [+ Change]
 * ```
 *
 * `data` is the exact byte string that was signed; it is decoded to read its
 * fields but never re-encoded. Both signatures of a change cover
 * `signedMessage(DOMAIN.change, data)`: `signature` by the change's own key,
 * `previous_signature` by the key of the change before it, so only the
 * holder of the current key can extend the history, and only towards a key
 * whose holder agreed.
 *
 * @module
 */
import { bytesEqual, sha256 } from "../crypto/hash.ts";
import { verifyEd25519 } from "../crypto/ed25519.ts";
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
import { IdentityError } from "../errors.ts";
import type { Signer } from "./signer.ts";

/** Most changes a history may hold: rotations are rare ceremonies. */
export const MAX_CHANGES = 64;
/** Largest encoded history accepted (64 changes of about 250 bytes fit). */
export const MAX_HISTORY_BYTES = 32 * 1024;

/** One decoded change. `data` is the exact signed byte string. */
export interface Change {
  /** The encoded `ChangeData`, exactly as signed (at most 512 bytes). */
  readonly data: Uint8Array;
  /** 64-byte Ed25519 signature by this change's own primary key. */
  readonly signature: Uint8Array;
  /** 64-byte signature by the previous change's key; null in the first change. */
  readonly previousSignature: Uint8Array | null;
  /** SHA-256 of the previous change's `data`; null in the first change. */
  readonly previousHash: Uint8Array | null;
  /** The 32-byte Ed25519 primary public key this change introduces. */
  readonly primaryKey: Uint8Array;
  /** When the change was made, in seconds since the epoch. */
  readonly createdAt: number;
}

/**
 * A decoded change history whose shape is valid. Its signatures are not
 * checked until {@link verifyChangeHistory} returns a {@link VerifiedIdentity}.
 */
export class ChangeHistory {
  /** The exact encoded bytes this history was read from or built as. */
  readonly encoded: Uint8Array;
  /** The decoded changes, oldest first (1 to {@link MAX_CHANGES}). */
  readonly changes: readonly Change[];

  private constructor(encoded: Uint8Array, changes: readonly Change[]) {
    this.encoded = encoded;
    this.changes = changes;
  }

  /** `"I"` + hex SHA-256 of the first change's signed bytes. */
  get identifier(): string {
    return identifierOf(this.changes[0].data);
  }

  /** The newest change's primary public key. */
  get primaryKey(): Uint8Array {
    return this.changes[this.changes.length - 1].primaryKey;
  }

  /**
   * Decodes and shape-checks an encoded history (no signature checks).
   * @throws {MalformedError | LimitError} for malformed input.
   */
  static decode(encoded: Uint8Array): ChangeHistory {
    const items = expectArray(
      decodeCbor(encoded, { maxBytes: MAX_HISTORY_BYTES }),
      "change history",
    );
    if (items.length === 0) wrongShape("change history", "at least one change");
    if (items.length > MAX_CHANGES) {
      throw new IdentityError("too_many_changes", `a history holds at most ${MAX_CHANGES} changes`);
    }
    return new ChangeHistory(new Uint8Array(encoded), items.map(decodeChange));
  }

  /** Builds and encodes the history of `changes` (already signed), oldest first. */
  static fromChanges(changes: readonly Change[]): ChangeHistory {
    const encoded = encodeCbor(
      changes.map((c) =>
        c.previousSignature === null
          ? [c.data, c.signature]
          : [c.data, c.signature, c.previousSignature]
      ),
    );
    return new ChangeHistory(encoded, changes);
  }
}

/** A history whose every link and signature was verified. */
export interface VerifiedIdentity {
  /** `"I"` + hex SHA-256 of the first change's signed bytes. */
  readonly identifier: string;
  /** The current primary key: the newest change's. */
  readonly primaryKey: Uint8Array;
  /** The history that was verified. */
  readonly history: ChangeHistory;
}

/** `"I"` + 64 lowercase hex digits of SHA-256(`firstChangeData`). */
export function identifierOf(firstChangeData: Uint8Array): string {
  return "I" + toHex(sha256(firstChangeData));
}

const IDENTIFIER = /^I[0-9a-f]{64}$/;

/** True when `text` has the form of an identifier. */
export function isIdentifier(text: string): boolean {
  return IDENTIFIER.test(text);
}

/**
 * The 32 bytes an identifier names, as carried inside signed structures.
 * @throws {TypeError} when `identifier` is not `"I"` + 64 lowercase hex digits.
 */
export function identifierToBytes(identifier: string): Uint8Array {
  if (!IDENTIFIER.test(identifier)) {
    throw new TypeError(`not an identifier: expected "I" followed by 64 lowercase hex digits`);
  }
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = parseInt(identifier.slice(1 + 2 * i, 3 + 2 * i), 16);
  return out;
}

/** The identifier for 32 bytes read from a signed structure. */
export function identifierFromBytes(bytes: Uint8Array): string {
  if (bytes.length !== 32) throw new RangeError("an identifier is 32 bytes");
  return "I" + toHex(bytes);
}

function decodeChange(item: unknown, index: number): Change {
  const what = `change ${index}`;
  const fields = expectArray(item, what, 2, 3);
  const data = expectBytes(fields[0], `${what} data`);
  const signature = expectBytes(fields[1], `${what} signature`, 64);
  const previousSignature = fields.length === 3
    ? expectBytes(fields[2], `${what} previous signature`, 64)
    : null;
  const body = expectArray(decodeCbor(data, { maxBytes: 512 }), `${what} data`, 4);
  expectVersion(body[0], `${what} data`, 1);
  const previousHash = body[1] === null ? null : expectBytes(body[1], `${what} previous hash`, 32);
  const primaryKey = expectBytes(body[2], `${what} primary key`, 32);
  const createdAt = expectUint(body[3], `${what} created_at`);
  return { data, signature, previousSignature, previousHash, primaryKey, createdAt };
}

/** Options with a clock, in seconds since the epoch (default: now). */
export interface ClockOptions {
  /** The current time, in seconds since the epoch (default: the system clock). */
  now?: number;
}

function nowSeconds(options?: ClockOptions): number {
  return options?.now ?? Math.floor(Date.now() / 1000);
}

async function signChange(
  previous: Change | null,
  next: Signer,
  previousSigner: Signer | null,
  createdAt: number,
): Promise<Change> {
  const previousHash = previous === null ? null : sha256(previous.data);
  const data = encodeCbor([1, previousHash, next.publicKey, createdAt]);
  const message = signedMessage(DOMAIN.change, data);
  const signature = await next.sign(message);
  const previousSignature = previousSigner === null ? null : await previousSigner.sign(message);
  return {
    data,
    signature,
    previousSignature,
    previousHash,
    primaryKey: next.publicKey.slice(),
    createdAt,
  };
}

/**
 * A new history whose first change holds `signer`'s key.
 *
 * @example
 * ```ts
 * import { createChangeHistory, verifyChangeHistory } from "./change_history.ts";
 * import { SoftwareSigner } from "./software_signer.ts";
 *
 * const signer = await SoftwareSigner.generate();
 * const history = await createChangeHistory(signer);
 * // What a peer does with the encoded bytes it received:
 * const verified = await verifyChangeHistory(history.encoded);
 * console.log(verified.identifier === history.identifier); // true
 * ```
 */
export async function createChangeHistory(
  signer: Signer,
  options?: ClockOptions,
): Promise<ChangeHistory> {
  return ChangeHistory.fromChanges([await signChange(null, signer, null, nowSeconds(options))]);
}

/** Options for {@link rotateChangeHistory}. */
export interface RotateOptions extends ClockOptions {
  /** The signer of the history's current primary key. */
  previous: Signer;
  /** The signer of the new primary key. */
  next: Signer;
}

/**
 * `history` with one more change, to `options.next`'s key, signed by the new
 * and the previous key.
 * @throws {TypeError} when `options.previous` does not hold the current key.
 */
export async function rotateChangeHistory(
  history: ChangeHistory,
  options: RotateOptions,
): Promise<ChangeHistory> {
  const last = history.changes[history.changes.length - 1];
  if (!bytesEqual(options.previous.publicKey, last.primaryKey)) {
    throw new TypeError("the previous signer does not hold the history's current key");
  }
  if (history.changes.length >= MAX_CHANGES) {
    throw new IdentityError("too_many_changes", `a history holds at most ${MAX_CHANGES} changes`);
  }
  const createdAt = Math.max(nowSeconds(options), last.createdAt);
  const change = await signChange(last, options.next, options.previous, createdAt);
  return ChangeHistory.fromChanges([...history.changes, change]);
}

/**
 * Verifies every change of a history: the first stands alone and is signed
 * by its own key; each later one names the SHA-256 of the one before it,
 * is no older than it, and is signed by its own key and by the previous one.
 *
 * @throws {MalformedError | LimitError} for malformed bytes.
 * @throws {IdentityError} for a history that does not verify.
 */
export async function verifyChangeHistory(
  input: Uint8Array | ChangeHistory,
): Promise<VerifiedIdentity> {
  const history = input instanceof ChangeHistory ? input : ChangeHistory.decode(input);
  const changes = history.changes;
  for (let i = 0; i < changes.length; i++) {
    const change = changes[i];
    const message = signedMessage(DOMAIN.change, change.data);
    if (i === 0) {
      if (change.previousHash !== null) {
        throw new IdentityError("bad_first_change", "the first change names a previous change");
      }
      if (change.previousSignature !== null) {
        throw new IdentityError(
          "unexpected_previous_signature",
          "the first change carries a previous-key signature",
        );
      }
    } else {
      const previous = changes[i - 1];
      if (change.previousHash === null || !bytesEqual(change.previousHash, sha256(previous.data))) {
        throw new IdentityError("broken_chain", `change ${i} does not follow change ${i - 1}`);
      }
      if (change.createdAt < previous.createdAt) {
        throw new IdentityError("time_went_backwards", `change ${i} is older than change ${i - 1}`);
      }
      if (change.previousSignature === null) {
        throw new IdentityError(
          "missing_previous_signature",
          `change ${i} is not signed by the previous key`,
        );
      }
      if (!await verifyEd25519(previous.primaryKey, message, change.previousSignature)) {
        throw new IdentityError(
          "bad_signature",
          `change ${i}: the previous key's signature is invalid`,
        );
      }
    }
    if (!await verifyEd25519(change.primaryKey, message, change.signature)) {
      throw new IdentityError("bad_signature", `change ${i}: the signature is invalid`);
    }
  }
  return { identifier: history.identifier, primaryKey: history.primaryKey, history };
}

/**
 * Accepts `candidate` as the newer history of `current` (a trust anchor):
 * it must verify, name the same identifier, and extend `current` change by
 * change. Returns the identity to trust from now on.
 *
 * @throws {IdentityError} `identifier_mismatch` or `history_conflict`, or
 *   any error of {@link verifyChangeHistory}.
 */
export async function acceptHistoryUpdate(
  current: VerifiedIdentity,
  candidate: Uint8Array | ChangeHistory,
): Promise<VerifiedIdentity> {
  const next = await verifyChangeHistory(candidate);
  if (next.identifier !== current.identifier) {
    throw new IdentityError(
      "identifier_mismatch",
      `history for ${next.identifier} offered as ${current.identifier}`,
    );
  }
  const known = current.history.changes;
  const offered = next.history.changes;
  if (offered.length < known.length) {
    throw new IdentityError("history_conflict", "the offered history is older than the one held");
  }
  for (let i = 0; i < known.length; i++) {
    if (!bytesEqual(known[i].data, offered[i].data)) {
      throw new IdentityError("history_conflict", `the offered history diverges at change ${i}`);
    }
  }
  return next;
}
