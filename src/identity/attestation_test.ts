/**
 * Purpose key attestations: an identity's current key vouches for an X25519
 * key, for one purpose, for a while.
 */
import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519.js";
import { decodeCbor, encodeCbor } from "../encoding/cbor.ts";
import { DOMAIN, type DomainLabel, signedMessage } from "../encoding/domain.ts";
import { LimitError, MalformedError } from "../encoding/errors.ts";
import { toHex } from "../encoding/hex.ts";
import { IdentityError } from "../errors.ts";
import {
  assertBitFlipsRejected,
  assertEveryBitFlipRejected,
  assertRefusesBadFraming,
  assertRejectsWithCode,
  assertSignatureBitFlipsRejected,
  assertThrowsWithCode,
  DAY,
  flipBit,
  identityFromByte,
  indexOf,
  NOW,
  signedStructure,
  signerFromByte,
} from "../testdata/test_helpers.ts";
import {
  type Attestation,
  createAttestation,
  decodeAttestation,
  DEFAULT_SKEW_SECONDS,
  MAX_ATTESTATION_BYTES,
  PURPOSE,
  verifyAttestation,
} from "./attestation.ts";
import { identifierToBytes, verifyChangeHistory } from "./change_history.ts";
import type { Identity } from "./identity.ts";

const X25519_KEY = new Uint8Array(32).fill(0x04);
const OTHER_KEY = new Uint8Array(32).fill(0x05);

/** An attestation with arbitrary data, signed by `identity` in `label`'s domain. */
function signedAttestation(
  identity: Identity,
  body: unknown[],
  label: DomainLabel = DOMAIN.attestation,
): Promise<Uint8Array> {
  return signedStructure(identity, encodeCbor(body), label);
}

const member = await identityFromByte(2);
const authority = await identityFromByte(1);
const attestation = await createAttestation(member, X25519_KEY, { now: NOW, ttlSeconds: DAY });
/** verifyAttestation against the member, at NOW. */
const verify = (bytes: Uint8Array) => verifyAttestation(bytes, member, { now: NOW });

Deno.test("createAttestation: fields, exact data and signature", () => {
  assert.equal(attestation.subject, member.identifier);
  assert.equal(attestation.purpose, PURPOSE.secureChannel);
  assert.equal(toHex(attestation.publicKey), toHex(X25519_KEY));
  assert.equal(attestation.createdAt, NOW);
  assert.equal(attestation.expiresAt, NOW + DAY);
  assert.equal(
    toHex(attestation.data),
    toHex(encodeCbor([1, identifierToBytes(member.identifier), 1, X25519_KEY, NOW, NOW + DAY])),
  );
  assert.equal(
    toHex(attestation.encoded),
    toHex(encodeCbor([attestation.data, attestation.signature])),
  );
  const message = signedMessage(DOMAIN.attestation, attestation.data);
  assert.ok(ed25519.verify(attestation.signature, message, member.primaryKey));
});

Deno.test("createAttestation: default lifetime is 30 days; key must be 32 bytes", async () => {
  const a = await createAttestation(member, X25519_KEY, { now: NOW });
  assert.equal(a.expiresAt - a.createdAt, 30 * DAY);
  await assert.rejects(createAttestation(member, new Uint8Array(31), { now: NOW }), RangeError);
  await assert.rejects(createAttestation(member, new Uint8Array(33), { now: NOW }), RangeError);
});

Deno.test("verifyAttestation: accepts from bytes and decoded, against a verified history", async () => {
  const verified = await verifyChangeHistory(member.history.encoded);
  const fromBytes = await verifyAttestation(attestation.encoded, verified, { now: NOW });
  assert.equal(toHex(fromBytes.publicKey), toHex(X25519_KEY));
  const decoded = decodeAttestation(attestation.encoded);
  assert.equal(toHex(decoded.data), toHex(attestation.data));
  await verifyAttestation(decoded, member, { now: NOW + 100, expectedKey: X25519_KEY });
});

Deno.test("verifyAttestation: expectedKey must be the attested key", async () => {
  await assertRejectsWithCode(
    verifyAttestation(attestation.encoded, member, { now: NOW, expectedKey: OTHER_KEY }),
    IdentityError,
    "key_mismatch",
  );
  // A different X25519 key attested by the same identity is accepted for it.
  const other = await createAttestation(member, OTHER_KEY, { now: NOW });
  await verifyAttestation(other.encoded, member, { now: NOW, expectedKey: OTHER_KEY });
  await assertRejectsWithCode(
    verifyAttestation(other.encoded, member, { now: NOW, expectedKey: X25519_KEY }),
    IdentityError,
    "key_mismatch",
  );
});

Deno.test("verifyAttestation: an attestation about another identity", async () => {
  // Signed by the member but naming the authority as its subject.
  const aboutAuthority = await signedAttestation(member, [
    1,
    identifierToBytes(authority.identifier),
    1,
    X25519_KEY,
    NOW,
    NOW + DAY,
  ]);
  await assertRejectsWithCode(
    verifyAttestation(aboutAuthority, member, { now: NOW }),
    IdentityError,
    "subject_mismatch",
  );
  // Offered as the authority's: the authority's key never signed it.
  await assertRejectsWithCode(
    verifyAttestation(aboutAuthority, authority, { now: NOW }),
    IdentityError,
    "bad_signature",
  );
  // The member's own attestation offered for the authority.
  await assertRejectsWithCode(
    verifyAttestation(attestation.encoded, authority, { now: NOW }),
    IdentityError,
    "bad_signature",
  );
});

Deno.test("verifyAttestation: purpose must match", async () => {
  const other = await createAttestation(member, X25519_KEY, { now: NOW, purpose: 2 });
  await assertRejectsWithCode(
    verifyAttestation(other.encoded, member, { now: NOW }),
    IdentityError,
    "wrong_purpose",
  );
  await verifyAttestation(other.encoded, member, { now: NOW, purpose: 2 });
  await assertRejectsWithCode(
    verifyAttestation(attestation.encoded, member, { now: NOW, purpose: 2 }),
    IdentityError,
    "wrong_purpose",
  );
});

Deno.test("verifyAttestation: expiry, with the default skew on both sides", async () => {
  assert.equal(DEFAULT_SKEW_SECONDS, 60);
  const end = attestation.expiresAt;
  await verifyAttestation(attestation.encoded, member, { now: end });
  await verifyAttestation(attestation.encoded, member, { now: end + 60 });
  await assertRejectsWithCode(
    verifyAttestation(attestation.encoded, member, { now: end + 61 }),
    IdentityError,
    "expired",
  );
  await assertRejectsWithCode(
    verifyAttestation(attestation.encoded, member, { now: end + 10 * DAY }),
    IdentityError,
    "expired",
  );
  // An explicit skew replaces the default.
  await assertRejectsWithCode(
    verifyAttestation(attestation.encoded, member, { now: end + 1, skewSeconds: 0 }),
    IdentityError,
    "expired",
  );
  await verifyAttestation(attestation.encoded, member, { now: end + 300, skewSeconds: 300 });
});

Deno.test("verifyAttestation: not yet valid beyond the skew, accepted within", async () => {
  const start = attestation.createdAt;
  await verifyAttestation(attestation.encoded, member, { now: start - 60 });
  await assertRejectsWithCode(
    verifyAttestation(attestation.encoded, member, { now: start - 61 }),
    IdentityError,
    "not_yet_valid",
  );
  await assertRejectsWithCode(
    verifyAttestation(attestation.encoded, member, { now: start - 1, skewSeconds: 0 }),
    IdentityError,
    "not_yet_valid",
  );
});

Deno.test("verifyAttestation: a flipped bit in the signature is bad_signature", async () => {
  await assertSignatureBitFlipsRejected(attestation, verify, IdentityError, "bad_signature");
});

Deno.test("verifyAttestation: once the attestation verified, no other bytes share its cache entry", async () => {
  await verify(attestation.encoded);
  await assertSignatureBitFlipsRejected(attestation, verify, IdentityError, "bad_signature");
  await verify(attestation.encoded);
});

Deno.test("verifyAttestation: a flipped bit in the data", async () => {
  const encoded = attestation.encoded;
  // In the attested key: the signature no longer covers it.
  const keyAt = indexOf(encoded, X25519_KEY);
  // In expires_at (the data's last byte).
  const end = indexOf(encoded, attestation.data) + attestation.data.length - 1;
  // In the subject, the purpose or created_at: the signature is checked first.
  const subjectAt = indexOf(encoded, identifierToBytes(member.identifier));
  const purposeAt = indexOf(encoded, attestation.data) + 36; // after [1, subject,
  assert.equal(encoded[purposeAt], PURPOSE.secureChannel);
  const createdAt = end - 5; // the last byte of created_at (1a xx xx xx xx)
  await assertBitFlipsRejected(
    encoded,
    [keyAt * 8 + 5, end * 8 + 1, subjectAt * 8, purposeAt * 8 + 1, createdAt * 8 + 2],
    verify,
    IdentityError,
    "bad_signature",
  );
  // A bad signature is reported as such even when the attestation is also expired.
  await assertRejectsWithCode(
    verifyAttestation(flipBit(encoded, (encoded.length - 1) * 8), member, { now: NOW + 99 * DAY }),
    IdentityError,
    "bad_signature",
  );
  // Every bit of the encoding: never accepted.
  await assertEveryBitFlipRejected(encoded, verify, [IdentityError, MalformedError, LimitError]);
});

Deno.test("verifyAttestation: only the identity's current key counts", async () => {
  const rotated = await member.rotate(await signerFromByte(6), { now: NOW + 10 });
  await assertRejectsWithCode(
    verifyAttestation(attestation.encoded, rotated, { now: NOW }),
    IdentityError,
    "bad_signature",
  );
  const fresh = await createAttestation(rotated, X25519_KEY, { now: NOW + 10 });
  await verifyAttestation(fresh.encoded, rotated, { now: NOW + 10 });
  await assertRejectsWithCode(
    verifyAttestation(fresh.encoded, member, { now: NOW + 10 }),
    IdentityError,
    "bad_signature",
  );
});

Deno.test("verifyAttestation: a signature made for another domain", async () => {
  const body = [1, identifierToBytes(member.identifier), 1, X25519_KEY, NOW, NOW + DAY];
  for (const label of [DOMAIN.change, DOMAIN.credential, DOMAIN.revocation, DOMAIN.admission]) {
    await assertRejectsWithCode(
      verifyAttestation(await signedAttestation(member, body, label), member, { now: NOW }),
      IdentityError,
      "bad_signature",
    );
  }
  // The same body in the right domain verifies.
  await verifyAttestation(await signedAttestation(member, body), member, { now: NOW });
});

Deno.test("decodeAttestation: malformed input is a typed error", async () => {
  const encoded = attestation.encoded;
  assertRefusesBadFraming(decodeAttestation, encoded, MAX_ATTESTATION_BYTES);
  const raw = decodeCbor(encoded, { maxBytes: 1024 }) as Uint8Array[];
  assertThrowsWithCode(
    () => decodeAttestation(encodeCbor([raw[0]])),
    MalformedError,
    "wrong_shape",
  );
  assertThrowsWithCode(
    () => decodeAttestation(encodeCbor([...raw, raw[1]])),
    MalformedError,
    "wrong_shape",
  );
  assertThrowsWithCode(
    () => decodeAttestation(encodeCbor([raw[0], raw[1].subarray(1)])),
    MalformedError,
    "wrong_shape",
  );
  const id = identifierToBytes(member.identifier);
  const shapes: unknown[][] = [
    [1, id, 1, X25519_KEY, NOW], // five fields
    [1, id.subarray(1), 1, X25519_KEY, NOW, NOW + DAY], // short subject
    [1, id, 1, new Uint8Array(33), NOW, NOW + DAY], // long key
    [1, id, -1, X25519_KEY, NOW, NOW + DAY], // negative purpose
    [1, id, 1, X25519_KEY, "now", NOW + DAY], // text time
    [1, id, 1, X25519_KEY, NOW, null], // no expiry
    [1, id, 1, X25519_KEY, NOW, NOW - 1], // expires before it was made
  ];
  for (const body of shapes) {
    assertThrowsWithCode(
      () => decodeAttestation(encodeCbor([encodeCbor(body), raw[1]])),
      MalformedError,
      "wrong_shape",
    );
  }
  // Indefinite-length data, properly signed, is still refused.
  const data = Uint8Array.of(0x9f, ...attestation.data.subarray(1), 0xff);
  const indefinite = await signedStructure(member, data, DOMAIN.attestation);
  assertThrowsWithCode(() => decodeAttestation(indefinite), MalformedError, "indefinite_length");
  // Signed data above its own limit.
  const big = await signedAttestation(member, [1, id, 1, X25519_KEY, NOW, NOW, "x".repeat(300)]);
  assertThrowsWithCode(() => decodeAttestation(big), LimitError, "too_large");
});

Deno.test("decodeAttestation: an unknown version is refused, even if signed", async () => {
  const id = identifierToBytes(member.identifier);
  for (const version of [0, 2]) {
    const encoded = await signedAttestation(member, [version, id, 1, X25519_KEY, NOW, NOW + DAY]);
    assertThrowsWithCode(() => decodeAttestation(encoded), MalformedError, "unknown_version");
    await assertRejectsWithCode(
      verifyAttestation(encoded, member, { now: NOW }),
      MalformedError,
      "unknown_version",
    );
  }
});

Deno.test("verifyAttestation: returns the attestation it checked", async () => {
  const result: Attestation = await verifyAttestation(attestation, member, { now: NOW });
  assert.equal(result, attestation);
});

Deno.test("verifyAttestation: from the signature cache, every check but the signature still runs", async () => {
  const fresh = await createAttestation(member, X25519_KEY, { now: NOW, ttlSeconds: DAY });
  const first = await verifyAttestation(fresh.encoded, member, {
    now: NOW,
    expectedKey: X25519_KEY,
  });
  // The same bytes under the same key: the attestation verified before.
  assert.equal(
    await verifyAttestation(fresh.encoded, member, { now: NOW, expectedKey: X25519_KEY }),
    first,
  );
  await assertRejectsWithCode(
    verifyAttestation(fresh.encoded, member, { now: NOW, expectedKey: OTHER_KEY }),
    IdentityError,
    "key_mismatch",
  );
  await assertRejectsWithCode(
    verifyAttestation(fresh.encoded, member, { now: NOW + DAY + DEFAULT_SKEW_SECONDS + 1 }),
    IdentityError,
    "expired",
  );
  await assertRejectsWithCode(
    verifyAttestation(fresh.encoded, member, { now: NOW - DEFAULT_SKEW_SECONDS - 1 }),
    IdentityError,
    "not_yet_valid",
  );
  await assertRejectsWithCode(
    verifyAttestation(fresh.encoded, member, { now: NOW, purpose: PURPOSE.secureChannel + 1 }),
    IdentityError,
    "wrong_purpose",
  );
});

Deno.test("verifyAttestation: one verified under the identity's old key is refused under its rotated history (the signature cache holds the key)", async () => {
  const fresh = await createAttestation(member, X25519_KEY, { now: NOW, ttlSeconds: DAY });
  await verifyAttestation(fresh.encoded, member, { now: NOW });
  await verifyAttestation(fresh.encoded, member, { now: NOW });
  const rotated = await member.rotate(await signerFromByte(6), { now: NOW + 10 });
  await assertRejectsWithCode(
    verifyAttestation(fresh.encoded, rotated, { now: NOW }),
    IdentityError,
    "bad_signature",
  );
  // Another identity whose key differs, presenting the same bytes.
  await assertRejectsWithCode(
    verifyAttestation(fresh.encoded, authority, { now: NOW }),
    IdentityError,
    "bad_signature",
  );
});
