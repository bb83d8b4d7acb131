/**
 * Signed revocation lists (docs/design.md §3).
 *
 * ```
 * RevocationData = [1, issuer: bstr .size 32, serial: uint, issued_at: uint,
 *                   credential_ids: [* bstr .size 16], identifiers: [* bstr .size 32]]
 * RevocationList = [data: bstr, signature: bstr .size 64]
 * ```
 *
 * Each list is complete (not a delta) and carries a serial that only grows.
 * A verifier holds the newest list it has seen per issuer and refuses one
 * with a lower serial, so an attacker who replays an old list cannot
 * un-revoke anyone.
 *
 * @module
 */
import { verifyEd25519 } from "../crypto/ed25519.ts";
import { bytesEqual } from "../crypto/hash.ts";
import { decodeCbor, encodeCbor } from "../encoding/cbor.ts";
import { DOMAIN, signedMessage } from "../encoding/domain.ts";
import { fromHex, toHex } from "../encoding/hex.ts";
import { expectArray, expectBytes, expectUint, expectVersion } from "../encoding/shape.ts";
import { CredentialError } from "../errors.ts";
import {
  type ClockOptions,
  identifierFromBytes,
  identifierToBytes,
} from "../identity/change_history.ts";
import type { Identity } from "../identity/identity.ts";
import type { Credential } from "./credential.ts";
import type { TrustStore } from "./trust_store.ts";

/** Largest encoded list accepted (about 50,000 entries). */
export const MAX_REVOCATION_BYTES = 1024 * 1024;

/** A decoded revocation list. */
export interface RevocationList {
  /** The whole encoded list (at most {@link MAX_REVOCATION_BYTES}). */
  readonly encoded: Uint8Array;
  /** The encoded `RevocationData`, exactly as signed. */
  readonly data: Uint8Array;
  /** 64-byte Ed25519 signature by the issuer's primary key over `data` (domain-separated). */
  readonly signature: Uint8Array;
  /** Identifier of the authority that signed the list. */
  readonly issuer: string;
  /** Version of the list: a newer list of the same issuer has a higher serial. */
  readonly serial: number;
  /** When the list was signed, in seconds since the epoch (not compared with the clock). */
  readonly issuedAt: number;
  /** Revoked credential ids, as 32 hex digits. */
  readonly credentialIds: readonly string[];
  /** Revoked member identifiers: every credential about them is revoked. */
  readonly identifiers: readonly string[];
}

/** Options for {@link createRevocationList}. */
export interface CreateRevocationListOptions extends ClockOptions {
  /** The list's serial, a non-negative integer; verifiers replace a held list only with a higher one. */
  serial: number;
  /** Revoked credential ids, as 32 lowercase hex digits (sorted and deduplicated here). */
  credentialIds?: readonly string[];
  /** Revoked member identifiers (sorted and deduplicated here). */
  identifiers?: readonly string[];
}

const CREDENTIAL_ID = /^[0-9a-f]{32}$/;

/**
 * Signs a complete revocation list by `issuer`'s current key.
 * @throws {RangeError} for a serial that is not a non-negative integer;
 *   {TypeError} for a malformed credential id or identifier.
 *
 * @example
 * ```ts
 * import { createRevocationList, verifyRevocationList } from "./revocation.ts";
 * import { TrustStore } from "./trust_store.ts";
 * import { Identity } from "../identity/identity.ts";
 * import { SoftwareSigner } from "../identity/software_signer.ts";
 *
 * const authority = await Identity.create(await SoftwareSigner.generate());
 * const member = await Identity.create(await SoftwareSigner.generate());
 * const list = await createRevocationList(authority, {
 *   serial: 1,
 *   credentialIds: ["00112233445566778899aabbccddeeff"],
 *   identifiers: [member.identifier],
 * });
 * await verifyRevocationList(list.encoded, new TrustStore([authority]));
 * ```
 */
export async function createRevocationList(
  issuer: Identity,
  options: CreateRevocationListOptions,
): Promise<RevocationList> {
  if (!Number.isSafeInteger(options.serial) || options.serial < 0) {
    throw new RangeError("serial must be a non-negative integer");
  }
  const ids = [...new Set(options.credentialIds ?? [])].sort();
  for (const id of ids) {
    if (!CREDENTIAL_ID.test(id)) throw new TypeError("a credential id is 32 lowercase hex digits");
  }
  const identifiers = [...new Set(options.identifiers ?? [])].sort();
  const data = encodeCbor([
    1,
    identifierToBytes(issuer.identifier),
    options.serial,
    options.now ?? Math.floor(Date.now() / 1000),
    ids.map(fromHex),
    identifiers.map(identifierToBytes),
  ]);
  const signature = await issuer.signer.sign(signedMessage(DOMAIN.revocation, data));
  return decodeRevocationList(encodeCbor([data, signature]));
}

/**
 * Decodes and shape-checks a revocation list (no signature check).
 * @throws {MalformedError | LimitError}
 */
export function decodeRevocationList(encoded: Uint8Array): RevocationList {
  const outer = expectArray(
    decodeCbor(encoded, { maxBytes: MAX_REVOCATION_BYTES }),
    "revocation list",
    2,
  );
  const data = expectBytes(outer[0], "revocation list data");
  const signature = expectBytes(outer[1], "revocation list signature", 64);
  const body = expectArray(
    decodeCbor(data, { maxBytes: MAX_REVOCATION_BYTES, maxDepth: 2 }),
    "revocation list data",
    6,
  );
  expectVersion(body[0], "revocation list data", 1);
  return {
    encoded: new Uint8Array(encoded),
    data,
    signature,
    issuer: identifierFromBytes(expectBytes(body[1], "revocation list issuer", 32)),
    serial: expectUint(body[2], "revocation list serial"),
    issuedAt: expectUint(body[3], "revocation list issued_at"),
    credentialIds: expectArray(body[4], "revoked credential ids").map((id, i) =>
      toHex(expectBytes(id, `revoked credential id ${i}`, 16))
    ),
    identifiers: expectArray(body[5], "revoked identifiers").map((id, i) =>
      identifierFromBytes(expectBytes(id, `revoked identifier ${i}`, 32))
    ),
  };
}

/**
 * Verifies a revocation list's issuer and signature.
 * @throws {CredentialError} `untrusted_issuer`, `bad_signature`.
 */
export async function verifyRevocationList(
  input: Uint8Array | RevocationList,
  trust: TrustStore,
): Promise<RevocationList> {
  const list = input instanceof Uint8Array ? decodeRevocationList(input) : input;
  const issuer = trust.get(list.issuer);
  if (issuer === undefined) {
    throw new CredentialError(
      "untrusted_issuer",
      `revocation list from ${list.issuer}, which is not trusted`,
    );
  }
  const message = signedMessage(DOMAIN.revocation, list.data);
  if (!await verifyEd25519(issuer.primaryKey, message, list.signature)) {
    throw new CredentialError("bad_signature", `revocation list ${list.serial}: invalid signature`);
  }
  return list;
}

interface Held {
  list: RevocationList;
  ids: ReadonlySet<string>;
  identifiers: ReadonlySet<string>;
}

/**
 * The newest revocation list of each trusted issuer, as a verifier holds
 * them. Lookups are set lookups: cheap enough for every message.
 *
 * @example
 * ```ts
 * import { createRevocationList, RevocationRegistry } from "./revocation.ts";
 * import { TrustStore } from "./trust_store.ts";
 * import { Identity } from "../identity/identity.ts";
 * import { SoftwareSigner } from "../identity/software_signer.ts";
 *
 * const authority = await Identity.create(await SoftwareSigner.generate());
 * const member = await Identity.create(await SoftwareSigner.generate());
 * const trust = new TrustStore([authority]);
 * const registry = new RevocationRegistry();
 *
 * const first = await createRevocationList(authority, { serial: 1 });
 * const second = await createRevocationList(authority, {
 *   serial: 2,
 *   identifiers: [member.identifier],
 * });
 * await registry.apply(first, trust); // true
 * await registry.apply(second, trust); // true
 * console.log(registry.isIdentifierRevoked(authority.identifier, member.identifier)); // true
 * // Replaying the older list now throws CredentialError `revocation_rollback`.
 * ```
 */
export class RevocationRegistry {
  #held = new Map<string, Held>();

  /**
   * Verifies `input` and makes it the issuer's current list. Returns true
   * when it replaced an older one, false when it was the list already held.
   * @throws {CredentialError} `revocation_rollback` for a lower serial,
   *   `revocation_conflict` for a different list with the same serial, or
   *   any error of {@link verifyRevocationList}.
   */
  async apply(input: Uint8Array | RevocationList, trust: TrustStore): Promise<boolean> {
    const list = await verifyRevocationList(input, trust);
    const current = this.#held.get(list.issuer);
    if (current !== undefined) {
      if (list.serial < current.list.serial) {
        throw new CredentialError(
          "revocation_rollback",
          `revocation list serial ${list.serial} is older than ${current.list.serial}`,
        );
      }
      if (list.serial === current.list.serial) {
        if (bytesEqual(list.data, current.list.data)) return false;
        throw new CredentialError(
          "revocation_conflict",
          `two different revocation lists carry serial ${list.serial}`,
        );
      }
    }
    this.#held.set(list.issuer, {
      list,
      ids: new Set(list.credentialIds),
      identifiers: new Set(list.identifiers),
    });
    return true;
  }

  /** The highest serial held from any issuer (0 before the first list). */
  get serial(): number {
    let serial = 0;
    for (const held of this.#held.values()) serial = Math.max(serial, held.list.serial);
    return serial;
  }

  /** The list held for `issuer`, if any. */
  current(issuer: string): RevocationList | undefined {
    return this.#held.get(issuer)?.list;
  }

  /** True when the credential's id or its subject is revoked by its issuer. */
  isRevoked(credential: Pick<Credential, "issuer" | "id" | "subject">): boolean {
    const held = this.#held.get(credential.issuer);
    return held !== undefined &&
      (held.ids.has(credential.id) || held.identifiers.has(credential.subject));
  }

  /** True when `identifier` is revoked by `issuer`. */
  isIdentifierRevoked(issuer: string, identifier: string): boolean {
    return this.#held.get(issuer)?.identifiers.has(identifier) ?? false;
  }
}
