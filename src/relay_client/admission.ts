/**
 * Relay admission (docs/design.md §5): before a connection may send anything
 * through a relay, it proves an identity holding a valid, unrevoked
 * credential from a trusted authority. A signed challenge is enough: the
 * relay needs no channel keys and adds no second layer of encryption.
 *
 * ```
 * relay → client   Challenge = [1, "challenge", nonce: bstr .size 32]
 * client → relay   Admit     = [1, "admit", change_history: bstr, credential: bstr, signature: bstr .size 64]
 * relay → client   Admitted  = [1, "admitted", identifier: text]       (then routed messages)
 *                / Refused   = [1, "refused", code: text]               (then the relay closes)
 * ```
 *
 * The signature is by the identity's current primary key over
 * `signedMessage(DOMAIN.challenge, nonce)`: fresh per connection, so a
 * recorded admission cannot be replayed, and domain-separated, so no other
 * signed structure can stand in for it.
 *
 * @module
 */
import { decodeCbor, encodeCbor } from "../encoding/cbor.ts";
import { DOMAIN, signedMessage } from "../encoding/domain.ts";
import {
  expectArray,
  expectBytes,
  expectText,
  expectVersion,
  wrongShape,
} from "../encoding/shape.ts";
import type { Identity } from "../identity/identity.ts";

/** Largest admission message. */
export const MAX_ADMISSION_BYTES = 48 * 1024;

/** The relay's challenge. */
export function encodeChallenge(nonce: Uint8Array): Uint8Array {
  return encodeCbor([1, "challenge", nonce]);
}

/**
 * Decodes a challenge.
 * @throws {MalformedError | LimitError}
 */
export function decodeChallenge(bytes: Uint8Array): Uint8Array {
  const fields = expectArray(decodeCbor(bytes, { maxBytes: 256 }), "challenge", 3);
  expectVersion(fields[0], "challenge", 1);
  if (fields[1] !== "challenge") wrongShape("challenge", '"challenge"');
  return expectBytes(fields[2], "challenge nonce", 32);
}

/** The client's answer: its history, a credential, and its signature over the nonce. */
export async function encodeAdmit(
  identity: Identity,
  credential: Uint8Array,
  nonce: Uint8Array,
): Promise<Uint8Array> {
  const signature = await identity.signer.sign(signedMessage(DOMAIN.challenge, nonce));
  return encodeCbor([1, "admit", identity.history.encoded, credential, signature]);
}

/** A decoded admission answer (nothing verified yet). */
export interface Admit {
  /** The encoded change history of the client's identity. */
  readonly history: Uint8Array;
  /** An encoded credential about that identity (the client's current one). */
  readonly credential: Uint8Array;
  /** 64 bytes: Ed25519 by the history's current primary key over the challenge message. */
  readonly signature: Uint8Array;
}

/**
 * Decodes an admission answer.
 * @throws {MalformedError | LimitError}
 */
export function decodeAdmit(bytes: Uint8Array): Admit {
  const fields = expectArray(
    decodeCbor(bytes, { maxBytes: MAX_ADMISSION_BYTES, maxDepth: 2 }),
    "admit",
    5,
  );
  expectVersion(fields[0], "admit", 1);
  if (fields[1] !== "admit") wrongShape("admit", '"admit"');
  return {
    history: expectBytes(fields[2], "admit history"),
    credential: expectBytes(fields[3], "admit credential"),
    signature: expectBytes(fields[4], "admit signature", 64),
  };
}

/** The relay's verdict. */
export type Verdict = { admitted: true; identifier: string } | { admitted: false; code: string };

/** Encodes a verdict. */
export function encodeVerdict(verdict: Verdict): Uint8Array {
  return verdict.admitted
    ? encodeCbor([1, "admitted", verdict.identifier])
    : encodeCbor([1, "refused", verdict.code]);
}

/**
 * Decodes a verdict.
 * @throws {MalformedError | LimitError}
 */
export function decodeVerdict(bytes: Uint8Array): Verdict {
  const fields = expectArray(decodeCbor(bytes, { maxBytes: 256 }), "verdict", 3);
  expectVersion(fields[0], "verdict", 1);
  if (fields[1] === "admitted") {
    return { admitted: true, identifier: expectText(fields[2], "admitted identifier", 65) };
  }
  if (fields[1] === "refused") {
    return { admitted: false, code: expectText(fields[2], "refusal", 64) };
  }
  return wrongShape("verdict", '"admitted" or "refused"');
}
