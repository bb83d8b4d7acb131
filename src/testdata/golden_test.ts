/**
 * Golden vectors: every signed structure of the core, built from fixed
 * inputs. Ed25519 is deterministic, so the bytes never change unless the
 * encoding does, and then this test says so. `docs/` quotes the same bytes.
 *
 * The expected bytes live in `golden.json`. To regenerate it after an
 * intended format change (and then review the diff):
 *
 *   UPDATE_GOLDEN=1 node_modules/.bin/deno test -q -P --no-prompt \
 *     --allow-write=src/testdata src/testdata/golden_test.ts
 *
 * Besides comparing bytes, the test checks the vectors against code that
 * does not come from `src/`: public keys and signatures with @noble, the
 * identifier with @noble's SHA-256, and the signed data with the small
 * CBOR writer below, written from the CDDL in the module docs.
 */
import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519.js";
import { sha256 } from "@noble/hashes/sha2.js";
import {
  ChangeHistory,
  createAttestation,
  createRevocationList,
  CredentialError,
  decodeAttestation,
  decodeCredential,
  decodeRevocationList,
  fromHex,
  Identity,
  issueCredential,
  RevocationRegistry,
  SoftwareSigner,
  toHex,
  TrustStore,
  verifyAttestation,
  verifyChangeHistory,
  verifyCredential,
  verifyRevocationList,
} from "../mod.ts";
import { assertRejectsWithCode } from "./test_helpers.ts";

const GOLDEN_URL = new URL("./golden.json", import.meta.url);
const UPDATE = Deno.env.get("UPDATE_GOLDEN") === "1";

/** The fixed inputs. Changing any of them changes every vector. */
const INPUTS = {
  authority_seed: "01".repeat(32),
  member_seed: "02".repeat(32),
  rotated_authority_seed: "03".repeat(32),
  x25519_public_key: "04".repeat(32),
  now: 1767225600, // 2026-01-01T00:00:00Z
  rotated_at: 1767225600 + 86400,
  credential_id: "000102030405060708090a0b0c0d0e0f",
  credential_attributes: {
    customer_id: "cust_001",
    role: "edge",
    tier: "professional",
    capabilities: ["search", "ingest", "query", "mcp"],
    rate_limit_rpm: 2000,
  },
  credential_ttl_seconds: 3600,
  attestation_ttl_seconds: 86400,
  revocation_serial: 7,
};

/** What golden.json holds: the inputs, then lowercase hex of each output. */
interface Golden {
  description: string;
  inputs: typeof INPUTS;
  authority_public_key: string;
  rotated_authority_public_key: string;
  member_public_key: string;
  authority_identifier: string;
  member_identifier: string;
  authority_change_history: string;
  rotated_authority_change_history: string;
  member_change_history: string;
  attestation: string;
  credential: string;
  revocation_list: string;
}

const OUTPUTS = [
  "authority_public_key",
  "rotated_authority_public_key",
  "member_public_key",
  "authority_identifier",
  "member_identifier",
  "authority_change_history",
  "rotated_authority_change_history",
  "member_change_history",
  "attestation",
  "credential",
  "revocation_list",
] as const;

async function generate(): Promise<Golden> {
  const now = INPUTS.now;
  const authority = await Identity.create(
    await SoftwareSigner.fromSeed(fromHex(INPUTS.authority_seed)),
    { now },
  );
  const member = await Identity.create(
    await SoftwareSigner.fromSeed(fromHex(INPUTS.member_seed)),
    { now },
  );
  const rotated = await authority.rotate(
    await SoftwareSigner.fromSeed(fromHex(INPUTS.rotated_authority_seed)),
    { now: INPUTS.rotated_at },
  );
  const attestation = await createAttestation(member, fromHex(INPUTS.x25519_public_key), {
    now,
    ttlSeconds: INPUTS.attestation_ttl_seconds,
  });
  const credential = await issueCredential(authority, {
    subject: member.identifier,
    subjectKey: member.primaryKey,
    attributes: INPUTS.credential_attributes,
    ttlSeconds: INPUTS.credential_ttl_seconds,
    now,
    id: fromHex(INPUTS.credential_id),
  });
  const revocationList = await createRevocationList(authority, {
    serial: INPUTS.revocation_serial,
    now,
    credentialIds: [INPUTS.credential_id],
    identifiers: [member.identifier],
  });
  return {
    description: "Nexus golden vectors; regenerate with UPDATE_GOLDEN=1 (see golden_test.ts)",
    inputs: INPUTS,
    authority_public_key: toHex(authority.primaryKey),
    rotated_authority_public_key: toHex(rotated.primaryKey),
    member_public_key: toHex(member.primaryKey),
    authority_identifier: authority.identifier,
    member_identifier: member.identifier,
    authority_change_history: toHex(authority.history.encoded),
    rotated_authority_change_history: toHex(rotated.history.encoded),
    member_change_history: toHex(member.history.encoded),
    attestation: toHex(attestation.encoded),
    credential: toHex(credential.encoded),
    revocation_list: toHex(revocationList.encoded),
  };
}

const generated = await generate();
if (UPDATE) {
  await Deno.writeTextFile(GOLDEN_URL, JSON.stringify(generated, null, 2) + "\n");
}
const golden: Golden = JSON.parse(await Deno.readTextFile(GOLDEN_URL));

// ---------------------------------------------------------------------------
// An independent CBOR writer for the few types the structures use, straight
// from RFC 8949 (shortest heads), so the vectors are not only cbor-x's word.

function head(major: number, value: number): number[] {
  if (value < 24) return [(major << 5) | value];
  if (value < 0x100) return [(major << 5) | 24, value];
  if (value < 0x1_0000) return [(major << 5) | 25, value >> 8, value & 0xff];
  assert.ok(value < 0x1_0000_0000, "the writer stops at 32 bits");
  return [(major << 5) | 26, value >>> 24, (value >> 16) & 0xff, (value >> 8) & 0xff, value & 0xff];
}

type Item = number | string | Uint8Array | null | Item[] | Map<string, Item>;

function cbor(item: Item): Uint8Array {
  const out: number[] = [];
  const write = (value: Item): void => {
    if (value === null) out.push(0xf6);
    else if (typeof value === "number") out.push(...head(0, value));
    else if (typeof value === "string") {
      const utf8 = new TextEncoder().encode(value);
      out.push(...head(3, utf8.length), ...utf8);
    } else if (value instanceof Uint8Array) out.push(...head(2, value.length), ...value);
    else if (Array.isArray(value)) {
      out.push(...head(4, value.length));
      value.forEach(write);
    } else {
      out.push(...head(5, value.size));
      for (const [key, entry] of value) {
        write(key);
        write(entry);
      }
    }
  };
  write(item);
  return Uint8Array.from(out);
}

function label(name: string, data: Uint8Array): Uint8Array {
  return Uint8Array.from([...new TextEncoder().encode(name + "\0"), ...data]);
}

function nobleIdentifier(firstChangeData: Uint8Array): string {
  return "I" + toHex(sha256(firstChangeData));
}

const seeds = {
  authority: fromHex(INPUTS.authority_seed),
  member: fromHex(INPUTS.member_seed),
  rotated: fromHex(INPUTS.rotated_authority_seed),
};
const keys = {
  authority: ed25519.getPublicKey(seeds.authority),
  member: ed25519.getPublicKey(seeds.member),
  rotated: ed25519.getPublicKey(seeds.rotated),
};

// ---------------------------------------------------------------------------

Deno.test("golden.json: regenerated structures are byte for byte the same", () => {
  assert.deepEqual(Object.keys(golden).sort(), Object.keys(generated).sort());
  assert.deepEqual(golden.inputs, INPUTS, "golden.json was made from other inputs");
  for (const name of OUTPUTS) {
    assert.equal(generated[name], golden[name], `${name} differs from golden.json`);
  }
  for (const name of OUTPUTS) {
    if (name.endsWith("identifier")) assert.match(golden[name], /^I[0-9a-f]{64}$/, name);
    else assert.match(golden[name], /^([0-9a-f]{2})+$/, name);
  }
});

Deno.test("golden: public keys and identifiers follow from the seeds", () => {
  assert.equal(golden.authority_public_key, toHex(keys.authority));
  assert.equal(golden.member_public_key, toHex(keys.member));
  assert.equal(golden.rotated_authority_public_key, toHex(keys.rotated));
  const authorityFirst = cbor([1, null, keys.authority, INPUTS.now]);
  const memberFirst = cbor([1, null, keys.member, INPUTS.now]);
  assert.equal(golden.authority_identifier, nobleIdentifier(authorityFirst));
  assert.equal(golden.member_identifier, nobleIdentifier(memberFirst));
  assert.notEqual(golden.authority_identifier, golden.member_identifier);
});

Deno.test("golden: every structure is the documented CBOR with valid signatures", () => {
  const sign = (seed: Uint8Array, domain: string, data: Uint8Array) =>
    ed25519.sign(label(domain, data), seed);
  const authorityId = fromHex(golden.authority_identifier.slice(1));
  const memberId = fromHex(golden.member_identifier.slice(1));

  // ChangeHistory = [[data, signature]]
  const first = cbor([1, null, keys.authority, INPUTS.now]);
  const firstSignature = sign(seeds.authority, "nexus.identity.change.v1", first);
  assert.equal(golden.authority_change_history, toHex(cbor([[first, firstSignature]])));
  const memberFirst = cbor([1, null, keys.member, INPUTS.now]);
  assert.equal(
    golden.member_change_history,
    toHex(cbor([[memberFirst, sign(seeds.member, "nexus.identity.change.v1", memberFirst)]])),
  );

  // Rotation: [data, signature by the new key, signature by the previous key]
  const second = cbor([1, sha256(first), keys.rotated, INPUTS.rotated_at]);
  assert.equal(
    golden.rotated_authority_change_history,
    toHex(cbor([
      [first, firstSignature],
      [
        second,
        sign(seeds.rotated, "nexus.identity.change.v1", second),
        sign(seeds.authority, "nexus.identity.change.v1", second),
      ],
    ])),
  );

  // Attestation = [data, signature]
  const attestation = cbor([
    1,
    memberId,
    1,
    fromHex(INPUTS.x25519_public_key),
    INPUTS.now,
    INPUTS.now + INPUTS.attestation_ttl_seconds,
  ]);
  assert.equal(
    golden.attestation,
    toHex(cbor([attestation, sign(seeds.member, "nexus.identity.purpose_key.v1", attestation)])),
  );

  // Credential = [data, signature]; attribute keys shortest first, then bytewise.
  const credential = cbor([
    2,
    memberId,
    keys.member,
    authorityId,
    new Map<string, Item>([
      ["role", "edge"],
      ["tier", "professional"],
      ["customer_id", "cust_001"],
      ["capabilities", ["search", "ingest", "query", "mcp"]],
      ["rate_limit_rpm", 2000],
    ]),
    INPUTS.now,
    INPUTS.now + INPUTS.credential_ttl_seconds,
    fromHex(INPUTS.credential_id),
  ]);
  assert.equal(
    golden.credential,
    toHex(cbor([credential, sign(seeds.authority, "nexus.credential.v1", credential)])),
  );

  // RevocationList = [data, signature]
  const revocation = cbor([
    1,
    authorityId,
    INPUTS.revocation_serial,
    INPUTS.now,
    [fromHex(INPUTS.credential_id)],
    [memberId],
  ]);
  assert.equal(
    golden.revocation_list,
    toHex(cbor([revocation, sign(seeds.authority, "nexus.revocation_list.v1", revocation)])),
  );
});

Deno.test("golden: change histories decode to the expected fields and verify", async () => {
  const authority = await verifyChangeHistory(fromHex(golden.authority_change_history));
  assert.equal(authority.identifier, golden.authority_identifier);
  assert.equal(toHex(authority.primaryKey), golden.authority_public_key);
  assert.equal(authority.history.changes.length, 1);
  assert.equal(authority.history.changes[0].createdAt, INPUTS.now);
  assert.equal(authority.history.changes[0].previousHash, null);

  const member = await verifyChangeHistory(fromHex(golden.member_change_history));
  assert.equal(member.identifier, golden.member_identifier);
  assert.equal(toHex(member.primaryKey), golden.member_public_key);

  const rotated = ChangeHistory.decode(fromHex(golden.rotated_authority_change_history));
  assert.equal(rotated.changes.length, 2);
  assert.equal(rotated.identifier, golden.authority_identifier);
  const [first, second] = rotated.changes;
  assert.equal(toHex(first.data), toHex(authority.history.changes[0].data));
  assert.equal(toHex(second.previousHash!), toHex(sha256(first.data)));
  assert.equal(toHex(second.primaryKey), golden.rotated_authority_public_key);
  assert.equal(second.createdAt, INPUTS.rotated_at);
  assert.equal(second.previousSignature?.length, 64);
  const verified = await verifyChangeHistory(rotated);
  assert.equal(toHex(verified.primaryKey), golden.rotated_authority_public_key);
});

Deno.test("golden: the attestation decodes to the expected fields and verifies", async () => {
  const member = await verifyChangeHistory(fromHex(golden.member_change_history));
  const attestation = decodeAttestation(fromHex(golden.attestation));
  assert.equal(attestation.subject, golden.member_identifier);
  assert.equal(attestation.purpose, 1);
  assert.equal(toHex(attestation.publicKey), INPUTS.x25519_public_key);
  assert.equal(attestation.createdAt, INPUTS.now);
  assert.equal(attestation.expiresAt, INPUTS.now + INPUTS.attestation_ttl_seconds);
  await verifyAttestation(attestation, member, {
    now: INPUTS.now,
    expectedKey: fromHex(INPUTS.x25519_public_key),
  });
});

Deno.test("golden: the credential decodes to the expected fields and verifies", async () => {
  const authority = await verifyChangeHistory(fromHex(golden.authority_change_history));
  const credential = decodeCredential(fromHex(golden.credential));
  assert.equal(credential.subject, golden.member_identifier);
  assert.equal(credential.issuer, golden.authority_identifier);
  assert.equal(credential.id, INPUTS.credential_id);
  assert.equal(credential.createdAt, INPUTS.now);
  assert.equal(credential.expiresAt, INPUTS.now + INPUTS.credential_ttl_seconds);
  assert.deepEqual({ ...credential.attributes }, INPUTS.credential_attributes);
  const trust = new TrustStore([authority]);
  await verifyCredential(credential, { trust, subject: golden.member_identifier, now: INPUTS.now });
});

Deno.test("golden: the revocation list decodes, verifies and revokes the credential", async () => {
  const authority = await verifyChangeHistory(fromHex(golden.authority_change_history));
  const trust = new TrustStore([authority]);
  const list = decodeRevocationList(fromHex(golden.revocation_list));
  assert.equal(list.issuer, golden.authority_identifier);
  assert.equal(list.serial, INPUTS.revocation_serial);
  assert.equal(list.issuedAt, INPUTS.now);
  assert.deepEqual(list.credentialIds, [INPUTS.credential_id]);
  assert.deepEqual(list.identifiers, [golden.member_identifier]);
  await verifyRevocationList(list, trust);
  const revocations = new RevocationRegistry();
  assert.equal(await revocations.apply(list, trust), true);
  await assertRejectsWithCode(
    verifyCredential(fromHex(golden.credential), {
      trust,
      subject: golden.member_identifier,
      now: INPUTS.now,
      revocations,
    }),
    CredentialError,
    "revoked",
  );
});

Deno.test("golden: after the rotation, the old key's credential is refused", async () => {
  const trust = new TrustStore([
    await verifyChangeHistory(fromHex(golden.authority_change_history)),
  ]);
  assert.equal(await trust.update(fromHex(golden.rotated_authority_change_history)), true);
  await assertRejectsWithCode(
    verifyCredential(fromHex(golden.credential), { trust, now: INPUTS.now }),
    CredentialError,
    "bad_signature",
  );
});
