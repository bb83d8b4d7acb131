/**
 * Mutation property tests of every signed structure, through the real
 * verifiers: an authority's change history (one change), its rotated
 * history (two changes), a purpose key attestation, a credential and a
 * revocation list.
 *
 * Each structure is mutated at random and handed to its verifier: blind
 * byte mutations (bit flips, set bytes, inserted, deleted, duplicated and
 * appended bytes, truncation, splices and transplants with the other
 * structures, fully random bytes) and structure-aware ones (a node of the
 * decoded tree, down into the signed `data`, edited, replaced, removed or
 * repeated, and the whole encoded again with consistent lengths, so the
 * mutant reaches the shape and signature checks); one to three mutations
 * stacked; never byte-identical to the original (see
 * `src/testdata/mutations.ts`). No mutant may crash the verifier, every
 * rejection must be typed, and no mutant may verify unless it *is* a
 * genuine structure.
 *
 * What "verifies" must not happen, precisely: the verifier accepts bytes
 * that differ from every genuine structure (see `acceptable` below).
 *
 * - Strict CBOR gives every value exactly one encoding, and every field of
 *   these structures either is covered by the signature (`data`) or is a
 *   signature itself. So a mutant that differs from the original in any
 *   byte either changes signed data (the signature no longer matches: a
 *   forgery), changes a signature (a second valid signature on the same data
 *   without the key: a forgery; WebCrypto's Ed25519 refuses a non-canonical
 *   S + L, one of the hand-picked mutants below), or is a different encoding
 *   of the same value (the gate must refuse it). None of these may verify.
 * - Mutations can still rebuild, byte for byte, *another* genuine structure:
 *   splicing the original with a corpus structure at offset 0, or cutting a
 *   rotated history back to its first change while rewriting the array head
 *   (0x82 to 0x81): that is the authority's older, valid history, and it
 *   legitimately verifies (as the older identity; rollback is the business
 *   of acceptHistoryUpdate, not of verifyChangeHistory). So the set of
 *   acceptable results is: the genuine structures of the corpus that the
 *   same verifier, with the same keys, trust store and clock, accepts. It
 *   is computed, not assumed; for the credential, for example, it holds
 *   only the original (the other credentials name another subject or were
 *   signed by the authority's key before its rotation).
 * - A mutant is compared by its bytes, not by the decoded value: a
 *   different encoding of the original that verified would be a malleable
 *   encoding, which is a failure too.
 *
 * Keys are fixed (SoftwareSigner.fromSeed) and so is the clock, so that a
 * failure replays from the printed seed. Run count: 10,000 mutants per
 * structure by default, PROPERTY_RUNS to change it; seed: PROPERTY_SEED.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { LimitError, MalformedError } from "../encoding/errors.ts";
import { toHex } from "../encoding/hex.ts";
import { CredentialError, IdentityError } from "../errors.ts";
import { createAttestation, verifyAttestation } from "../identity/attestation.ts";
import { verifyChangeHistory } from "../identity/change_history.ts";
import type { Identity } from "../identity/identity.ts";
import { type Credential, issueCredential, verifyCredential } from "./credential.ts";
import { createRevocationList, RevocationRegistry } from "./revocation.ts";
import { TrustStore } from "./trust_store.ts";
import {
  assertTypedError,
  describeConfiguration,
  type ErrorClass,
  type Mutant,
  mutantArbitrary,
  mutantOf,
  type Mutation,
  propertyParameters,
  propertyRuns,
  sameBytes,
} from "../testdata/mutations.ts";
import { identityFromByte, signerFromByte } from "../testdata/test_helpers.ts";

console.log(describeConfiguration("mutation_property_test"));

/** Mutants per structure in the default run. */
const DEFAULT_RUNS = 10_000;

/** The verifiers' clock: every structure below is valid at this instant. */
const NOW = 1_750_000_000;
const DAY = 24 * 3600;

// ---------------------------------------------------------------------------
// Fixtures: an authority that rotated its key once, a member, and what they
// signed.

const authorityV1 = await identityFromByte(0xa1, NOW - 30 * DAY);
const authority = await authorityV1.rotate(await signerFromByte(0xa2), { now: NOW - DAY });
const member = await identityFromByte(0xb1, NOW - 10 * DAY);
const stranger = await identityFromByte(0xc1, NOW - 5 * DAY);

const channelKey = new Uint8Array(32).fill(0x5c);
const otherChannelKey = new Uint8Array(32).fill(0x5d);
const attestation = await createAttestation(member, channelKey, {
  now: NOW - 600,
  ttlSeconds: DAY,
});
const otherAttestation = await createAttestation(member, otherChannelKey, {
  now: NOW - 300,
  ttlSeconds: DAY,
});

const attributes = {
  role: "operator",
  site: "eu-west-1",
  groups: ["ops", "db"],
  level: 3,
  active: true,
};
/** A credential issued a minute ago for an hour, its id 16 bytes of `idByte`. */
function issue(
  issuer: Identity,
  subject: Identity,
  attributes: Readonly<Record<string, unknown>>,
  idByte: number,
): Promise<Credential> {
  return issueCredential(issuer, {
    subject: subject.identifier,
    subjectKey: subject.primaryKey,
    attributes,
    now: NOW - 60,
    ttlSeconds: 3600,
    id: new Uint8Array(16).fill(idByte),
  });
}

const credential = await issue(authority, member, attributes, 0x11);
const strangerCredential = await issue(
  authority,
  stranger,
  { role: "admin", groups: ["root"] },
  0x22,
);
/** Same member, signed by the authority's key from before the rotation. */
const staleCredential = await issue(authorityV1, member, attributes, 0x33);

const revocationList = await createRevocationList(authority, {
  serial: 7,
  now: NOW - 30,
  credentialIds: [toHex(new Uint8Array(16).fill(0x44))],
  identifiers: [stranger.identifier],
});
const newerRevocationList = await createRevocationList(authority, {
  serial: 8,
  now: NOW - 20,
  credentialIds: [strangerCredential.id],
  identifiers: [],
});

/** Every genuine structure: what splices and transplants take bytes from. */
const corpus: readonly Uint8Array[] = [
  authorityV1.history.encoded,
  authority.history.encoded,
  member.history.encoded,
  stranger.history.encoded,
  attestation.encoded,
  otherAttestation.encoded,
  credential.encoded,
  strangerCredential.encoded,
  staleCredential.encoded,
  revocationList.encoded,
  newerRevocationList.encoded,
].map((bytes) => new Uint8Array(bytes));

// The verifiers' state: the authority's current history is trusted, the
// member's identity is known, the current revocation list is held.
const trust = new TrustStore([await verifyChangeHistory(authority.history.encoded)]);
const memberIdentity = await verifyChangeHistory(member.history.encoded);
const revocations = new RevocationRegistry();
await revocations.apply(revocationList.encoded, trust);

// ---------------------------------------------------------------------------
// Targets

interface Target {
  readonly name: string;
  readonly original: Uint8Array;
  /** The real verifier; resolves when the bytes verify. */
  verify(bytes: Uint8Array): Promise<unknown>;
  /** What a rejection may be an instance of. */
  readonly errors: readonly ErrorClass[];
  /** Hand-picked mutants run before the random ones. */
  readonly examples: readonly Mutant[];
}

const IDENTITY_ERRORS: readonly ErrorClass[] = [MalformedError, LimitError, IdentityError];
const CREDENTIAL_ERRORS: readonly ErrorClass[] = [MalformedError, LimitError, CredentialError];

/** The corpus index of `bytes`, for splice examples. */
function source(bytes: Uint8Array): number {
  const index = corpus.findIndex((g) => sameBytes(g, bytes));
  assert.ok(index >= 0);
  return index;
}

/** The whole structure replaced by `genuine`, a structure of the corpus. */
function replacedBy(genuine: Uint8Array): Mutation[] {
  return [{ kind: "splice", cut: 0, source: source(genuine), from: 0 }];
}

/** `encoded`'s data under `other`'s signature: the trailing 64 bytes transplanted. */
function signatureOf(encoded: Uint8Array, other: Uint8Array): Mutation[] {
  return [{
    kind: "transplant",
    at: encoded.length - 64,
    length: 64,
    source: source(other),
    from: other.length - 64,
    count: 64,
  }];
}

/**
 * The same structure with its trailing Ed25519 signature's S replaced by
 * S + L (L the group order): the same signature in a non-canonical form,
 * which a malleable verifier would accept.
 */
function malleated(encoded: Uint8Array): Mutation[] {
  const L = 2n ** 252n + 27742317777372353535851937790883648493n;
  const out = new Uint8Array(encoded);
  const at = out.length - 32; // S, little-endian
  let s = 0n;
  for (let i = 31; i >= 0; i--) s = (s << 8n) | BigInt(out[at + i]);
  s += L;
  for (let i = 0; i < 32; i++, s >>= 8n) out[at + i] = Number(s & 0xffn);
  return [{ kind: "random", bytes: out }];
}

/**
 * A target whose original is the corpus structure equal to `encoded`, and
 * whose hand-picked mutants apply `stacks` to it.
 */
function target(
  fields: Omit<Target, "original" | "examples">,
  encoded: Uint8Array,
  ...stacks: Mutant["mutations"][]
): Target {
  const original = corpus[source(encoded)];
  const examples = stacks.map((mutations) => mutantOf(original, corpus, mutations));
  return { ...fields, original, examples };
}

const history1 = corpus[source(authorityV1.history.encoded)];
const history2 = corpus[source(authority.history.encoded)];

const targets: readonly Target[] = [
  target(
    {
      name: "authority change history (1 change)",
      verify: (bytes) => verifyChangeHistory(bytes),
      errors: IDENTITY_ERRORS,
    },
    history1,
    malleated(history1),
    // Becomes the rotated history, byte for byte: acceptable.
    replacedBy(history2),
    // One change that claims a previous signature (a 3-item change).
    [{ kind: "set_byte", at: 1, value: 0x83 }, {
      kind: "append",
      bytes: history2.subarray(history2.length - 66),
    }],
    // The member's first change (same length) under the authority's
    // signature: after the array heads 0x81 0x82, the data up to the
    // signature's bstr (2 + 64 bytes).
    [{
      kind: "transplant",
      at: 2,
      length: history1.length - 2 - 66,
      source: source(member.history.encoded),
      from: 2,
      count: history1.length - 2 - 66,
    }],
  ),
  target(
    {
      name: "rotated change history (2 changes)",
      verify: (bytes) => verifyChangeHistory(bytes),
      errors: IDENTITY_ERRORS,
    },
    history2,
    malleated(history2), // the previous key's signature
    // Cut back to the first change with the array head rewritten: the
    // authority's older history, byte for byte. Acceptable.
    [{ kind: "set_byte", at: 0, value: 0x81 }, { kind: "truncate", length: history1.length }],
    // The second change (it starts where the first history ends) without
    // the previous key's signature: its array head says 2 items and the
    // last 66 bytes (bstr head + signature) go.
    [
      { kind: "set_byte", at: history1.length, value: 0x82 },
      { kind: "truncate", length: history2.length - 66 },
    ],
    // The second change listed twice.
    [{ kind: "set_byte", at: 0, value: 0x83 }, {
      kind: "duplicate",
      at: history1.length,
      length: history2.length - history1.length,
      to: history2.length,
    }],
  ),
  target(
    {
      name: "purpose key attestation",
      verify: (bytes) =>
        verifyAttestation(bytes, memberIdentity, { now: NOW, expectedKey: channelKey }),
      errors: IDENTITY_ERRORS,
    },
    attestation.encoded,
    // The member's other, genuine attestation: not the key presented.
    replacedBy(otherAttestation.encoded),
    malleated(attestation.encoded),
    // Its data with the other attestation's signature.
    signatureOf(attestation.encoded, otherAttestation.encoded),
  ),
  target(
    {
      name: "credential",
      verify: (bytes) =>
        verifyCredential(bytes, { trust, now: NOW, subject: member.identifier, revocations }),
      errors: CREDENTIAL_ERRORS,
    },
    credential.encoded,
    // Genuine credentials that must still not verify here: about someone
    // else, and signed by the key the authority rotated away from.
    replacedBy(strangerCredential.encoded),
    replacedBy(staleCredential.encoded),
    // The original signature in non-canonical form.
    malleated(credential.encoded),
    // The stale credential's data under the current credential's signature.
    [{
      kind: "transplant",
      at: 0,
      length: credential.encoded.length - 64,
      source: source(staleCredential.encoded),
      from: 0,
      count: staleCredential.encoded.length - 64,
    }],
  ),
  target(
    {
      name: "revocation list",
      verify: (bytes) => new RevocationRegistry().apply(bytes, trust),
      errors: CREDENTIAL_ERRORS,
    },
    revocationList.encoded,
    // The newer genuine list: acceptable.
    replacedBy(newerRevocationList.encoded),
    malleated(revocationList.encoded),
    // Serial 7's data with serial 8's signature.
    signatureOf(revocationList.encoded, newerRevocationList.encoded),
  ),
];

async function verifies(target: Target, bytes: Uint8Array): Promise<boolean> {
  try {
    await target.verify(bytes);
    return true;
  } catch {
    return false;
  }
}

for (const target of targets) {
  Deno.test(`mutation property: ${target.name}`, async () => {
    // Positive control: the original verifies, so rejections below are the
    // mutations' doing.
    await target.verify(target.original);
    const acceptable: Uint8Array[] = [];
    for (const genuine of corpus) {
      if (await verifies(target, genuine)) acceptable.push(genuine);
    }

    const runs = propertyRuns(DEFAULT_RUNS);
    let mutants = 0;
    let genuine = 0;
    const codes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(mutantArbitrary(target.original, corpus), async (mutant) => {
        mutants++;
        try {
          await target.verify(mutant.bytes);
        } catch (error) {
          assertTypedError(error, target.errors, mutant.bytes);
          const code = `${(error as Error).name}/${(error as { code: string }).code}`;
          codes.set(code, (codes.get(code) ?? 0) + 1);
          return;
        }
        if (!acceptable.some((g) => sameBytes(g, mutant.bytes))) {
          throw new Error(
            `a mutant of the ${target.name} verified: ${toHex(mutant.bytes)}\n` +
              `  original: ${toHex(target.original)}`,
          );
        }
        genuine++;
      }),
      propertyParameters<[Mutant]>(DEFAULT_RUNS, target.examples.map((m): [Mutant] => [m])),
    );

    const expected = runs + target.examples.length;
    assert.ok(
      mutants >= expected,
      `only ${mutants} mutants of the ${target.name} ran, expected ${expected}`,
    );
    const histogram = [...codes].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`);
    console.log(
      `${target.name}: ${mutants} mutants (${target.examples.length} hand-picked); ` +
        `${genuine} rebuilt another genuine structure that verifies (${acceptable.length} ` +
        `acceptable); rejected: ${histogram.join(", ")}`,
    );
  });
}
