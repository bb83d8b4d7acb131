/**
 * Change histories: creation, rotation, verification of every link, and
 * a typed refusal for every way a history can be wrong.
 */
import assert from "node:assert/strict";
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";
import { decodeCbor, encodeCbor } from "../encoding/cbor.ts";
import { DOMAIN, type DomainLabel, signedMessage } from "../encoding/domain.ts";
import { LimitError, MalformedError } from "../encoding/errors.ts";
import { toHex } from "../encoding/hex.ts";
import { IdentityError } from "../errors.ts";
import {
  assertEveryBitFlipRejected,
  assertRefusesBadFraming,
  assertRejectsWithCode,
  assertThrowsWithCode,
  DAY,
  flipBit,
  identityFromByte,
  indexOf,
  NOW,
  signerFromByte,
} from "../testdata/test_helpers.ts";
import {
  acceptHistoryUpdate,
  ChangeHistory,
  createChangeHistory,
  identifierFromBytes,
  identifierOf,
  identifierToBytes,
  isIdentifier,
  MAX_CHANGES,
  MAX_HISTORY_BYTES,
  rotateChangeHistory,
  verifyChangeHistory,
} from "./change_history.ts";
import { Identity } from "./identity.ts";
import type { Signer } from "./signer.ts";
import { SoftwareSigner } from "./software_signer.ts";

function rawChanges(encoded: Uint8Array): Uint8Array[][] {
  return decodeCbor(encoded, { maxBytes: MAX_HISTORY_BYTES }) as Uint8Array[][];
}

/** One change, `[data, signature by signers[0], signature by signers[1]?]`. */
async function signed(
  data: Uint8Array,
  signers: Signer[],
  label: DomainLabel = DOMAIN.change,
): Promise<Uint8Array[]> {
  const message = signedMessage(label, data);
  return [data, ...await Promise.all(signers.map((s) => s.sign(message)))];
}

const authority = await signerFromByte(1);
const rotated = await signerFromByte(3);
const other = await signerFromByte(5);
const history = await createChangeHistory(authority, { now: NOW });
const rotatedHistory = await rotateChangeHistory(history, {
  previous: authority,
  next: rotated,
  now: NOW + DAY,
});

Deno.test("createChangeHistory: one change holding the signer's key", async () => {
  assert.equal(history.changes.length, 1);
  const [change] = history.changes;
  assert.equal(toHex(change.primaryKey), toHex(authority.publicKey));
  assert.equal(change.previousHash, null);
  assert.equal(change.previousSignature, null);
  assert.equal(change.createdAt, NOW);
  assert.equal(change.signature.length, 64);
  assert.equal(toHex(change.data), toHex(encodeCbor([1, null, authority.publicKey, NOW])));
  const verified = await verifyChangeHistory(history.encoded);
  assert.equal(verified.identifier, history.identifier);
  assert.equal(toHex(verified.primaryKey), toHex(authority.publicKey));
});

Deno.test("identifier: I + hex SHA-256 of the first change's signed bytes", () => {
  const expected = "I" + toHex(nobleSha256(history.changes[0].data));
  assert.equal(history.identifier, expected);
  assert.equal(history.identifier.length, 65);
  assert.ok(isIdentifier(history.identifier));
  assert.equal(identifierOf(history.changes[0].data), expected);
  assert.equal(identifierFromBytes(identifierToBytes(expected)), expected);
  assert.equal(toHex(identifierToBytes(expected)), expected.slice(1));
});

Deno.test("identifier: depends on the first change, not only on the key", async () => {
  const later = await createChangeHistory(authority, { now: NOW + 1 });
  const otherKey = await createChangeHistory(other, { now: NOW });
  assert.notEqual(later.identifier, history.identifier);
  assert.notEqual(otherKey.identifier, history.identifier);
  assert.equal((await createChangeHistory(authority, { now: NOW })).identifier, history.identifier);
});

Deno.test("identifier helpers refuse malformed identifiers", () => {
  const good = history.identifier;
  for (
    const bad of [
      good.toUpperCase(),
      good.slice(1),
      good.slice(0, 64),
      good + "0",
      "i" + good.slice(1),
    ]
  ) {
    assert.equal(isIdentifier(bad), false, bad);
    assert.throws(() => identifierToBytes(bad), TypeError);
  }
  assert.throws(() => identifierFromBytes(new Uint8Array(31)), RangeError);
});

Deno.test("ChangeHistory.decode: round trip of the encoded bytes", () => {
  const decoded = ChangeHistory.decode(rotatedHistory.encoded);
  assert.equal(toHex(decoded.encoded), toHex(rotatedHistory.encoded));
  assert.equal(decoded.identifier, history.identifier);
  assert.equal(decoded.changes.length, 2);
  for (let i = 0; i < 2; i++) {
    const [a, b] = [decoded.changes[i], rotatedHistory.changes[i]];
    assert.equal(toHex(a.data), toHex(b.data));
    assert.equal(toHex(a.signature), toHex(b.signature));
    assert.equal(a.createdAt, b.createdAt);
  }
});

Deno.test("rotateChangeHistory: keeps the identifier, links and double-signs", async () => {
  assert.equal(rotatedHistory.changes.length, 2);
  assert.equal(rotatedHistory.identifier, history.identifier);
  assert.equal(toHex(rotatedHistory.primaryKey), toHex(rotated.publicKey));
  const [first, second] = rotatedHistory.changes;
  assert.equal(toHex(second.previousHash!), toHex(nobleSha256(first.data)));
  assert.equal(second.createdAt, NOW + DAY);
  const message = signedMessage(DOMAIN.change, second.data);
  assert.equal(toHex(second.signature), toHex(await rotated.sign(message)));
  assert.equal(toHex(second.previousSignature!), toHex(await authority.sign(message)));
  const verified = await verifyChangeHistory(rotatedHistory.encoded);
  assert.equal(verified.identifier, history.identifier);
  assert.equal(toHex(verified.primaryKey), toHex(rotated.publicKey));
});

Deno.test("rotateChangeHistory: several rotations verify; time never goes back", async () => {
  const third = await rotateChangeHistory(rotatedHistory, {
    previous: rotated,
    next: other,
    now: NOW, // earlier than the last change: clamped to it
  });
  assert.equal(third.changes.length, 3);
  assert.equal(third.changes[2].createdAt, NOW + DAY);
  const verified = await verifyChangeHistory(third.encoded);
  assert.equal(toHex(verified.primaryKey), toHex(other.publicKey));
  assert.equal(verified.identifier, history.identifier);
});

Deno.test("rotateChangeHistory: refuses a previous signer without the current key", async () => {
  await assert.rejects(
    rotateChangeHistory(rotatedHistory, { previous: authority, next: other, now: NOW }),
    TypeError,
  );
});

Deno.test("Identity: create, rotate, fromHistory", async () => {
  const identity = await Identity.create(authority, { now: NOW });
  assert.equal(identity.identifier, history.identifier);
  const next = await identity.rotate(rotated, { now: NOW + DAY });
  assert.equal(toHex(next.history.encoded), toHex(rotatedHistory.encoded));
  assert.equal(next.signer, rotated);
  const restored = await Identity.fromHistory(rotatedHistory.encoded, rotated);
  assert.equal(restored.identifier, history.identifier);
  assert.equal(toHex(restored.primaryKey), toHex(rotated.publicKey));
  await assert.rejects(Identity.fromHistory(rotatedHistory.encoded, authority), TypeError);
});

Deno.test("MAX_CHANGES: a history stops growing, and a longer one is refused", async () => {
  let identity = await identityFromByte(100);
  for (let i = 1; i < MAX_CHANGES; i++) {
    identity = await identity.rotate(await SoftwareSigner.generate(), { now: NOW + i });
  }
  assert.equal(identity.history.changes.length, MAX_CHANGES);
  const verified = await verifyChangeHistory(identity.history.encoded);
  assert.equal(toHex(verified.primaryKey), toHex(identity.signer.publicKey));
  await assertRejectsWithCode(
    identity.rotate(await SoftwareSigner.generate()),
    IdentityError,
    "too_many_changes",
  );
  const raw = rawChanges(identity.history.encoded);
  const tooLong = encodeCbor([...raw, raw[raw.length - 1]]);
  assert.ok(tooLong.length <= MAX_HISTORY_BYTES);
  assertThrowsWithCode(() => ChangeHistory.decode(tooLong), IdentityError, "too_many_changes");
});

Deno.test("verifyChangeHistory: a flipped bit in any signature is bad_signature", async () => {
  const targets: [string, Uint8Array, Uint8Array][] = [
    ["first change", history.encoded, history.changes[0].signature],
    ["rotated, change 0", rotatedHistory.encoded, rotatedHistory.changes[0].signature],
    ["rotated, change 1", rotatedHistory.encoded, rotatedHistory.changes[1].signature],
    ["rotated, previous", rotatedHistory.encoded, rotatedHistory.changes[1].previousSignature!],
  ];
  for (const [what, encoded, signature] of targets) {
    const at = indexOf(encoded, signature);
    for (let bit = 0; bit < 512; bit++) {
      await assertRejectsWithCode(
        verifyChangeHistory(flipBit(encoded, at * 8 + bit)),
        IdentityError,
        "bad_signature",
        `${what}, bit ${bit}`,
      );
    }
  }
});

Deno.test("verifyChangeHistory: a flipped bit in signed data is bad_signature", async () => {
  // The primary key of the first change.
  const at = indexOf(history.encoded, authority.publicKey);
  await assertRejectsWithCode(
    verifyChangeHistory(flipBit(history.encoded, at * 8 + 3)),
    IdentityError,
    "bad_signature",
  );
  // The primary key and the created_at of the rotation.
  const keyAt = indexOf(rotatedHistory.encoded, rotated.publicKey);
  await assertRejectsWithCode(
    verifyChangeHistory(flipBit(rotatedHistory.encoded, keyAt * 8)),
    IdentityError,
    "bad_signature",
  );
  const data = rotatedHistory.changes[1].data;
  const timeAt = indexOf(rotatedHistory.encoded, data) + data.length - 1;
  await assertRejectsWithCode(
    verifyChangeHistory(flipBit(rotatedHistory.encoded, timeAt * 8)),
    IdentityError,
    "bad_signature",
  );
});

Deno.test("verifyChangeHistory: no single flipped bit anywhere is accepted", async () => {
  const encoded = rotatedHistory.encoded;
  await assertEveryBitFlipRejected(encoded, (bytes) => verifyChangeHistory(bytes), [
    IdentityError,
    MalformedError,
    LimitError,
  ]);
});

Deno.test("verifyChangeHistory: a rotation without the previous signature", async () => {
  const raw = rawChanges(rotatedHistory.encoded);
  assert.equal(raw[1].length, 3);
  const stripped = encodeCbor([raw[0], [raw[1][0], raw[1][1]]]);
  await assertRejectsWithCode(
    verifyChangeHistory(stripped),
    IdentityError,
    "missing_previous_signature",
  );
});

Deno.test("verifyChangeHistory: a first change with a previous signature", async () => {
  const raw = rawChanges(history.encoded);
  const extra = await other.sign(signedMessage(DOMAIN.change, raw[0][0]));
  await assertRejectsWithCode(
    verifyChangeHistory(encodeCbor([[raw[0][0], raw[0][1], extra]])),
    IdentityError,
    "unexpected_previous_signature",
  );
});

Deno.test("verifyChangeHistory: a first change that names a previous change", async () => {
  const data = encodeCbor([1, new Uint8Array(32), authority.publicKey, NOW]);
  await assertRejectsWithCode(
    verifyChangeHistory(encodeCbor([await signed(data, [authority])])),
    IdentityError,
    "bad_first_change",
  );
});

Deno.test("verifyChangeHistory: a correctly signed rotation with a wrong link", async () => {
  const raw = rawChanges(history.encoded);
  const wrongHashes = [
    nobleSha256(new Uint8Array([1, 2, 3])),
    flipBit(nobleSha256(raw[0][0]), 0),
    null,
  ];
  for (const previousHash of wrongHashes) {
    const data = encodeCbor([1, previousHash, rotated.publicKey, NOW + DAY]);
    const change = await signed(data, [rotated, authority]);
    await assertRejectsWithCode(
      verifyChangeHistory(encodeCbor([raw[0], change])),
      IdentityError,
      "broken_chain",
    );
  }
  // The same construction with the right hash verifies: only the link was wrong.
  const data = encodeCbor([1, nobleSha256(raw[0][0]), rotated.publicKey, NOW + DAY]);
  const change = await signed(data, [rotated, authority]);
  const verified = await verifyChangeHistory(encodeCbor([raw[0], change]));
  assert.equal(toHex(verified.primaryKey), toHex(rotated.publicKey));
});

Deno.test("verifyChangeHistory: a rotation older than the change before it", async () => {
  const raw = rawChanges(history.encoded);
  const data = encodeCbor([1, nobleSha256(raw[0][0]), rotated.publicKey, NOW - 1]);
  const change = await signed(data, [rotated, authority]);
  await assertRejectsWithCode(
    verifyChangeHistory(encodeCbor([raw[0], change])),
    IdentityError,
    "time_went_backwards",
  );
});

Deno.test("verifyChangeHistory: a rotation signed by the wrong keys", async () => {
  const raw = rawChanges(history.encoded);
  const data = encodeCbor([1, nobleSha256(raw[0][0]), rotated.publicKey, NOW + DAY]);
  // Previous signature by a key that is not the previous one.
  const wrongPrevious = await signed(data, [rotated, other]);
  await assertRejectsWithCode(
    verifyChangeHistory(encodeCbor([raw[0], wrongPrevious])),
    IdentityError,
    "bad_signature",
  );
  // The new key did not sign: the old key signed twice.
  const notAgreed = await signed(data, [authority, authority]);
  await assertRejectsWithCode(
    verifyChangeHistory(encodeCbor([raw[0], notAgreed])),
    IdentityError,
    "bad_signature",
  );
  // Signatures swapped.
  const [d, s, p] = await signed(data, [rotated, authority]);
  await assertRejectsWithCode(
    verifyChangeHistory(encodeCbor([raw[0], [d, p, s]])),
    IdentityError,
    "bad_signature",
  );
});

Deno.test("verifyChangeHistory: a signature made for another domain", async () => {
  const data = encodeCbor([1, null, authority.publicKey, NOW]);
  for (const label of [DOMAIN.attestation, DOMAIN.credential, DOMAIN.revocation]) {
    const change = await signed(data, [authority], label);
    await assertRejectsWithCode(
      verifyChangeHistory(encodeCbor([change])),
      IdentityError,
      "bad_signature",
    );
  }
  // The raw data without a domain label is refused as well.
  const bare = [data, await authority.sign(data)];
  await assertRejectsWithCode(
    verifyChangeHistory(encodeCbor([bare])),
    IdentityError,
    "bad_signature",
  );
});

Deno.test("ChangeHistory.decode: malformed input is a typed error", async () => {
  const encoded = history.encoded;
  assertRefusesBadFraming((bytes) => ChangeHistory.decode(bytes), encoded, MAX_HISTORY_BYTES);
  const padded = encodeCbor([[...rawChanges(encoded)[0], new Uint8Array(MAX_HISTORY_BYTES)]]);
  assertThrowsWithCode(() => ChangeHistory.decode(padded), LimitError, "too_large");
  // Indefinite-length outer array.
  assert.equal(encoded[0], 0x81);
  const indefinite = new Uint8Array(encoded.length + 1);
  indefinite.set(encoded);
  indefinite[0] = 0x9f;
  indefinite[encoded.length] = 0xff;
  assertThrowsWithCode(() => ChangeHistory.decode(indefinite), MalformedError, "indefinite_length");
  // Non-minimal outer head.
  const nonMinimal = new Uint8Array(encoded.length + 1);
  nonMinimal.set([0x98, 0x01]);
  nonMinimal.set(encoded.subarray(1), 2);
  assertThrowsWithCode(() => ChangeHistory.decode(nonMinimal), MalformedError, "non_minimal");
  // Wrong shapes.
  const raw = rawChanges(encoded);
  assertThrowsWithCode(() => ChangeHistory.decode(encodeCbor([])), MalformedError, "wrong_shape");
  assertThrowsWithCode(
    () => ChangeHistory.decode(encodeCbor(raw[0])),
    MalformedError,
    "wrong_shape",
  );
  assertThrowsWithCode(
    () => ChangeHistory.decode(encodeCbor([[raw[0][0]]])),
    MalformedError,
    "wrong_shape",
  );
  assertThrowsWithCode(
    () => ChangeHistory.decode(encodeCbor([[raw[0][0], raw[0][1], raw[0][1], raw[0][1]]])),
    MalformedError,
    "wrong_shape",
  );
  assertThrowsWithCode(
    () => ChangeHistory.decode(encodeCbor([[raw[0][0], raw[0][1].subarray(1)]])),
    MalformedError,
    "wrong_shape",
  );
  assertThrowsWithCode(
    () => ChangeHistory.decode(encodeCbor([["text", raw[0][1]]])),
    MalformedError,
    "wrong_shape",
  );
  // Signed data of the wrong shape: each is signed, so only its shape is wrong.
  const shortKey = await signed(encodeCbor([1, null, authority.publicKey.subarray(1), NOW]), [
    authority,
  ]);
  assertThrowsWithCode(
    () => ChangeHistory.decode(encodeCbor([shortKey])),
    MalformedError,
    "wrong_shape",
  );
  const extraField = await signed(encodeCbor([1, null, authority.publicKey, NOW, 0]), [authority]);
  assertThrowsWithCode(
    () => ChangeHistory.decode(encodeCbor([extraField])),
    MalformedError,
    "wrong_shape",
  );
  const textTime = await signed(encodeCbor([1, null, authority.publicKey, "now"]), [authority]);
  assertThrowsWithCode(
    () => ChangeHistory.decode(encodeCbor([textTime])),
    MalformedError,
    "wrong_shape",
  );
  // Signed data that is not strict CBOR itself: [1, null, key, 1.0 as a float].
  const withFloat = Uint8Array.of(0x84, 0x01, 0xf6, 0x58, 0x20, ...authority.publicKey, 0xfa);
  const floatTime = await signed(Uint8Array.of(...withFloat, 0x3f, 0x80, 0x00, 0x00), [authority]);
  assertThrowsWithCode(
    () => ChangeHistory.decode(encodeCbor([floatTime])),
    MalformedError,
    "unsupported_type",
  );
  // Signed data larger than a change can be.
  const big = await signed(encodeCbor([1, null, authority.publicKey, NOW, new Uint8Array(600)]), [
    authority,
  ]);
  assertThrowsWithCode(() => ChangeHistory.decode(encodeCbor([big])), LimitError, "too_large");
});

Deno.test("ChangeHistory.decode: an unknown version is refused, even if signed", async () => {
  for (const version of [0, 2, 255]) {
    const data = encodeCbor([version, null, authority.publicKey, NOW]);
    const encoded = encodeCbor([await signed(data, [authority])]);
    assertThrowsWithCode(() => ChangeHistory.decode(encoded), MalformedError, "unknown_version");
    await assertRejectsWithCode(verifyChangeHistory(encoded), MalformedError, "unknown_version");
  }
});

Deno.test("acceptHistoryUpdate: accepts an extension and the same history", async () => {
  const current = await verifyChangeHistory(history.encoded);
  const next = await acceptHistoryUpdate(current, rotatedHistory.encoded);
  assert.equal(next.identifier, current.identifier);
  assert.equal(toHex(next.primaryKey), toHex(rotated.publicKey));
  const same = await acceptHistoryUpdate(next, rotatedHistory);
  assert.equal(toHex(same.primaryKey), toHex(rotated.publicKey));
  assert.equal(toHex(same.history.encoded), toHex(rotatedHistory.encoded));
});

Deno.test("acceptHistoryUpdate: refuses an older history", async () => {
  const current = await verifyChangeHistory(rotatedHistory.encoded);
  await assertRejectsWithCode(
    acceptHistoryUpdate(current, history.encoded),
    IdentityError,
    "history_conflict",
  );
});

Deno.test("acceptHistoryUpdate: refuses a diverging history", async () => {
  const current = await verifyChangeHistory(rotatedHistory.encoded);
  const fork = await rotateChangeHistory(history, { previous: authority, next: other, now: NOW });
  await verifyChangeHistory(fork.encoded); // valid on its own
  assert.equal(fork.identifier, current.identifier);
  await assertRejectsWithCode(
    acceptHistoryUpdate(current, fork.encoded),
    IdentityError,
    "history_conflict",
  );
  // A longer fork diverges as well.
  const longerFork = await rotateChangeHistory(fork, { previous: other, next: rotated, now: NOW });
  await assertRejectsWithCode(
    acceptHistoryUpdate(current, longerFork.encoded),
    IdentityError,
    "history_conflict",
  );
});

Deno.test("acceptHistoryUpdate: refuses another identity", async () => {
  const current = await verifyChangeHistory(history.encoded);
  const stranger = await createChangeHistory(other, { now: NOW });
  await assertRejectsWithCode(
    acceptHistoryUpdate(current, stranger.encoded),
    IdentityError,
    "identifier_mismatch",
  );
});

Deno.test("acceptHistoryUpdate: refuses a candidate that does not verify", async () => {
  const current = await verifyChangeHistory(history.encoded);
  const raw = rawChanges(rotatedHistory.encoded);
  const stripped = encodeCbor([raw[0], [raw[1][0], raw[1][1]]]);
  await assertRejectsWithCode(
    acceptHistoryUpdate(current, stripped),
    IdentityError,
    "missing_previous_signature",
  );
});
