/**
 * Relay admission (docs/design.md §5; docs/protocol.md §19), version 2:
 * before a connection may send anything through a relay, the two ends
 * prove who they are to each other. A signed challenge each way is
 * enough: the relay needs no channel keys and adds no second layer of
 * encryption.
 *
 * ```
 * member → relay   Hello     = [2, "hello", member_nonce: bstr .size 32]
 * relay → member   Challenge = [2, "challenge", relay_nonce: bstr .size 32,
 *                               history: bstr, credential: bstr, signature: bstr .size 64]
 * member → relay   Admit     = [2, "admit", history: bstr, credential: bstr, signature: bstr .size 64]
 * relay → member   Admitted  = [2, "admitted", identifier: text]      (then routed messages)
 *                / Refused   = [2, "refused", code: text]              (then the relay closes)
 * ```
 *
 * - The relay's signature, by its identity's current key over
 *   `signedMessage(DOMAIN.relayChallenge, member_nonce || relay_nonce)`,
 *   with its credential (role `relay`, and in `relay_addresses` the address
 *   the member dialled), shows the member which relay it reached.
 * - The member's signature, by its current key over
 *   `signedMessage(DOMAIN.admission, relay_identifier || relay_nonce || member_nonce)`,
 *   admits it at that relay and on that connection only: a relay that
 *   passes another relay's challenge on to a member cannot use the answer
 *   there (the member refuses a relay whose credential does not name the
 *   address it dialled, and its signature names the relay it checked).
 * - A fresher credential on an admitted connection is signed the same way
 *   (`DOMAIN.relayRefresh`, over relay_identifier || relay_nonce ||
 *   SHA-256(credential)), so only the admitted member can present one.
 *
 * All three are domain-separated, so no other signed structure can stand
 * in for them, and fresh per connection (both nonces), so none can be
 * replayed.
 *
 * @module
 */
import { sha256 } from "../crypto/hash.ts";
import { decodeCbor, encodeCbor } from "../encoding/cbor.ts";
import { DOMAIN, signedMessage } from "../encoding/domain.ts";
import {
  expectArray,
  expectBytes,
  expectText,
  expectVersion,
  wrongShape,
} from "../encoding/shape.ts";
import { identifierToBytes } from "../identity/change_history.ts";
import type { Identity } from "../identity/identity.ts";

/** Admission protocol version. */
export const ADMISSION_VERSION = 2;
/** Largest admission message (history and credential): the relay's limit before admission. */
export const MAX_ADMISSION_BYTES = 48 * 1024;
/** Largest hello. */
export const MAX_HELLO_BYTES = 64;

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) out.set(part, at), at += part.length;
  return out;
}

/** What the relay signs: `member_nonce || relay_nonce` in the challenge domain. */
export function challengeMessage(memberNonce: Uint8Array, relayNonce: Uint8Array): Uint8Array {
  return signedMessage(DOMAIN.relayChallenge, concat(memberNonce, relayNonce));
}

/** What the member signs to be admitted: the relay's identifier and both nonces. */
export function admissionMessage(
  relayIdentifier: string,
  relayNonce: Uint8Array,
  memberNonce: Uint8Array,
): Uint8Array {
  return signedMessage(
    DOMAIN.admission,
    concat(identifierToBytes(relayIdentifier), relayNonce, memberNonce),
  );
}

/** What the member signs to present a fresher credential on its admitted connection. */
export function refreshMessage(
  relayIdentifier: string,
  relayNonce: Uint8Array,
  credential: Uint8Array,
): Uint8Array {
  return signedMessage(
    DOMAIN.relayRefresh,
    concat(identifierToBytes(relayIdentifier), relayNonce, sha256(credential)),
  );
}

/** The member's hello: its nonce. */
export function encodeHello(nonce: Uint8Array): Uint8Array {
  return encodeCbor([ADMISSION_VERSION, "hello", nonce]);
}

/**
 * Decodes a hello.
 * @throws {MalformedError | LimitError}
 */
export function decodeHello(bytes: Uint8Array): Uint8Array {
  const fields = expectArray(decodeCbor(bytes, { maxBytes: MAX_HELLO_BYTES }), "hello", 3);
  expectVersion(fields[0], "hello", ADMISSION_VERSION);
  if (fields[1] !== "hello") wrongShape("hello", '"hello"');
  return expectBytes(fields[2], "hello nonce", 32);
}

/** A relay's challenge, or a member's admission: who it is, and its signature. */
export interface Proof {
  /** The signer's encoded change history. */
  readonly history: Uint8Array;
  /** The signer's encoded credential. */
  readonly credential: Uint8Array;
  /** 64-byte Ed25519 signature by the history's current key. */
  readonly signature: Uint8Array;
}

/** A decoded challenge (nothing verified yet). */
export interface Challenge extends Proof {
  /** The relay's nonce for this connection. */
  readonly nonce: Uint8Array;
}

/** The relay's challenge: its nonce, identity, credential, and its signature over both nonces. */
export async function encodeChallenge(
  relay: Identity,
  credential: Uint8Array,
  memberNonce: Uint8Array,
  relayNonce: Uint8Array,
): Promise<Uint8Array> {
  const signature = await relay.signer.sign(challengeMessage(memberNonce, relayNonce));
  return encodeCbor([
    ADMISSION_VERSION,
    "challenge",
    relayNonce,
    relay.history.encoded,
    credential,
    signature,
  ]);
}

/**
 * Decodes a challenge.
 * @throws {MalformedError | LimitError}
 */
export function decodeChallenge(bytes: Uint8Array): Challenge {
  const fields = expectArray(
    decodeCbor(bytes, { maxBytes: MAX_ADMISSION_BYTES, maxDepth: 2 }),
    "challenge",
    6,
  );
  expectVersion(fields[0], "challenge", ADMISSION_VERSION);
  if (fields[1] !== "challenge") wrongShape("challenge", '"challenge"');
  return {
    nonce: expectBytes(fields[2], "challenge nonce", 32),
    history: expectBytes(fields[3], "challenge history"),
    credential: expectBytes(fields[4], "challenge credential"),
    signature: expectBytes(fields[5], "challenge signature", 64),
  };
}

/** The member's answer: its history, a credential, and its signature bound to this relay. */
export async function encodeAdmit(
  identity: Identity,
  credential: Uint8Array,
  relayIdentifier: string,
  relayNonce: Uint8Array,
  memberNonce: Uint8Array,
): Promise<Uint8Array> {
  const signature = await identity.signer.sign(
    admissionMessage(relayIdentifier, relayNonce, memberNonce),
  );
  return encodeCbor([ADMISSION_VERSION, "admit", identity.history.encoded, credential, signature]);
}

/**
 * Decodes an admission answer.
 * @throws {MalformedError | LimitError}
 */
export function decodeAdmit(bytes: Uint8Array): Proof {
  const fields = expectArray(
    decodeCbor(bytes, { maxBytes: MAX_ADMISSION_BYTES, maxDepth: 2 }),
    "admit",
    5,
  );
  expectVersion(fields[0], "admit", ADMISSION_VERSION);
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
    ? encodeCbor([ADMISSION_VERSION, "admitted", verdict.identifier])
    : encodeCbor([ADMISSION_VERSION, "refused", verdict.code]);
}

/**
 * Decodes a verdict.
 * @throws {MalformedError | LimitError}
 */
export function decodeVerdict(bytes: Uint8Array): Verdict {
  const fields = expectArray(decodeCbor(bytes, { maxBytes: 256 }), "verdict", 3);
  expectVersion(fields[0], "verdict", ADMISSION_VERSION);
  if (fields[1] === "admitted") {
    return { admitted: true, identifier: expectText(fields[2], "admitted identifier", 65) };
  }
  if (fields[1] === "refused") {
    return { admitted: false, code: expectText(fields[2], "refusal", 64) };
  }
  return wrongShape("verdict", '"admitted" or "refused"');
}
