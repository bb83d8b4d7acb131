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
import { IdentityError, type IdentityErrorCode } from "../errors.ts";
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
import { Identity } from "./identity.ts";
import { SoftwareSigner } from "./software_signer.ts";

const NOW = 1767225600;
const DAY = 86400;
const X25519_KEY = new Uint8Array(32).fill(0x04);
const OTHER_KEY = new Uint8Array(32).fill(0x05);

function signer(byte: number): Promise<SoftwareSigner> {
  return SoftwareSigner.fromSeed(new Uint8Array(32).fill(byte));
}

function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const out = new Uint8Array(bytes);
  out[bit >> 3] ^= 1 << (bit & 7);
  return out;
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  throw new Error("needle not found");
}

async function rejectsWith(promise: Promise<unknown>, code: IdentityErrorCode): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof IdentityError, `expected IdentityError, got ${error}`);
    assert.equal(error.code, code, error.message);
    return true;
  });
}

function throwsMalformed(fn: () => unknown, code: MalformedError["code"]): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof MalformedError, `expected MalformedError, got ${error}`);
    assert.equal(error.code, code, error.message);
    return true;
  });
}

/** An attestation with arbitrary data, signed by `identity` in `label`'s domain. */
async function signedAttestation(
  identity: Identity,
  body: unknown[],
  label: DomainLabel = DOMAIN.attestation,
): Promise<Uint8Array> {
  const data = encodeCbor(body);
  return encodeCbor([data, await identity.signer.sign(signedMessage(label, data))]);
}

const member = await Identity.create(await signer(2), { now: NOW });
const authority = await Identity.create(await signer(1), { now: NOW });
const attestation = await createAttestation(member, X25519_KEY, { now: NOW, ttlSeconds: DAY });

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
  await rejectsWith(
    verifyAttestation(attestation.encoded, member, { now: NOW, expectedKey: OTHER_KEY }),
    "key_mismatch",
  );
  // A different X25519 key attested by the same identity is accepted for it.
  const other = await createAttestation(member, OTHER_KEY, { now: NOW });
  await verifyAttestation(other.encoded, member, { now: NOW, expectedKey: OTHER_KEY });
  await rejectsWith(
    verifyAttestation(other.encoded, member, { now: NOW, expectedKey: X25519_KEY }),
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
  await rejectsWith(verifyAttestation(aboutAuthority, member, { now: NOW }), "subject_mismatch");
  // Offered as the authority's: the authority's key never signed it.
  await rejectsWith(verifyAttestation(aboutAuthority, authority, { now: NOW }), "bad_signature");
  // The member's own attestation offered for the authority.
  await rejectsWith(
    verifyAttestation(attestation.encoded, authority, { now: NOW }),
    "bad_signature",
  );
});

Deno.test("verifyAttestation: purpose must match", async () => {
  const other = await createAttestation(member, X25519_KEY, { now: NOW, purpose: 2 });
  await rejectsWith(verifyAttestation(other.encoded, member, { now: NOW }), "wrong_purpose");
  await verifyAttestation(other.encoded, member, { now: NOW, purpose: 2 });
  await rejectsWith(
    verifyAttestation(attestation.encoded, member, { now: NOW, purpose: 2 }),
    "wrong_purpose",
  );
});

Deno.test("verifyAttestation: expiry, with the default skew on both sides", async () => {
  assert.equal(DEFAULT_SKEW_SECONDS, 60);
  const end = attestation.expiresAt;
  await verifyAttestation(attestation.encoded, member, { now: end });
  await verifyAttestation(attestation.encoded, member, { now: end + 60 });
  await rejectsWith(verifyAttestation(attestation.encoded, member, { now: end + 61 }), "expired");
  await rejectsWith(
    verifyAttestation(attestation.encoded, member, { now: end + 10 * DAY }),
    "expired",
  );
  // An explicit skew replaces the default.
  await rejectsWith(
    verifyAttestation(attestation.encoded, member, { now: end + 1, skewSeconds: 0 }),
    "expired",
  );
  await verifyAttestation(attestation.encoded, member, { now: end + 300, skewSeconds: 300 });
});

Deno.test("verifyAttestation: not yet valid beyond the skew, accepted within", async () => {
  const start = attestation.createdAt;
  await verifyAttestation(attestation.encoded, member, { now: start - 60 });
  await rejectsWith(
    verifyAttestation(attestation.encoded, member, { now: start - 61 }),
    "not_yet_valid",
  );
  await rejectsWith(
    verifyAttestation(attestation.encoded, member, { now: start - 1, skewSeconds: 0 }),
    "not_yet_valid",
  );
});

Deno.test("verifyAttestation: a flipped bit in the signature is bad_signature", async () => {
  const at = attestation.encoded.length - 64;
  assert.equal(toHex(attestation.encoded.subarray(at)), toHex(attestation.signature));
  for (let bit = 0; bit < 512; bit++) {
    await rejectsWith(
      verifyAttestation(flipBit(attestation.encoded, at * 8 + bit), member, { now: NOW }),
      "bad_signature",
    );
  }
});

Deno.test("verifyAttestation: a flipped bit in the data", async () => {
  const encoded = attestation.encoded;
  // In the attested key: the signature no longer covers it.
  const keyAt = indexOf(encoded, X25519_KEY);
  await rejectsWith(
    verifyAttestation(flipBit(encoded, keyAt * 8 + 5), member, { now: NOW }),
    "bad_signature",
  );
  // In expires_at (the data's last byte).
  const end = indexOf(encoded, attestation.data) + attestation.data.length - 1;
  await rejectsWith(
    verifyAttestation(flipBit(encoded, end * 8 + 1), member, { now: NOW }),
    "bad_signature",
  );
  // In the subject, the purpose or created_at: the signature is checked first.
  const subjectAt = indexOf(encoded, identifierToBytes(member.identifier));
  await rejectsWith(
    verifyAttestation(flipBit(encoded, subjectAt * 8), member, { now: NOW }),
    "bad_signature",
  );
  const purposeAt = indexOf(encoded, attestation.data) + 36; // after [1, subject,
  assert.equal(encoded[purposeAt], PURPOSE.secureChannel);
  await rejectsWith(
    verifyAttestation(flipBit(encoded, purposeAt * 8 + 1), member, { now: NOW }),
    "bad_signature",
  );
  const createdAt = end - 5; // the last byte of created_at (1a xx xx xx xx)
  await rejectsWith(
    verifyAttestation(flipBit(encoded, createdAt * 8 + 2), member, { now: NOW }),
    "bad_signature",
  );
  // A bad signature is reported as such even when the attestation is also expired.
  await rejectsWith(
    verifyAttestation(flipBit(encoded, (encoded.length - 1) * 8), member, { now: NOW + 99 * DAY }),
    "bad_signature",
  );
  // Every bit of the encoding: never accepted.
  for (let bit = 0; bit < encoded.length * 8; bit++) {
    await assert.rejects(
      verifyAttestation(flipBit(encoded, bit), member, { now: NOW }),
      (error: unknown) => {
        assert.ok(
          error instanceof IdentityError || error instanceof MalformedError ||
            error instanceof LimitError,
          `bit ${bit}: ${error}`,
        );
        return true;
      },
    );
  }
});

Deno.test("verifyAttestation: only the identity's current key counts", async () => {
  const rotated = await member.rotate(await signer(6), { now: NOW + 10 });
  await rejectsWith(verifyAttestation(attestation.encoded, rotated, { now: NOW }), "bad_signature");
  const fresh = await createAttestation(rotated, X25519_KEY, { now: NOW + 10 });
  await verifyAttestation(fresh.encoded, rotated, { now: NOW + 10 });
  await rejectsWith(verifyAttestation(fresh.encoded, member, { now: NOW + 10 }), "bad_signature");
});

Deno.test("verifyAttestation: a signature made for another domain", async () => {
  const body = [1, identifierToBytes(member.identifier), 1, X25519_KEY, NOW, NOW + DAY];
  for (const label of [DOMAIN.change, DOMAIN.credential, DOMAIN.revocation, DOMAIN.challenge]) {
    await rejectsWith(
      verifyAttestation(await signedAttestation(member, body, label), member, { now: NOW }),
      "bad_signature",
    );
  }
  // The same body in the right domain verifies.
  await verifyAttestation(await signedAttestation(member, body), member, { now: NOW });
});

Deno.test("decodeAttestation: malformed input is a typed error", async () => {
  const encoded = attestation.encoded;
  for (let i = 0; i < encoded.length; i++) {
    throwsMalformed(() => decodeAttestation(encoded.subarray(0, i)), "truncated");
  }
  throwsMalformed(() => decodeAttestation(Uint8Array.of(...encoded, 0x00)), "trailing_bytes");
  assert.throws(
    () => decodeAttestation(new Uint8Array(MAX_ATTESTATION_BYTES + 1)),
    (error: unknown) => error instanceof LimitError && error.code === "too_large",
  );
  const raw = decodeCbor(encoded, { maxBytes: 1024 }) as Uint8Array[];
  throwsMalformed(() => decodeAttestation(encodeCbor([raw[0]])), "wrong_shape");
  throwsMalformed(() => decodeAttestation(encodeCbor([...raw, raw[1]])), "wrong_shape");
  throwsMalformed(
    () => decodeAttestation(encodeCbor([raw[0], raw[1].subarray(1)])),
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
    throwsMalformed(() => decodeAttestation(encodeCbor([encodeCbor(body), raw[1]])), "wrong_shape");
  }
  // Indefinite-length data, properly signed, is still refused.
  const data = Uint8Array.of(0x9f, ...attestation.data.subarray(1), 0xff);
  const indefinite = encodeCbor([
    data,
    await member.signer.sign(signedMessage(DOMAIN.attestation, data)),
  ]);
  throwsMalformed(() => decodeAttestation(indefinite), "indefinite_length");
  // Signed data above its own limit.
  const big = await signedAttestation(member, [1, id, 1, X25519_KEY, NOW, NOW, "x".repeat(300)]);
  assert.throws(
    () => decodeAttestation(big),
    (error: unknown) => error instanceof LimitError && error.code === "too_large",
  );
});

Deno.test("decodeAttestation: an unknown version is refused, even if signed", async () => {
  const id = identifierToBytes(member.identifier);
  for (const version of [0, 2]) {
    const encoded = await signedAttestation(member, [version, id, 1, X25519_KEY, NOW, NOW + DAY]);
    throwsMalformed(() => decodeAttestation(encoded), "unknown_version");
    await assert.rejects(
      verifyAttestation(encoded, member, { now: NOW }),
      (error: unknown) => error instanceof MalformedError && error.code === "unknown_version",
    );
  }
});

Deno.test("verifyAttestation: returns the attestation it checked", async () => {
  const result: Attestation = await verifyAttestation(attestation, member, { now: NOW });
  assert.equal(result, attestation);
});
