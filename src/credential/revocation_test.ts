/**
 * Signed revocation lists and the registry verifiers hold: serials only go
 * up, one list per serial, and revoked credentials or members are refused.
 */
import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519.js";
import { decodeCbor, encodeCbor } from "../encoding/cbor.ts";
import { DOMAIN, type DomainLabel, signedMessage } from "../encoding/domain.ts";
import { LimitError, type MalformedCode, MalformedError } from "../encoding/errors.ts";
import { fromHex, toHex } from "../encoding/hex.ts";
import { CredentialError } from "../errors.ts";
import { identifierToBytes, verifyChangeHistory } from "../identity/change_history.ts";
import type { Identity } from "../identity/identity.ts";
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
import { issueCredential, verifyCredential } from "./credential.ts";
import {
  createRevocationList,
  decodeRevocationList,
  MAX_REVOCATION_BYTES,
  RevocationRegistry,
  verifyRevocationList,
} from "./revocation.ts";
import { TrustStore } from "./trust_store.ts";

const ID = "000102030405060708090a0b0c0d0e0f";
const OTHER_ID = "101112131415161718191a1b1c1d1e1f";

/** A list whose data is `body`, signed by `issuer` in `label`'s domain. */
function signedList(
  issuer: Identity,
  body: unknown[],
  label: DomainLabel = DOMAIN.revocation,
): Promise<Uint8Array> {
  return signedStructure(issuer, encodeCbor(body), label);
}

const authority = await identityFromByte(1);
const member = await identityFromByte(2);
const rotatedAuthority = await authority.rotate(await signerFromByte(3), { now: NOW + DAY });
const otherMember = await identityFromByte(8);
const stranger = await identityFromByte(7);
const trust = new TrustStore([await verifyChangeHistory(authority.history.encoded)]);
const list = await createRevocationList(authority, {
  serial: 7,
  now: NOW,
  credentialIds: [ID],
  identifiers: [member.identifier],
});
/** verifyRevocationList against `trust`. */
const verify = (bytes: Uint8Array) => verifyRevocationList(bytes, trust);

function issue(subject: Identity, id: string, issuer = authority) {
  return issueCredential(issuer, {
    subject: subject.identifier,
    subjectKey: subject.primaryKey,
    attributes: { role: "edge" },
    ttlSeconds: 3600,
    now: NOW,
    id: fromHex(id),
  });
}

Deno.test("createRevocationList: fields and the exact signed data", () => {
  assert.equal(list.issuer, authority.identifier);
  assert.equal(list.serial, 7);
  assert.equal(list.issuedAt, NOW);
  assert.deepEqual(list.credentialIds, [ID]);
  assert.deepEqual(list.identifiers, [member.identifier]);
  const data = encodeCbor([
    1,
    identifierToBytes(authority.identifier),
    7,
    NOW,
    [fromHex(ID)],
    [identifierToBytes(member.identifier)],
  ]);
  assert.equal(toHex(list.data), toHex(data));
  assert.equal(toHex(list.encoded), toHex(encodeCbor([list.data, list.signature])));
  const message = signedMessage(DOMAIN.revocation, list.data);
  assert.ok(ed25519.verify(list.signature, message, authority.primaryKey));
});

Deno.test("createRevocationList: entries are sorted and deduplicated", async () => {
  const sorted = await createRevocationList(authority, {
    serial: 1,
    now: NOW,
    credentialIds: [OTHER_ID, ID, OTHER_ID],
    identifiers: [otherMember.identifier, member.identifier, member.identifier],
  });
  assert.deepEqual(sorted.credentialIds, [ID, OTHER_ID]);
  assert.deepEqual(sorted.identifiers, [member.identifier, otherMember.identifier].sort());
  const empty = await createRevocationList(authority, { serial: 0, now: NOW });
  assert.deepEqual(empty.credentialIds, []);
  assert.deepEqual(empty.identifiers, []);
  await verifyRevocationList(empty.encoded, trust);
});

Deno.test("createRevocationList: refuses bad options", async () => {
  for (const serial of [-1, 1.5, Number.NaN, 2 ** 53]) {
    await assert.rejects(createRevocationList(authority, { serial }), RangeError);
  }
  for (const id of [ID.toUpperCase(), ID.slice(2), ID + "00", "g" + ID.slice(1)]) {
    await assert.rejects(
      createRevocationList(authority, { serial: 1, credentialIds: [id] }),
      TypeError,
    );
  }
  for (const identifier of [member.identifier.slice(1), member.identifier.toUpperCase()]) {
    await assert.rejects(
      createRevocationList(authority, { serial: 1, identifiers: [identifier] }),
      TypeError,
    );
  }
});

Deno.test("verifyRevocationList: accepts from bytes and decoded", async () => {
  const verified = await verifyRevocationList(list.encoded, trust);
  assert.equal(verified.serial, 7);
  const decoded = decodeRevocationList(list.encoded);
  assert.equal(await verifyRevocationList(decoded, trust), decoded);
});

Deno.test("verifyRevocationList: an issuer that is not trusted", async () => {
  await assertRejectsWithCode(
    verifyRevocationList(list.encoded, new TrustStore()),
    CredentialError,
    "untrusted_issuer",
  );
  const byStranger = await createRevocationList(stranger, { serial: 99, identifiers: [] });
  await assertRejectsWithCode(
    verifyRevocationList(byStranger.encoded, trust),
    CredentialError,
    "untrusted_issuer",
  );
  // The authority named as issuer, signed by someone else.
  await assertRejectsWithCode(
    verifyRevocationList(await signedStructure(stranger, list.data, DOMAIN.revocation), trust),
    CredentialError,
    "bad_signature",
  );
});

Deno.test("verifyRevocationList: a flipped bit in the signature is bad_signature", async () => {
  await assertSignatureBitFlipsRejected(list, verify, CredentialError, "bad_signature");
});

Deno.test("verifyRevocationList: a flipped bit in the data", async () => {
  const encoded = list.encoded;
  // The revoked id: an attacker un-revoking a credential.
  const id = indexOf(encoded, fromHex(ID));
  // The revoked identifier.
  const subject = indexOf(encoded, identifierToBytes(member.identifier));
  // The serial (7 becomes 15): an attacker winning a later serial.
  const serial = indexOf(encoded, list.data) + 36;
  assert.equal(encoded[serial], 7);
  const signed = [id * 8 + 4, subject * 8, serial * 8 + 3];
  await assertBitFlipsRejected(encoded, signed, verify, CredentialError, "bad_signature");
  // The issuer: no trusted authority any more.
  const issuer = indexOf(encoded, identifierToBytes(authority.identifier));
  await assertBitFlipsRejected(encoded, [issuer * 8], verify, CredentialError, "untrusted_issuer");
  // Every bit of the encoding: never accepted.
  await assertEveryBitFlipRejected(encoded, verify, [CredentialError, MalformedError, LimitError]);
});

Deno.test("verifyRevocationList: a signature made for another domain", async () => {
  const body = decodeCbor(list.data, { maxBytes: 1024 }) as unknown[];
  for (const label of [DOMAIN.change, DOMAIN.attestation, DOMAIN.credential, DOMAIN.admission]) {
    await assertRejectsWithCode(
      verifyRevocationList(await signedList(authority, body, label), trust),
      CredentialError,
      "bad_signature",
    );
  }
  assert.equal(toHex(await signedList(authority, body)), toHex(list.encoded));
});

Deno.test("RevocationRegistry: apply, idempotence, rollback and conflict", async () => {
  const registry = new RevocationRegistry();
  assert.equal(registry.current(authority.identifier), undefined);
  assert.equal(await registry.apply(list.encoded, trust), true);
  assert.equal(registry.current(authority.identifier)?.serial, 7);
  // The same list again, as bytes or decoded: nothing changes.
  assert.equal(await registry.apply(list.encoded, trust), false);
  assert.equal(await registry.apply(decodeRevocationList(list.encoded), trust), false);

  // A lower serial: a replayed old list must not un-revoke anyone.
  const older = await createRevocationList(authority, { serial: 6, now: NOW - 60 });
  await assertRejectsWithCode(
    registry.apply(older.encoded, trust),
    CredentialError,
    "revocation_rollback",
  );
  const zero = await createRevocationList(authority, { serial: 0, now: NOW + 60 });
  await assertRejectsWithCode(
    registry.apply(zero.encoded, trust),
    CredentialError,
    "revocation_rollback",
  );

  // The same serial with other content.
  const conflicts = [
    await createRevocationList(authority, { serial: 7, now: NOW, credentialIds: [ID] }),
    await createRevocationList(authority, {
      serial: 7,
      now: NOW + 1,
      credentialIds: [ID],
      identifiers: [member.identifier],
    }),
    await createRevocationList(authority, {
      serial: 7,
      now: NOW,
      credentialIds: [ID, OTHER_ID],
      identifiers: [member.identifier],
    }),
  ];
  for (const conflict of conflicts) {
    await assertRejectsWithCode(
      registry.apply(conflict.encoded, trust),
      CredentialError,
      "revocation_conflict",
    );
  }
  // Nothing above replaced the held list.
  assert.equal(toHex(registry.current(authority.identifier)!.data), toHex(list.data));
  assert.ok(registry.isIdentifierRevoked(authority.identifier, member.identifier));

  // A higher serial replaces it: lists are complete, not deltas.
  const newer = await createRevocationList(authority, {
    serial: 8,
    now: NOW + 120,
    credentialIds: [OTHER_ID],
  });
  assert.equal(await registry.apply(newer.encoded, trust), true);
  assert.equal(registry.current(authority.identifier)?.serial, 8);
  assert.equal(registry.isIdentifierRevoked(authority.identifier, member.identifier), false);
  await assertRejectsWithCode(
    registry.apply(list.encoded, trust),
    CredentialError,
    "revocation_rollback",
  );
});

Deno.test("RevocationRegistry: refuses lists that do not verify, and keeps nothing", async () => {
  const registry = new RevocationRegistry();
  await assertRejectsWithCode(
    registry.apply(list.encoded, new TrustStore()),
    CredentialError,
    "untrusted_issuer",
  );
  await assertRejectsWithCode(
    registry.apply(flipBit(list.encoded, (list.encoded.length - 1) * 8), trust),
    CredentialError,
    "bad_signature",
  );
  assert.equal(registry.current(authority.identifier), undefined);
  assert.equal(registry.isIdentifierRevoked(authority.identifier, member.identifier), false);
});

Deno.test("verifyCredential: a revoked id and a revoked identifier", async () => {
  const registry = new RevocationRegistry();
  const revokedById = await issue(otherMember, ID); // the id is on the list
  const revokedBySubject = await issue(member, OTHER_ID); // the subject is on the list
  const clean = await issue(otherMember, OTHER_ID);
  const at = (subject: Identity) => ({
    trust,
    subject: subject.identifier,
    subjectKey: subject.primaryKey,
    now: NOW,
    revocations: registry,
  });
  // Before the list arrives, they are valid.
  await verifyCredential(revokedById.encoded, at(otherMember));
  await verifyCredential(revokedBySubject.encoded, at(member));
  await verifyCredential(clean.encoded, at(otherMember));

  await registry.apply(list.encoded, trust);
  assert.ok(registry.isRevoked(revokedById));
  assert.ok(registry.isRevoked(revokedBySubject));
  assert.equal(registry.isRevoked(clean), false);
  assert.ok(registry.isIdentifierRevoked(authority.identifier, member.identifier));
  assert.equal(registry.isIdentifierRevoked(authority.identifier, otherMember.identifier), false);

  await assertRejectsWithCode(
    verifyCredential(revokedById.encoded, at(otherMember)),
    CredentialError,
    "revoked",
  );
  await assertRejectsWithCode(
    verifyCredential(revokedBySubject.encoded, at(member)),
    CredentialError,
    "revoked",
  );
  assert.equal((await verifyCredential(clean.encoded, at(otherMember))).id, OTHER_ID);
});

Deno.test("RevocationRegistry: a list only revokes its own issuer's credentials", async () => {
  const both = new TrustStore([authority, stranger]);
  const registry = new RevocationRegistry();
  // The stranger (also trusted here) revokes the member and the id.
  const strangerList = await createRevocationList(stranger, {
    serial: 100,
    now: NOW,
    credentialIds: [ID],
    identifiers: [member.identifier],
  });
  assert.equal(await registry.apply(strangerList.encoded, both), true);
  const byAuthority = await issue(member, ID);
  assert.equal(registry.isRevoked(byAuthority), false);
  await verifyCredential(byAuthority.encoded, {
    trust: both,
    subject: member.identifier,
    subjectKey: member.primaryKey,
    now: NOW,
    revocations: registry,
  });
  // Serials are per issuer: the authority's serial 7 is not a rollback.
  assert.equal(await registry.apply(list.encoded, both), true);
  assert.ok(registry.isRevoked(byAuthority));
  const byStranger = await issue(member, OTHER_ID, stranger);
  assert.ok(registry.isRevoked(byStranger));
});

Deno.test("RevocationRegistry: after a rotation, lists must be signed by the new key", async () => {
  const store = new TrustStore([await verifyChangeHistory(authority.history.encoded)]);
  await store.update(rotatedAuthority.history.encoded);
  const registry = new RevocationRegistry();
  await assertRejectsWithCode(
    registry.apply(list.encoded, store),
    CredentialError,
    "bad_signature",
  );
  const fresh = await createRevocationList(rotatedAuthority, {
    serial: 7,
    now: NOW,
    credentialIds: [ID],
    identifiers: [member.identifier],
  });
  assert.equal(fresh.issuer, list.issuer);
  assert.equal(toHex(fresh.data), toHex(list.data)); // same content, other key
  assert.equal(await registry.apply(fresh.encoded, store), true);
});

Deno.test("RevocationRegistry: a large list", async () => {
  const ids = Array.from({ length: 5000 }, (_, i) => i.toString(16).padStart(32, "0"));
  const big = await createRevocationList(authority, { serial: 1, now: NOW, credentialIds: ids });
  assert.ok(big.encoded.length < MAX_REVOCATION_BYTES);
  const registry = new RevocationRegistry();
  await registry.apply(big.encoded, trust);
  const revoked = await issue(member, ids[4321]);
  const kept = await issue(otherMember, "ff".repeat(16));
  assert.ok(registry.isRevoked(revoked));
  assert.equal(registry.isRevoked(kept), false);
});

Deno.test("decodeRevocationList: malformed input is a typed error", async () => {
  const encoded = list.encoded;
  assertRefusesBadFraming(decodeRevocationList, encoded, MAX_REVOCATION_BYTES);
  const raw = decodeCbor(encoded, { maxBytes: 1024 }) as Uint8Array[];
  assertThrowsWithCode(
    () => decodeRevocationList(encodeCbor([raw[0]])),
    MalformedError,
    "wrong_shape",
  );
  assertThrowsWithCode(
    () => decodeRevocationList(encodeCbor([raw[0], raw[1].subarray(2)])),
    MalformedError,
    "wrong_shape",
  );
  assertThrowsWithCode(
    () => decodeRevocationList(Uint8Array.of(0x9f, ...encoded.subarray(1), 0xff)),
    MalformedError,
    "indefinite_length",
  );

  const issuer = identifierToBytes(authority.identifier);
  const id = fromHex(ID);
  const subject = identifierToBytes(member.identifier);
  const cases: [string, unknown[], MalformedCode][] = [
    ["five fields", [1, issuer, 7, NOW, [id]], "wrong_shape"],
    ["short issuer", [1, issuer.subarray(1), 7, NOW, [id], [subject]], "wrong_shape"],
    ["negative serial", [1, issuer, -7, NOW, [id], [subject]], "wrong_shape"],
    ["serial as text", [1, issuer, "7", NOW, [id], [subject]], "wrong_shape"],
    ["short id", [1, issuer, 7, NOW, [id.subarray(1)], [subject]], "wrong_shape"],
    ["id as text", [1, issuer, 7, NOW, [ID], [subject]], "wrong_shape"],
    ["short identifier", [1, issuer, 7, NOW, [id], [subject.subarray(1)]], "wrong_shape"],
    ["ids not a list", [1, issuer, 7, NOW, id, [subject]], "wrong_shape"],
    ["nested ids", [1, issuer, 7, NOW, [[id]], [subject]], "too_deep"],
    ["version 2", [2, issuer, 7, NOW, [id], [subject]], "unknown_version"],
    ["version 0", [0, issuer, 7, NOW, [id], [subject]], "unknown_version"],
  ];
  for (const [what, body, code] of cases) {
    const signed = await signedList(authority, body);
    assertThrowsWithCode(() => decodeRevocationList(signed), MalformedError, code, what);
  }
  // A signed list in a future version never reaches the registry.
  const future = await signedList(authority, [2, issuer, 8, NOW, [], []]);
  await assertRejectsWithCode(
    new RevocationRegistry().apply(future, trust),
    MalformedError,
    "unknown_version",
  );
});

Deno.test("createRevocationList: a serial beyond 32 bits round trips", async () => {
  const big = await createRevocationList(authority, { serial: 2 ** 32, now: NOW });
  assert.equal((await verifyRevocationList(big.encoded, trust)).serial, 2 ** 32);
});
