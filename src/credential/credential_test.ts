/**
 * Credentials: issuance, the exact signed bytes, and a typed refusal for
 * every verification check (docs/design.md §3).
 */
import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519.js";
import { decodeCbor, encodeCbor } from "../encoding/cbor.ts";
import { DOMAIN, type DomainLabel, signedMessage } from "../encoding/domain.ts";
import { LimitError, type MalformedCode, MalformedError } from "../encoding/errors.ts";
import { toHex } from "../encoding/hex.ts";
import { CredentialError, IdentityError } from "../errors.ts";
import { identifierToBytes, verifyChangeHistory } from "../identity/change_history.ts";
import type { Identity } from "../identity/identity.ts";
import {
  assertBitFlipsRejected,
  assertEveryBitFlipRejected,
  assertRefusesBadFraming,
  assertRejectsWithCode,
  assertSignatureBitFlipsRejected,
  assertThrowsWithCode,
  concat,
  DAY,
  identityFromByte,
  indexOf,
  NOW,
  signedStructure,
  signerFromByte,
} from "../testdata/test_helpers.ts";
import { MAX_ATTRIBUTES, MAX_LIST_ITEMS, MAX_TEXT_LENGTH } from "./attributes.ts";
import {
  type Credential,
  decodeCredential,
  issueCredential,
  MAX_CREDENTIAL_BYTES,
  verifyCredential,
} from "./credential.ts";
import { createRevocationList, RevocationRegistry } from "./revocation.ts";
import { TrustStore } from "./trust_store.ts";

const HOUR = 3600;
const ID = Uint8Array.from({ length: 16 }, (_, i) => i);
const ATTRIBUTES = {
  customer_id: "cust_001",
  role: "edge",
  tier: "professional",
  capabilities: ["search", "ingest", "query", "mcp"],
  rate_limit_rpm: 2000,
};

/** A credential whose data is exactly `data`, signed by `issuer` in `label`'s domain. */
function signedCredential(
  issuer: Identity,
  data: Uint8Array,
  label: DomainLabel = DOMAIN.credential,
): Promise<Uint8Array> {
  return signedStructure(issuer, data, label);
}

/** Credential data with `attributes` given as raw CBOR bytes. */
function rawData(issuer: Identity, attributes: Uint8Array, version = 2): Uint8Array {
  return concat(
    Uint8Array.of(0x88),
    encodeCbor(version),
    encodeCbor(identifierToBytes(member.identifier)),
    encodeCbor(member.primaryKey),
    encodeCbor(identifierToBytes(issuer.identifier)),
    attributes,
    encodeCbor(NOW),
    encodeCbor(NOW + HOUR),
    encodeCbor(ID),
  );
}

const authority = await identityFromByte(1);
const member = await identityFromByte(2);
const rotatedAuthority = await authority.rotate(await signerFromByte(3), { now: NOW + DAY });
const stranger = await identityFromByte(7);
const anchor = await verifyChangeHistory(authority.history.encoded);
const trust = new TrustStore([anchor]);
const credential = await issueCredential(authority, {
  subject: member.identifier,
  subjectKey: member.primaryKey,
  attributes: ATTRIBUTES,
  ttlSeconds: HOUR,
  now: NOW,
  id: ID,
});
const options = { trust, subject: member.identifier, now: NOW };
/** verifyCredential with `options`. */
const verify = (bytes: Uint8Array) => verifyCredential(bytes, options);

Deno.test("issueCredential: the decoded fields", () => {
  assert.equal(credential.subject, member.identifier);
  assert.equal(credential.issuer, authority.identifier);
  assert.equal(credential.createdAt, NOW);
  assert.equal(credential.expiresAt, NOW + HOUR);
  assert.equal(credential.id, "000102030405060708090a0b0c0d0e0f");
  assert.deepEqual({ ...credential.attributes }, ATTRIBUTES);
  assert.equal(credential.signature.length, 64);
});

Deno.test("issueCredential: the exact data, with attribute keys in canonical order", () => {
  const ordered = new Map<string, unknown>([
    ["role", "edge"],
    ["tier", "professional"],
    ["customer_id", "cust_001"],
    ["capabilities", ["search", "ingest", "query", "mcp"]],
    ["rate_limit_rpm", 2000],
  ]);
  const expected = encodeCbor([
    2,
    identifierToBytes(member.identifier),
    member.primaryKey,
    identifierToBytes(authority.identifier),
    ordered,
    NOW,
    NOW + HOUR,
    ID,
  ]);
  assert.equal(toHex(credential.data), toHex(expected));
  assert.equal(
    toHex(credential.encoded),
    toHex(encodeCbor([credential.data, credential.signature])),
  );
  const message = signedMessage(DOMAIN.credential, credential.data);
  assert.ok(ed25519.verify(credential.signature, message, authority.primaryKey));
  const body = decodeCbor(credential.data, { maxBytes: 1024 }) as unknown[];
  assert.deepEqual([...(body[4] as Map<string, unknown>).keys()], [...ordered.keys()]);
});

Deno.test("issueCredential: the same attributes in any order give the same bytes", async () => {
  const reversed = Object.fromEntries(Object.entries(ATTRIBUTES).reverse());
  const again = await issueCredential(authority, {
    subject: member.identifier,
    subjectKey: member.primaryKey,
    attributes: reversed,
    ttlSeconds: HOUR,
    now: NOW,
    id: ID,
  });
  assert.equal(toHex(again.encoded), toHex(credential.encoded));
});

Deno.test("issueCredential: defaults are a one-hour lifetime and a random id", async () => {
  const a = await issueCredential(authority, {
    subject: member.identifier,
    subjectKey: member.primaryKey,
    attributes: {},
  });
  const b = await issueCredential(authority, {
    subject: member.identifier,
    subjectKey: member.primaryKey,
    attributes: {},
  });
  assert.equal(a.expiresAt - a.createdAt, HOUR);
  assert.match(a.id, /^[0-9a-f]{32}$/);
  assert.notEqual(a.id, b.id);
  assert.ok(Math.abs(a.createdAt - Date.now() / 1000) < 60);
  await verifyCredential(a.encoded, { trust, subject: member.identifier });
});

Deno.test("issueCredential: refuses bad options", async () => {
  const base = {
    subject: member.identifier,
    subjectKey: member.primaryKey,
    attributes: {},
    now: NOW,
  };
  for (const ttlSeconds of [0, -1, 1.5, Number.NaN]) {
    await assert.rejects(issueCredential(authority, { ...base, ttlSeconds }), RangeError);
  }
  for (const length of [0, 15, 17, 32]) {
    await assert.rejects(
      issueCredential(authority, { ...base, id: new Uint8Array(length) }),
      RangeError,
    );
  }
  for (const subject of ["", "I", member.identifier.toUpperCase(), member.identifier.slice(1)]) {
    await assert.rejects(issueCredential(authority, { ...base, subject }), TypeError);
  }
});

Deno.test("attributes: frozen, prototype-free, and __proto__ is plain data", async () => {
  assert.ok(Object.isFrozen(credential.attributes));
  assert.equal(Object.getPrototypeOf(credential.attributes), null);
  assert.ok(Object.isFrozen(credential.attributes.capabilities));
  assert.throws(() => {
    (credential.attributes as Record<string, unknown>).role = "admin";
  }, TypeError);
  const attributes = JSON.parse('{"__proto__": "x", "constructor": "y", "toString": 1}');
  const issued = await issueCredential(authority, {
    subject: member.identifier,
    subjectKey: member.primaryKey,
    attributes,
    now: NOW,
  });
  const decoded = await verifyCredential(issued.encoded, options);
  assert.equal(Object.getPrototypeOf(decoded.attributes), null);
  assert.deepEqual(Object.keys(decoded.attributes).sort(), [
    "__proto__",
    "constructor",
    "toString",
  ]);
  assert.equal(decoded.attributes["__proto__"], "x");
  assert.equal(decoded.attributes.constructor, "y");
  assert.equal(({} as Record<string, unknown>).x, undefined);
});

Deno.test("attributes: the limits, accepted at the edge and refused beyond", async () => {
  const issue = (attributes: Record<string, unknown>) =>
    issueCredential(authority, {
      subject: member.identifier,
      subjectKey: member.primaryKey,
      attributes,
      now: NOW,
    });
  const edge = await issue({
    ["k".repeat(64)]: "t".repeat(MAX_TEXT_LENGTH),
    list: Array.from({ length: MAX_LIST_ITEMS }, (_, i) => `item${i}`),
    empty_list: [],
    empty_text: "",
    yes: true,
    no: false,
    negative: -5,
    big: 0xffff_ffff,
    "dotted.name-1": 1,
  });
  await verifyCredential(edge.encoded, options);
  assert.equal(edge.attributes.yes, true);
  assert.equal(edge.attributes.negative, -5);
  const many = Object.fromEntries(
    Array.from({ length: MAX_ATTRIBUTES }, (_, i) => [`a${i}`, i]),
  );
  await verifyCredential((await issue(many)).encoded, options);

  const refused: [string, Record<string, unknown>][] = [
    ["key too long", { ["k".repeat(65)]: 1 }],
    ["key with a space", { "a b": 1 }],
    ["key starting with a digit", { "1a": 1 }],
    ["empty key", { "": 1 }],
    ["non-ASCII key", { "rôle": 1 }],
    ["text too long", { a: "t".repeat(MAX_TEXT_LENGTH + 1) }],
    ["list too long", { a: Array.from({ length: MAX_LIST_ITEMS + 1 }, () => "x") }],
    ["list item too long", { a: ["t".repeat(MAX_TEXT_LENGTH + 1)] }],
    ["list of numbers", { a: [1, 2] }],
    ["nested list", { a: [["x"]] }],
    ["float", { a: 1.5 }],
    ["unsafe integer", { a: 2 ** 53 }],
    ["NaN", { a: Number.NaN }],
    ["null", { a: null }],
    ["undefined", { a: undefined }],
    ["object", { a: { b: 1 } }],
    ["bigint", { a: 1n }],
    ["bytes", { a: new Uint8Array(1) }],
    [
      "too many",
      Object.fromEntries(Array.from({ length: MAX_ATTRIBUTES + 1 }, (_, i) => [`a${i}`, i])),
    ],
  ];
  for (const [what, attributes] of refused) {
    await assertRejectsWithCode(issue(attributes), CredentialError, "bad_attributes", what);
  }
});

Deno.test("verifyCredential: accepts from bytes and decoded, returns the credential", async () => {
  const fromBytes = await verifyCredential(credential.encoded, options);
  assert.equal(fromBytes.id, credential.id);
  assert.deepEqual({ ...fromBytes.attributes }, ATTRIBUTES);
  const decoded: Credential = decodeCredential(credential.encoded);
  assert.equal(await verifyCredential(decoded, options), decoded);
  // Without an expected subject, any subject is accepted.
  await verifyCredential(credential.encoded, { trust, now: NOW });
});

Deno.test("verifyCredential: an issuer that is not trusted", async () => {
  await assertRejectsWithCode(
    verifyCredential(credential.encoded, { ...options, trust: new TrustStore() }),
    CredentialError,
    "untrusted_issuer",
  );
  await assertRejectsWithCode(
    verifyCredential(credential.encoded, { ...options, trust: new TrustStore([stranger]) }),
    CredentialError,
    "untrusted_issuer",
  );
  // Issued by an identity the verifier does not trust.
  const byStranger = await issueCredential(stranger, {
    subject: member.identifier,
    subjectKey: member.primaryKey,
    attributes: ATTRIBUTES,
    now: NOW,
  });
  await assertRejectsWithCode(
    verifyCredential(byStranger.encoded, options),
    CredentialError,
    "untrusted_issuer",
  );
  // Self-issued by the member.
  const selfIssued = await issueCredential(member, {
    subject: member.identifier,
    subjectKey: member.primaryKey,
    attributes: { role: "admin" },
    now: NOW,
  });
  await assertRejectsWithCode(
    verifyCredential(selfIssued.encoded, options),
    CredentialError,
    "untrusted_issuer",
  );
});

Deno.test("verifyCredential: the trusted issuer's name, signed by someone else", async () => {
  // The data names the authority as issuer but the stranger signed it.
  const data = new Uint8Array(credential.data);
  await assertRejectsWithCode(
    verifyCredential(await signedCredential(stranger, data), options),
    CredentialError,
    "bad_signature",
  );
  await assertRejectsWithCode(
    verifyCredential(await signedCredential(member, data), options),
    CredentialError,
    "bad_signature",
  );
});

Deno.test("verifyCredential: a flipped bit in the signature is bad_signature", async () => {
  await assertSignatureBitFlipsRejected(credential, verify, CredentialError, "bad_signature");
});

Deno.test("verifyCredential: once the credential verified, no other bytes share its cache entry", async () => {
  await verify(credential.encoded);
  await assertSignatureBitFlipsRejected(credential, verify, CredentialError, "bad_signature");
  await verify(credential.encoded);
});

Deno.test("verifyCredential: a flipped bit in the data", async () => {
  const encoded = credential.encoded;
  const text = new TextEncoder();
  // "cust_001" becomes "cust_000"; "edge" becomes "edgd"; the id changes.
  const customer = indexOf(encoded, text.encode("cust_001")) + 7;
  const role = indexOf(encoded, text.encode("edge")) + 3;
  const id = indexOf(encoded, ID);
  // The subject: the signature is checked first.
  const subject = indexOf(encoded, identifierToBytes(member.identifier));
  const signed = [customer * 8, role * 8, id * 8 + 9, subject * 8];
  await assertBitFlipsRejected(encoded, signed, verify, CredentialError, "bad_signature");
  // The issuer: it names no trusted authority any more.
  const issuer = indexOf(encoded, identifierToBytes(authority.identifier));
  await assertBitFlipsRejected(encoded, [issuer * 8], verify, CredentialError, "untrusted_issuer");
  // Every bit of the encoding: never accepted.
  await assertEveryBitFlipRejected(encoded, verify, [CredentialError, MalformedError, LimitError]);
});

Deno.test("verifyCredential: a signature made for another domain", async () => {
  for (const label of [DOMAIN.change, DOMAIN.attestation, DOMAIN.revocation, DOMAIN.admission]) {
    const encoded = await signedCredential(authority, new Uint8Array(credential.data), label);
    await assertRejectsWithCode(
      verifyCredential(encoded, options),
      CredentialError,
      "bad_signature",
    );
  }
  const same = await signedCredential(authority, new Uint8Array(credential.data));
  assert.equal(toHex(same), toHex(credential.encoded));
});

Deno.test("verifyCredential: the wrong subject", async () => {
  await assertRejectsWithCode(
    verifyCredential(credential.encoded, { ...options, subject: stranger.identifier }),
    CredentialError,
    "subject_mismatch",
  );
  await assertRejectsWithCode(
    verifyCredential(credential.encoded, { ...options, subject: authority.identifier }),
    CredentialError,
    "subject_mismatch",
  );
});

Deno.test("verifyCredential: expiry, with the default 60 s skew on both sides", async () => {
  const end = credential.expiresAt;
  await verifyCredential(credential.encoded, { ...options, now: end });
  await verifyCredential(credential.encoded, { ...options, now: end + 60 });
  await assertRejectsWithCode(
    verifyCredential(credential.encoded, { ...options, now: end + 61 }),
    CredentialError,
    "expired",
  );
  await assertRejectsWithCode(
    verifyCredential(credential.encoded, { ...options, now: end + 30 * 86400 }),
    CredentialError,
    "expired",
  );
  await assertRejectsWithCode(
    verifyCredential(credential.encoded, { ...options, now: end + 1, skewSeconds: 0 }),
    CredentialError,
    "expired",
  );
  await verifyCredential(credential.encoded, { ...options, now: end + 120, skewSeconds: 120 });
  // Without `now`, the real clock decides: issued a year ago for an hour.
  const lastYear = await issueCredential(authority, {
    subject: member.identifier,
    subjectKey: member.primaryKey,
    attributes: {},
    now: Math.floor(Date.now() / 1000) - 365 * 86400,
  });
  await assertRejectsWithCode(
    verifyCredential(lastYear.encoded, { trust }),
    CredentialError,
    "expired",
  );
});

Deno.test("verifyCredential: not yet valid beyond the skew, accepted within", async () => {
  const start = credential.createdAt;
  await verifyCredential(credential.encoded, { ...options, now: start - 60 });
  await assertRejectsWithCode(
    verifyCredential(credential.encoded, { ...options, now: start - 61 }),
    CredentialError,
    "not_yet_valid",
  );
  await assertRejectsWithCode(
    verifyCredential(credential.encoded, { ...options, now: start - 1, skewSeconds: 0 }),
    CredentialError,
    "not_yet_valid",
  );
});

Deno.test("verifyCredential: after a rotation only the current key counts", async () => {
  const store = new TrustStore([await verifyChangeHistory(authority.history.encoded)]);
  const byNewKey = await issueCredential(rotatedAuthority, {
    subject: member.identifier,
    subjectKey: member.primaryKey,
    attributes: ATTRIBUTES,
    ttlSeconds: HOUR,
    now: NOW,
    id: ID,
  });
  assert.equal(byNewKey.issuer, credential.issuer);
  const at = { trust: store, subject: member.identifier, now: NOW };
  await verifyCredential(credential.encoded, at);
  // Before the verifier has seen the rotation, the new key is unknown to it.
  await assertRejectsWithCode(
    verifyCredential(byNewKey.encoded, at),
    CredentialError,
    "bad_signature",
  );

  assert.equal(await store.update(rotatedAuthority.history.encoded), true);
  assert.equal(
    toHex(store.get(authority.identifier)!.primaryKey),
    toHex(rotatedAuthority.primaryKey),
  );
  await verifyCredential(byNewKey.encoded, at);
  // Signed by the old key after the verifier accepted the rotation.
  await assertRejectsWithCode(
    verifyCredential(credential.encoded, at),
    CredentialError,
    "bad_signature",
  );
});

Deno.test("TrustStore: update refuses histories that do not extend the anchor", async () => {
  const store = new TrustStore([await verifyChangeHistory(rotatedAuthority.history.encoded)]);
  assert.deepEqual(store.identifiers(), [authority.identifier]);
  // Unknown authority: ignored.
  assert.equal(await store.update(stranger.history.encoded), false);
  assert.equal(store.get(stranger.identifier), undefined);
  // The older history: a rollback.
  await assertRejectsWithCode(
    store.update(authority.history.encoded),
    IdentityError,
    "history_conflict",
  );
  // A fork made with the old key.
  const fork = await authority.rotate(await signerFromByte(9), { now: NOW + DAY });
  await assertRejectsWithCode(store.update(fork.history), IdentityError, "history_conflict");
  assert.equal(
    toHex(store.get(authority.identifier)!.primaryKey),
    toHex(rotatedAuthority.primaryKey),
  );
});

Deno.test("decodeCredential: malformed input is a typed error", () => {
  const encoded = credential.encoded;
  assertRefusesBadFraming(decodeCredential, encoded, MAX_CREDENTIAL_BYTES);
  const padded = encodeCbor([credential.data, credential.signature, new Uint8Array(9000)]);
  assertThrowsWithCode(() => decodeCredential(padded), LimitError, "too_large");
  const raw = decodeCbor(encoded, { maxBytes: MAX_CREDENTIAL_BYTES }) as Uint8Array[];
  assertThrowsWithCode(() => decodeCredential(encodeCbor([raw[0]])), MalformedError, "wrong_shape");
  assertThrowsWithCode(
    () => decodeCredential(encodeCbor([raw[0], raw[1], raw[1]])),
    MalformedError,
    "wrong_shape",
  );
  assertThrowsWithCode(
    () => decodeCredential(encodeCbor([raw[0], raw[1].subarray(1)])),
    MalformedError,
    "wrong_shape",
  );
  assertThrowsWithCode(
    () => decodeCredential(encodeCbor(new Map([["data", raw[0]]]))),
    MalformedError,
    "wrong_shape",
  );
  assertThrowsWithCode(
    () => decodeCredential(Uint8Array.of(0x9f, ...encoded.subarray(1), 0xff)),
    MalformedError,
    "indefinite_length",
  );
});

Deno.test("decodeCredential: signed data in the wrong shape or encoding", async () => {
  const subject = identifierToBytes(member.identifier);
  const key = member.primaryKey;
  const issuer = identifierToBytes(authority.identifier);
  const attributes = new Map([["role", "edge"]]);
  const shapes: [string, unknown[]][] = [
    ["seven fields", [2, subject, key, issuer, attributes, NOW, NOW + HOUR]],
    ["nine fields", [2, subject, key, issuer, attributes, NOW, NOW + HOUR, ID, 0]],
    ["short subject", [2, subject.subarray(1), key, issuer, attributes, NOW, NOW + HOUR, ID]],
    ["short subject key", [2, subject, key.subarray(1), issuer, attributes, NOW, NOW + HOUR, ID]],
    ["issuer as text", [2, subject, key, authority.identifier, attributes, NOW, NOW + HOUR, ID]],
    ["short id", [2, subject, key, issuer, attributes, NOW, NOW + HOUR, ID.subarray(1)]],
    ["negative created_at", [2, subject, key, issuer, attributes, -1, NOW + HOUR, ID]],
    ["expires_at null", [2, subject, key, issuer, attributes, NOW, null, ID]],
    ["expires before it was made", [2, subject, key, issuer, attributes, NOW, NOW - 1, ID]],
  ];
  for (const [what, body] of shapes) {
    const encoded = await signedCredential(authority, encodeCbor(body));
    assertThrowsWithCode(() => decodeCredential(encoded), MalformedError, "wrong_shape", what);
  }
  // Attributes that are not a map, or hold a value of the wrong type.
  for (const bad of [["role"], "role=edge", new Map([["role", [1]]]), new Map([["1x", "y"]])]) {
    const data = encodeCbor([2, subject, key, issuer, bad, NOW, NOW + HOUR, ID]);
    assertThrowsWithCode(
      () => decodeCredential(encodeCbor([data, new Uint8Array(64)])),
      CredentialError,
      "bad_attributes",
    );
  }
  // Raw attribute maps outside the strict profile, each correctly signed.
  const text = (value: string) => encodeCbor(value);
  const role = text("role");
  const encodings: [string, Uint8Array, MalformedCode][] = [
    [
      "keys out of canonical order",
      concat(Uint8Array.of(0xa2), text("tier"), text("edge"), role, text("edge")),
      "non_canonical_order",
    ],
    [
      "longer key first",
      concat(Uint8Array.of(0xa2), text("customer_id"), text("c"), role, text("edge")),
      "non_canonical_order",
    ],
    [
      "duplicate key",
      concat(Uint8Array.of(0xa2), role, text("edge"), role, text("admin")),
      "duplicate_key",
    ],
    [
      "indefinite map",
      concat(Uint8Array.of(0xbf), role, text("edge"), Uint8Array.of(0xff)),
      "indefinite_length",
    ],
    ["non-minimal map head", concat(Uint8Array.of(0xb8, 0x01), role, text("edge")), "non_minimal"],
    [
      "float value",
      concat(Uint8Array.of(0xa1), role, Uint8Array.of(0xfa, 0x3f, 0x80, 0, 0)),
      "unsupported_type",
    ],
    [
      "tagged value",
      concat(Uint8Array.of(0xa1), role, Uint8Array.of(0xc1), text("edge")),
      "unsupported_type",
    ],
    ["undefined value", concat(Uint8Array.of(0xa1), role, Uint8Array.of(0xf7)), "unsupported_type"],
    ["integer key", concat(Uint8Array.of(0xa1, 0x01), text("edge")), "unsupported_type"],
    [
      "invalid UTF-8 value",
      concat(Uint8Array.of(0xa1), role, Uint8Array.of(0x62, 0xc3, 0x28)),
      "invalid_utf8",
    ],
    [
      "list in a list",
      concat(Uint8Array.of(0xa1), role, Uint8Array.of(0x81, 0x81), text("x")),
      "too_deep",
    ],
  ];
  for (const [what, map, code] of encodings) {
    const encoded = await signedCredential(authority, rawData(authority, map));
    assertThrowsWithCode(() => decodeCredential(encoded), MalformedError, code, what);
  }
  // The same construction with a valid map verifies: only the map was wrong.
  const good = await signedCredential(
    authority,
    rawData(authority, encodeCbor(new Map([["role", "edge"]]))),
  );
  assert.equal((await verifyCredential(good, options)).attributes.role, "edge");
});

Deno.test("decodeCredential: an unknown version is refused, even if signed", async () => {
  for (const version of [0, 1, 3, 1000]) {
    const data = rawData(authority, encodeCbor(new Map([["role", "edge"]])), version);
    const encoded = await signedCredential(authority, data);
    assertThrowsWithCode(() => decodeCredential(encoded), MalformedError, "unknown_version");
    await assertRejectsWithCode(
      verifyCredential(encoded, options),
      MalformedError,
      "unknown_version",
    );
  }
});

Deno.test("attributes: an integer beyond 32 bits can be issued and verified", async () => {
  const issued = await issueCredential(authority, {
    subject: member.identifier,
    subjectKey: member.primaryKey,
    attributes: { quota_bytes: 10 * 2 ** 30 },
    now: NOW,
  });
  const verified = await verifyCredential(issued.encoded, options);
  assert.equal(verified.attributes.quota_bytes, 10 * 2 ** 30);
});

Deno.test("verifyCredential: a credential bound to another key of the subject is refused (key_mismatch)", async () => {
  // The member rotated its key: a credential issued for the new key does not
  // verify for someone presenting the old prefix of its history.
  const rotated = await member.rotate(await signerFromByte(9), { now: NOW + 60 });
  const forNewKey = await issueCredential(authority, {
    subject: rotated.identifier,
    subjectKey: rotated.primaryKey,
    attributes: { role: "edge" },
    now: NOW,
  });
  assert.equal(rotated.identifier, member.identifier, "a rotation keeps the identifier");
  await verifyCredential(forNewKey, { ...options, subjectKey: rotated.primaryKey });
  await assertRejectsWithCode(
    verifyCredential(forNewKey, { ...options, subjectKey: member.primaryKey }),
    CredentialError,
    "key_mismatch",
  );
  await assert.rejects(
    issueCredential(authority, {
      subject: member.identifier,
      subjectKey: new Uint8Array(31),
      attributes: {},
    }),
    RangeError,
  );
});

Deno.test("verifyCredential: from the signature cache, every check but the signature still runs", async () => {
  const fresh = await issueCredential(authority, {
    subject: member.identifier,
    subjectKey: member.primaryKey,
    attributes: ATTRIBUTES,
    ttlSeconds: HOUR,
    now: NOW,
  });
  const store = new TrustStore([anchor]);
  const at = { trust: store, subject: member.identifier, subjectKey: member.primaryKey, now: NOW };
  const first = await verifyCredential(fresh.encoded, at);
  // The same bytes under the same key: the credential verified before.
  assert.equal(await verifyCredential(fresh.encoded, at), first);
  await assertRejectsWithCode(
    verifyCredential(fresh.encoded, { ...at, now: NOW + HOUR + 61 }),
    CredentialError,
    "expired",
  );
  await assertRejectsWithCode(
    verifyCredential(fresh.encoded, { ...at, now: NOW - 61 }),
    CredentialError,
    "not_yet_valid",
  );
  await assertRejectsWithCode(
    verifyCredential(fresh.encoded, { ...at, subject: stranger.identifier }),
    CredentialError,
    "subject_mismatch",
  );
  await assertRejectsWithCode(
    verifyCredential(fresh.encoded, { ...at, subjectKey: stranger.primaryKey }),
    CredentialError,
    "key_mismatch",
  );
  await assertRejectsWithCode(
    verifyCredential(fresh.encoded, { ...at, trust: new TrustStore() }),
    CredentialError,
    "untrusted_issuer",
  );
  const revocations = new RevocationRegistry();
  await revocations.apply(
    await createRevocationList(authority, { serial: 1, credentialIds: [fresh.id], now: NOW }),
    store,
  );
  await assertRejectsWithCode(
    verifyCredential(fresh.encoded, { ...at, revocations }),
    CredentialError,
    "revoked",
  );
  await verifyCredential(fresh.encoded, at);
});

Deno.test("verifyCredential: a credential verified under the issuer's old key is refused once the verifier takes the rotation (the signature cache holds the key)", async () => {
  const fresh = await issueCredential(authority, {
    subject: member.identifier,
    subjectKey: member.primaryKey,
    attributes: ATTRIBUTES,
    ttlSeconds: HOUR,
    now: NOW,
  });
  const store = new TrustStore([anchor]);
  const at = { trust: store, subject: member.identifier, now: NOW };
  await verifyCredential(fresh.encoded, at);
  await verifyCredential(fresh.encoded, at);
  assert.equal(await store.update(rotatedAuthority.history.encoded), true);
  await assertRejectsWithCode(
    verifyCredential(fresh.encoded, at),
    CredentialError,
    "bad_signature",
  );
  // And a credential that failed is not remembered as verified.
  await assertRejectsWithCode(
    verifyCredential(fresh.encoded, at),
    CredentialError,
    "bad_signature",
  );
});
