/**
 * Property tests of the receiving side of a secure channel, in process:
 * a genuine Noise XX handshake with identity payloads is captured (its
 * three messages, the transport records that follow it, a routed message
 * as the wire carries it), and mutants of each are fed to the code that
 * receives them: `XXHandshake.readMessage` (then `verifyPeer` for messages
 * 2 and 3), `ReceiveCipher.open`, `decodeRoutedMessage`.
 *
 * Mutants come from `src/testdata/mutations.ts`: blind byte mutations
 * (bit flips, set, inserted, deleted, duplicated and appended bytes,
 * truncation, splices and transplants with the other genuine structures,
 * fully random bytes) and structure-aware ones; one to three stacked;
 * never byte-identical to the original. On top of the mutants, each target
 * also gets fully random inputs.
 *
 * What must hold, for every input:
 *
 * - Nothing crashes: a refusal is a typed error (HandshakeError,
 *   MalformedError, LimitError, IdentityError, CredentialError, each with a
 *   string `code`), and so is every `cause` under it, except the runtime's
 *   own DOMException under `decrypt_failed` and `bad_dh` (WebCrypto's
 *   refusal, which those codes exist to wrap). `ReceiveCipher.open` never
 *   throws at all: it returns `{ ok: false, reason }`.
 * - Nothing forged is accepted. Messages 2 and 3 are authenticated
 *   end to end (AEAD under keys that depend on every earlier byte), so no
 *   mutant may even decrypt. Message 1 is not authenticated (it is a bare
 *   ephemeral key): any 32 bytes are a valid message 1, but the reply the
 *   responder builds on a mutated one must be refused by the genuine
 *   initiator. A record opens only when it is one of the genuine records.
 *   A routed message header is not authenticated either: what decodes must
 *   be canonical (re-encoding gives the same bytes back).
 * - After a failed `readMessage` the state machine is dead: reading the
 *   genuine message, writing, or splitting all throw `out_of_order`.
 * - A forged record changes nothing: a long-lived receiver that saw every
 *   mutant still opens the genuine record afterwards; and a forgery still
 *   decrypting when the genuine record with its counter arrives does not
 *   cost the genuine one (records over SMALL_RECORD are opened by
 *   WebCrypto, several at once, so both paths are fuzzed).
 * - What a relay does to a header without decoding it agrees with the
 *   decoder: `firstOnwardAddress` reads what decoding reads, and
 *   `forwardRoutedMessage` forwards exactly decode, pop, push, encode, and
 *   refuses what does not decode (the next hop would refuse it, closing
 *   the relay's connection for every member behind it).
 *
 * The identity payloads are also mutated *inside* valid encryption: message
 * 2 (or 3) is rebuilt with the mutated payload by `writeMessage`, so that
 * every mutant decrypts and reaches `verifyPeer`. There, acceptance is not
 * "only the original bytes": the payload is a list of credentials of which
 * the first that verifies counts, so `[genuine, junk]` or the genuine
 * credential twice is accepted by design. What must hold is that only a
 * payload carrying the genuine change history, the genuine attestation and
 * the genuine credential passes, and that what passes is the genuine peer.
 *
 * Keys (identities and X25519 statics and ephemerals) and the clock are
 * fixed, so a failure replays from the printed seed. Runs: 10,000 mutants
 * per target plus 1,000 fully random inputs by default (PROPERTY_RUNS sets
 * the mutant count; the random inputs are a tenth of it); seed:
 * PROPERTY_SEED. Over real TCP: tests/channel_fuzz_test.ts.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { issueCredential } from "../credential/credential.ts";
import { TrustStore } from "../credential/trust_store.ts";
import { encodeCbor } from "../encoding/cbor.ts";
import { LimitError, MalformedError } from "../encoding/errors.ts";
import { toHex } from "../encoding/hex.ts";
import { CredentialError, HandshakeError, IdentityError } from "../errors.ts";
import { createAttestation } from "../identity/attestation.ts";
import type { Identity } from "../identity/identity.ts";
import {
  decodeRoutedMessage,
  encodeRoutedMessage,
  firstOnwardAddress,
  forwardRoutedMessage,
  isAddress,
  MAX_ROUTE_LENGTH,
  type RoutedMessage,
} from "../routing/routed_message.ts";
import {
  describeConfiguration,
  type ErrorClass,
  type Mutant,
  mutantArbitrary,
  mutantOf,
  propertyParameters,
  propertyRuns,
  propertySeed,
  sameBytes,
} from "../testdata/mutations.ts";
import { identityFromByte } from "../testdata/test_helpers.ts";
import { decodeIdentityPayload, encodeIdentityPayload } from "./identity_payload.ts";
import { type DhKeyPair, dhKeyPairFromPrivate } from "./noise/x25519.ts";
import { XXHandshake } from "./noise/handshake_state.ts";
import { PROLOGUE } from "./secure_channel.ts";
import { type DropReason, ReceiveCipher, SendCipher, SMALL_RECORD } from "./transport_cipher.ts";
import { type TrustPolicy, type VerifiedPeer, verifyPeer } from "./trust_policy.ts";

console.log(describeConfiguration("handshake_property_test"));

/** Mutants per target in the default run. */
const DEFAULT_RUNS = 10_000;
/** Fully random inputs per target, on top of the mutants (a tenth of them). */
const randomRuns = (): number => Math.max(1, Math.ceil(propertyRuns(DEFAULT_RUNS) / 10));

/** The verifiers' clock: every structure below is valid at this instant. */
const NOW = 1_750_000_000;
const DAY = 24 * 3600;

// ---------------------------------------------------------------------------
// Fixtures: an authority, a responder (gateway) and an initiator (edge),
// each with an attested X25519 static key and a credential; fixed
// ephemerals, so the genuine handshake is the same bytes on every run.

const authority = await identityFromByte(0xa1, NOW - 30 * DAY);
const policy: TrustPolicy = { trust: new TrustStore([authority]), now: () => NOW };

interface Party {
  readonly identity: Identity;
  readonly staticKeyPair: DhKeyPair;
  readonly ephemeral: DhKeyPair;
  readonly attestation: Uint8Array;
  readonly credential: Uint8Array;
  readonly payload: Uint8Array;
}

async function party(byte: number, role: string): Promise<Party> {
  const identity = await identityFromByte(byte, NOW - 10 * DAY);
  const staticKeyPair = await dhKeyPairFromPrivate(new Uint8Array(32).fill(byte ^ 0x11));
  const ephemeral = await dhKeyPairFromPrivate(new Uint8Array(32).fill(byte ^ 0x22));
  const attestation = (await createAttestation(identity, staticKeyPair.publicKey, {
    now: NOW - 600,
    ttlSeconds: DAY,
  }))
    .encoded;
  const credential = (await issueCredential(authority, {
    subject: identity.identifier,
    subjectKey: identity.primaryKey,
    attributes: { role },
    now: NOW - 60,
    ttlSeconds: 3600,
    id: new Uint8Array(16).fill(byte),
  })).encoded;
  const payload = encodeIdentityPayload({
    history: identity.history.encoded,
    attestation,
    credentials: [credential],
  });
  return { identity, staticKeyPair, ephemeral, attestation, credential, payload };
}

const responder = await party(0xb2, "gateway");
const initiator = await party(0xc3, "edge");
const EMPTY = new Uint8Array(0);

/** A fresh initiator that has processed `step` messages of the genuine handshake. */
async function initiatorAt(step: 0 | 1 | 2): Promise<XXHandshake> {
  const handshake = new XXHandshake({
    initiator: true,
    prologue: PROLOGUE,
    staticKeyPair: initiator.staticKeyPair,
    ephemeralKeyPair: initiator.ephemeral,
  });
  if (step >= 1) await handshake.writeMessage(EMPTY);
  if (step >= 2) await handshake.readMessage(genuine.message2);
  return handshake;
}

/** A fresh responder that has processed `step` messages of the genuine handshake. */
async function responderAt(step: 0 | 1 | 2): Promise<XXHandshake> {
  const handshake = new XXHandshake({
    initiator: false,
    prologue: PROLOGUE,
    staticKeyPair: responder.staticKeyPair,
    ephemeralKeyPair: responder.ephemeral,
  });
  if (step >= 1) await handshake.readMessage(genuine.message1);
  if (step >= 2) await handshake.writeMessage(responder.payload);
  return handshake;
}

/** The genuine handshake, run once; `initiatorAt`/`responderAt` replay it. */
const genuine = await (async () => {
  const i = new XXHandshake({
    initiator: true,
    prologue: PROLOGUE,
    staticKeyPair: initiator.staticKeyPair,
    ephemeralKeyPair: initiator.ephemeral,
  });
  const r = new XXHandshake({
    initiator: false,
    prologue: PROLOGUE,
    staticKeyPair: responder.staticKeyPair,
    ephemeralKeyPair: responder.ephemeral,
  });
  const message1 = await i.writeMessage(EMPTY);
  assert.equal((await r.readMessage(message1)).length, 0);
  const message2 = await r.writeMessage(responder.payload);
  assert.deepEqual(await i.readMessage(message2), responder.payload);
  const message3 = await i.writeMessage(initiator.payload);
  assert.deepEqual(await r.readMessage(message3), initiator.payload);
  const keys = i.split();
  assert.deepEqual(r.split(), keys);
  return { message1, message2, message3, keys };
})();

// The replays are deterministic: they rebuild the genuine messages exactly.
assert.deepEqual(await (await initiatorAt(0)).writeMessage(EMPTY), genuine.message1);
assert.deepEqual(
  await (await responderAt(1)).writeMessage(responder.payload),
  genuine.message2,
);
assert.deepEqual(
  await (await initiatorAt(2)).writeMessage(initiator.payload),
  genuine.message3,
);

// Records the initiator sends after the handshake (kind byte + body, as
// secure_channel.ts frames them), and one of the other direction.
const encoder = new TextEncoder();
const recordPlaintexts = [
  Uint8Array.of(0x01, ...encodeRoutedMessage(["echo"], ["app"], encoder.encode("hello"))),
  Uint8Array.of(0x01, ...encodeRoutedMessage(["echo"], ["app"], encoder.encode("second"))),
  Uint8Array.of(0x03, ...encoder.encode("bye")),
];
const sender = SendCipher.create(genuine.keys.initiatorToResponder);
const records: Uint8Array[] = [];
for (const plaintext of recordPlaintexts) records.push(await sender.seal(plaintext));
const replyRecord = await SendCipher.create(genuine.keys.responderToInitiator)
  .seal(recordPlaintexts[0]);
// A record above SMALL_RECORD: opened by WebCrypto, asynchronously, rather
// than by node:crypto in the same call.
const largePlaintext = Uint8Array.of(
  0x01,
  ...encodeRoutedMessage(["echo"], ["app"], new Uint8Array(SMALL_RECORD + 500).fill(0x6c)),
);
const largeRecord = await sender.seal(largePlaintext);
records.push(largeRecord);
recordPlaintexts.push(largePlaintext);

// Routed messages as a connection carries them.
const routedMessages = [
  encodeRoutedMessage(
    ["scd.0123456789abcdef"],
    ["tcp.fedcba9876543210", "fz"],
    Uint8Array.of(0x03, ...genuine.message3),
  ),
  encodeRoutedMessage(["api"], ["tcp.fedcba9876543210"], Uint8Array.of(0x01, ...genuine.message1)),
  encodeRoutedMessage(["fz"], ["scd.0123456789abcdef"], Uint8Array.of(0x04, ...records[0])),
  encodeRoutedMessage([], [], EMPTY),
];

/** Everything genuine: what splices and transplants take bytes from. */
const corpus: readonly Uint8Array[] = [
  genuine.message1,
  genuine.message2,
  genuine.message3,
  ...records,
  replyRecord,
  ...routedMessages,
  responder.payload,
  initiator.payload,
  responder.identity.history.encoded,
  initiator.identity.history.encoded,
  authority.history.encoded,
  responder.attestation,
  initiator.attestation,
  responder.credential,
  initiator.credential,
].map((bytes) => new Uint8Array(bytes));

// ---------------------------------------------------------------------------
// Checks

const TYPED: readonly ErrorClass[] = [
  HandshakeError,
  MalformedError,
  LimitError,
  IdentityError,
  CredentialError,
];

/**
 * Throws unless `error` is typed (one of {@link TYPED}, with a string code)
 * and so is each cause under it, with one exception: the errors whose job
 * is to classify a runtime failure may carry the runtime's error as their
 * cause (a MalformedError or LimitError of the decoders, wrapping e.g.
 * TextDecoder's TypeError; a HandshakeError `decrypt_failed` or `bad_dh`,
 * wrapping WebCrypto's refusal). A typed error wrapping an untyped one
 * anywhere else (say `identity_rejected` over a TypeError from inside a
 * verifier) is a crash in disguise and fails. Returns `Class/code`.
 */
function typedCode(error: unknown, input: Uint8Array): string {
  const path: string[] = [];
  for (let e: unknown = error; e !== undefined;) {
    path.push(e instanceof Error ? e.constructor.name : typeof e);
    const code = codeOf(e);
    if (code === undefined) {
      throw new Error(
        `untyped ${path.length === 1 ? "rejection" : "cause"} ${path.join(" <- ")}: ` +
          `${String(e)}\n  input (${input.length} bytes): ${toHex(input)}`,
        { cause: error },
      );
    }
    const wrapsRuntime = e instanceof MalformedError || e instanceof LimitError ||
      (e instanceof HandshakeError && (code === "decrypt_failed" || code === "bad_dh"));
    const cause = (e as Error).cause;
    e = wrapsRuntime && codeOf(cause) === undefined ? undefined : cause;
  }
  return `${(error as Error).name}/${codeOf(error)}`;
}

/** The `code` of a typed error (one of {@link TYPED}), else undefined. */
function codeOf(error: unknown): string | undefined {
  if (!TYPED.some((cls) => error instanceof cls)) return undefined;
  const code: unknown = (error as { code?: unknown }).code;
  return typeof code === "string" && code.length > 0 ? code : undefined;
}

/** After a failure, the state refuses the genuine message, writing and splitting. */
async function assertDead(handshake: XXHandshake, genuineMessage: Uint8Array): Promise<void> {
  for (
    const attempt of [
      () => handshake.readMessage(genuineMessage),
      () => handshake.writeMessage(EMPTY),
    ]
  ) {
    try {
      await attempt();
    } catch (error) {
      assert.ok(
        error instanceof HandshakeError && error.code === "out_of_order",
        `a failed handshake state accepted further use: ${error}`,
      );
      continue;
    }
    assert.fail("a failed handshake state accepted further use");
  }
  assert.throws(
    () => handshake.split(),
    (e: unknown) => e instanceof HandshakeError && e.code === "out_of_order",
  );
}

/** Tally of outcomes by name, printed at the end of each test. */
class Tally {
  #counts = new Map<string, number>();
  add(name: string): void {
    this.#counts.set(name, (this.#counts.get(name) ?? 0) + 1);
  }
  get(name: string): number {
    return this.#counts.get(name) ?? 0;
  }
  get total(): number {
    let n = 0;
    for (const count of this.#counts.values()) n += count;
    return n;
  }
  toString(): string {
    return [...this.#counts].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`).join(", ");
  }
}

/**
 * Runs `check` on ≥ PROPERTY_RUNS mutants of `original` and on fully random
 * inputs (any length up to twice the original's, and exactly its length),
 * and checks that they all ran.
 */
async function runProperty(
  name: string,
  original: Uint8Array,
  check: (bytes: Uint8Array, tally: Tally) => Promise<void>,
  examples: readonly Uint8Array[] = [],
): Promise<void> {
  const runs = propertyRuns(DEFAULT_RUNS) + examples.length;
  const mutants = new Tally();
  const started = performance.now();
  await fc.assert(
    fc.asyncProperty(
      mutantArbitrary(original, corpus),
      (mutant: Mutant) => check(mutant.bytes, mutants),
    ),
    propertyParameters<[Mutant]>(
      DEFAULT_RUNS,
      examples.map((bytes): [Mutant] => [mutantOf(original, corpus, [{ kind: "random", bytes }])]),
    ),
  );
  assert.ok(mutants.total >= runs, `only ${mutants.total} mutants ran, expected ${runs}`);
  const random = new Tally();
  const randomBytes = fc.oneof(
    fc.uint8Array({ maxLength: 2 * original.length }),
    fc.uint8Array({ minLength: original.length, maxLength: original.length }),
  ).filter((bytes) => !sameBytes(bytes, original));
  await fc.assert(
    fc.asyncProperty(randomBytes, (bytes) => check(bytes, random)),
    { seed: propertySeed(), numRuns: randomRuns() },
  );
  assert.ok(random.total >= randomRuns());
  console.log(
    `${name}: ${mutants.total} mutants (${examples.length} hand-picked): ${mutants}; ` +
      `${random.total} random: ${random}; ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
}

/** The genuine peer `peer` must be, for `party`. */
function assertGenuinePeer(peer: VerifiedPeer, who: Party, payload: Uint8Array): void {
  assert.equal(peer.identifier, who.identity.identifier, `peer of ${toHex(payload)}`);
  assert.ok(sameBytes(peer.attestation.encoded, who.attestation));
  assert.ok(peer.credential !== null && sameBytes(peer.credential.encoded, who.credential));
}

// ---------------------------------------------------------------------------
// Handshake messages, mutated on the wire

/**
 * X25519 public keys of small order, and non-canonical encodings of them
 * (p - 1, p, p + 1, and with the top bit set): DH with them gives all
 * zeros, which the runtime must refuse (`bad_dh`).
 */
const LOW_ORDER_POINTS: readonly Uint8Array[] = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
  "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "0000000000000000000000000000000000000000000000000000000000000080",
  "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
].map(fromHex);

function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g)!, (byte) => parseInt(byte, 16));
}

/** `message` with its first 32 bytes (an ephemeral key) replaced by `key`. */
function withEphemeral(message: Uint8Array, key: Uint8Array): Uint8Array {
  const out = new Uint8Array(message);
  out.set(key, 0);
  return out;
}

Deno.test("handshake: every low-order ephemeral key is refused with bad_dh", async () => {
  for (const key of LOW_ORDER_POINTS) {
    const handshake = await responderAt(0);
    await handshake.readMessage(withEphemeral(genuine.message1, key));
    await assert.rejects(
      handshake.writeMessage(responder.payload),
      (e: unknown) => e instanceof HandshakeError && e.code === "bad_dh",
      toHex(key),
    );
    await assertDead(handshake, genuine.message1);
    const initiatorSide = await initiatorAt(1);
    await assert.rejects(
      initiatorSide.readMessage(withEphemeral(genuine.message2, key)),
      (e: unknown) => e instanceof HandshakeError && e.code === "bad_dh",
      toHex(key),
    );
    await assertDead(initiatorSide, genuine.message2);
  }
});

Deno.test("handshake property: mutated message 1 never completes a handshake", async () => {
  // Positive control.
  assert.equal((await (await responderAt(0)).readMessage(genuine.message1)).length, 0);
  await runProperty("message 1", genuine.message1, async (bytes, tally) => {
    const responderSide = await responderAt(0);
    let payload: Uint8Array;
    try {
      payload = await responderSide.readMessage(bytes);
    } catch (error) {
      tally.add(typedCode(error, bytes));
      await assertDead(responderSide, genuine.message1);
      return;
    }
    // Unauthenticated: the rest after the ephemeral key is the payload, in clear.
    assert.ok(bytes.length >= 32);
    assert.ok(sameBytes(payload, bytes.subarray(32)));
    if (payload.length !== 0) {
      // The listener refuses a message 1 with a payload (bad_payload).
      tally.add("listener/bad_payload");
      return;
    }
    // Any other 32 bytes are a well-formed ephemeral key: the responder
    // answers, and the genuine initiator must refuse that answer.
    let reply: Uint8Array;
    try {
      reply = await responderSide.writeMessage(responder.payload);
    } catch (error) {
      tally.add(`write ${typedCode(error, bytes)}`);
      await assertDead(responderSide, genuine.message1);
      return;
    }
    const initiatorSide = await initiatorAt(1);
    try {
      await initiatorSide.readMessage(reply);
    } catch (error) {
      tally.add(`reply refused ${typedCode(error, reply)}`);
      await assertDead(initiatorSide, genuine.message2);
      return;
    }
    assert.fail(`the initiator accepted a reply to a mutated message 1: ${toHex(bytes)}`);
  }, [
    ...LOW_ORDER_POINTS,
    // The genuine key with the top bit set: X25519 ignores that bit, so the
    // DH result is the same, but the transcript hash is not.
    withEphemeral(genuine.message1, Uint8Array.of(...genuine.message1.subarray(0, 31), 0x80)),
    genuine.message1.subarray(0, 31),
    new Uint8Array(65536),
  ]);
});

/** The message-2 and message-3 properties: nothing but the original decrypts. */
async function authenticatedMessage(
  name: string,
  original: Uint8Array,
  receiver: () => Promise<XXHandshake>,
  sender: Party,
  examples: readonly Uint8Array[],
): Promise<void> {
  // Positive control: the original reads and its sender verifies.
  const control = await receiver();
  const payload = await control.readMessage(original);
  assertGenuinePeer(await verifyPeer(payload, control.remoteStaticKey!, policy), sender, payload);
  await runProperty(name, original, async (bytes, tally) => {
    const handshake = await receiver();
    let payload: Uint8Array;
    try {
      payload = await handshake.readMessage(bytes);
    } catch (error) {
      tally.add(typedCode(error, bytes));
      await assertDead(handshake, original);
      return;
    }
    // Only reached if AEAD let a forgery through; say what verifyPeer made of it.
    let verdict: string;
    try {
      const peer = await verifyPeer(payload, handshake.remoteStaticKey!, policy);
      verdict = `and verifyPeer accepted it as ${peer.identifier}`;
    } catch (error) {
      verdict = `(verifyPeer: ${error})`;
    }
    assert.fail(`a mutant of ${name} decrypted ${verdict}: ${toHex(bytes)}`);
  }, examples);
}

Deno.test("handshake property: no mutant of message 2 decrypts", () =>
  authenticatedMessage("message 2", genuine.message2, () => initiatorAt(1), responder, [
    ...LOW_ORDER_POINTS.map((key) => withEphemeral(genuine.message2, key)),
    withEphemeral(genuine.message2, genuine.message1.subarray(0, 32)),
    genuine.message2.subarray(0, 32 + 48 + 15),
    new Uint8Array(65536),
  ]));

Deno.test("handshake property: no mutant of message 3 decrypts", () =>
  authenticatedMessage("message 3", genuine.message3, () => responderAt(2), initiator, [
    // Message 2's encrypted static key and payload in place of message 3's.
    genuine.message2.subarray(32),
    genuine.message3.subarray(0, 48 + 15),
    new Uint8Array(65536),
  ]));

// ---------------------------------------------------------------------------
// Identity payloads, mutated inside valid encryption

/**
 * verifyPeer on a payload that decrypted: a typed refusal, or a payload
 * that carries `who`'s genuine history, attestation and credential and
 * verifies as `who`.
 */
async function checkPayload(
  payload: Uint8Array,
  remoteStaticKey: Uint8Array,
  who: Party,
  tally: Tally,
): Promise<void> {
  let peer: VerifiedPeer;
  try {
    peer = await verifyPeer(payload, remoteStaticKey, policy);
  } catch (error) {
    tally.add(typedCode(error, payload));
    return;
  }
  const decoded = decodeIdentityPayload(payload);
  assert.ok(
    sameBytes(decoded.history, who.identity.history.encoded) &&
      sameBytes(decoded.attestation, who.attestation) &&
      decoded.credentials.some((c) => sameBytes(c, who.credential)),
    `verifyPeer accepted a payload without the genuine history, attestation and credential: ` +
      toHex(payload),
  );
  assertGenuinePeer(peer, who, payload);
  tally.add("accepted: genuine fields, other list");
}

/**
 * Hand-picked payloads for `who` (whose peer is `other`): credential lists
 * that still carry the genuine credential (acceptable), and payloads that
 * borrow the other party's fields.
 */
function payloadExamples(who: Party, other: Party): Uint8Array[] {
  const payload = (
    history: Uint8Array,
    attestation: Uint8Array,
    credentials: Uint8Array[],
  ) => encodeIdentityPayload({ history, attestation, credentials });
  const history = who.identity.history.encoded;
  const junk = Uint8Array.of(0x80);
  return [
    payload(history, who.attestation, [who.credential, who.credential]),
    payload(history, who.attestation, [junk, who.credential]),
    payload(history, who.attestation, [other.credential, who.credential]),
    payload(history, who.attestation, [who.credential, junk]),
    // Too many credentials, too large: what encodeIdentityPayload itself refuses to build.
    encodeCbor([1, history, who.attestation, Array(9).fill(who.credential)]),
    encodeCbor([1, history, who.attestation, [new Uint8Array(61 * 1024)]]),
    payload(history, who.attestation, []),
    payload(history, who.attestation, [other.credential]),
    payload(history, other.attestation, [who.credential]),
    payload(other.identity.history.encoded, other.attestation, [other.credential]),
    payload(authority.history.encoded, who.attestation, [who.credential]),
    other.payload,
  ];
}

Deno.test("handshake property: identity payload mutated inside message 2", async () => {
  await runProperty("payload in message 2", responder.payload, async (bytes, tally) => {
    let message2: Uint8Array;
    try {
      message2 = await (await responderAt(1)).writeMessage(bytes);
    } catch (error) {
      tally.add(`unsendable ${typedCode(error, bytes)}`);
      return;
    }
    const handshake = await initiatorAt(1);
    // Validly encrypted: it must decrypt, to exactly the mutated payload.
    const payload = await handshake.readMessage(message2);
    assert.ok(sameBytes(payload, bytes));
    await checkPayload(payload, handshake.remoteStaticKey!, responder, tally);
  }, payloadExamples(responder, initiator));
});

Deno.test("handshake property: identity payload mutated inside message 3", async () => {
  await runProperty("payload in message 3", initiator.payload, async (bytes, tally) => {
    let message3: Uint8Array;
    try {
      message3 = await (await initiatorAt(2)).writeMessage(bytes);
    } catch (error) {
      tally.add(`unsendable ${typedCode(error, bytes)}`);
      return;
    }
    const handshake = await responderAt(2);
    const payload = await handshake.readMessage(message3);
    assert.ok(sameBytes(payload, bytes));
    await checkPayload(payload, handshake.remoteStaticKey!, initiator, tally);
  }, payloadExamples(initiator, responder));
});

// ---------------------------------------------------------------------------
// Transport records

const DROP_REASONS: readonly DropReason[] = [
  "malformed",
  "replayed",
  "too_old",
  "too_new",
  "auth_failed",
];

/** `record` with its clear counter replaced by `n`. */
function withCounter(record: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(record);
  const high = Math.floor(n / 2 ** 32);
  const low = n >>> 0;
  out.set([high >>> 24, (high >>> 16) & 0xff, (high >>> 8) & 0xff, high & 0xff], 0);
  out.set([low >>> 24, (low >>> 16) & 0xff, (low >>> 8) & 0xff, low & 0xff], 4);
  return out;
}

/** The genuine record equal to `bytes`, if any. */
function genuineRecordIndex(bytes: Uint8Array): number {
  return records.findIndex((r) => sameBytes(r, bytes));
}

/**
 * No mutant of `records[index]` opens, on a fresh receiver or on one that
 * saw every mutant before, unless it is a genuine record; and the mutants
 * change nothing for the genuine record.
 */
async function recordProperty(name: string, index: number): Promise<void> {
  const key = genuine.keys.initiatorToResponder;
  const original = records[index];
  // Genuine records of this direction open on a fresh receiver, to their plaintext.
  for (const [i, record] of records.entries()) {
    const opened = await ReceiveCipher.create(key).open(record);
    assert.ok(opened.ok && sameBytes(opened.plaintext, recordPlaintexts[i]));
  }
  assert.equal((await ReceiveCipher.create(key).open(replyRecord)).ok, false);
  // A long-lived receiver that sees every mutant and never the original.
  const longLived = ReceiveCipher.create(key);
  await runProperty(name, original, async (bytes, tally) => {
    for (const receiver of [ReceiveCipher.create(key), longLived]) {
      let result;
      try {
        result = await receiver.open(bytes);
      } catch (error) {
        assert.fail(`ReceiveCipher.open threw ${error} for ${toHex(bytes)}`);
      }
      if (!result.ok) {
        assert.ok(DROP_REASONS.includes(result.reason), result.reason);
        if (receiver !== longLived) tally.add(result.reason);
        continue;
      }
      const i = genuineRecordIndex(bytes);
      assert.ok(i >= 0, `a mutant record opened: ${toHex(bytes)}`);
      assert.ok(sameBytes(result.plaintext, recordPlaintexts[i]));
      if (receiver !== longLived) tally.add(`genuine record ${i}`);
    }
  }, [
    ...records.filter((r) => r !== original),
    replyRecord,
    // Genuine bodies under other counters: 1, the next epoch, the last nonce.
    withCounter(original, 1),
    withCounter(original, 65536),
    withCounter(original, 2 ** 53 - 2),
    withCounter(original, 2 ** 53 - 1),
    original.subarray(0, 8 + 16),
  ]);
  // The forgeries changed nothing: the genuine record still opens, once.
  const opened = await longLived.open(original);
  assert.ok(opened.ok && sameBytes(opened.plaintext, recordPlaintexts[index]));
  const again = await longLived.open(original);
  assert.ok(!again.ok && again.reason === "replayed");
}

Deno.test("record property: no mutant of a small record opens", () =>
  recordProperty("record (node:crypto)", 0));

Deno.test("record property: no mutant of a large record opens", () =>
  recordProperty("record over SMALL_RECORD (WebCrypto)", records.length - 1));

Deno.test("record property: a forgery in flight never costs the genuine record", async () => {
  // SecureChannel opens up to RECEIVE_PIPELINE records at once, so a
  // forged record may still be decrypting when the genuine record with
  // the same counter arrives. Whatever the forgery, the genuine one opens.
  const key = genuine.keys.initiatorToResponder;
  const original = records[records.length - 1];
  let lost = 0;
  let first = "";
  await runProperty("large record with a forgery in flight", original, async (bytes, tally) => {
    const receiver = ReceiveCipher.create(key);
    const [forged, real] = await Promise.all([receiver.open(bytes), receiver.open(original)]);
    const i = genuineRecordIndex(bytes);
    if (forged.ok) assert.ok(i >= 0, `a mutant record opened: ${toHex(bytes)}`);
    if (real.ok) {
      tally.add(`genuine opened (forgery: ${forged.ok ? "genuine" : forged.reason})`);
      return;
    }
    // Dropped: acceptable only as a replay of a genuine twin that opened first.
    if (forged.ok && i >= 0 && sameBytes(records[i], original)) return;
    lost++;
    first ||=
      `${toHex(bytes.subarray(0, 24))}… (forgery ${forged.ok ? "opened" : forged.reason}, ` +
      `genuine dropped as ${real.reason})`;
    tally.add(`GENUINE DROPPED as ${real.reason}`);
  });
  assert.equal(
    lost,
    0,
    `${lost} genuine records were dropped because a forgery with their counter was in flight; ` +
      `first: ${first}`,
  );
});

// ---------------------------------------------------------------------------
// Routed message headers

/** The routed messages of the corpus, and hand-picked edge cases of the layout. */
const routedExamples: readonly Uint8Array[] = [
  encodeRoutedMessage(Array(16).fill("a".repeat(255)), Array(16).fill("~"), EMPTY),
  encodeRoutedMessage(["a"], Array(15).fill("b"), EMPTY),
  Uint8Array.of(1, 17, ...Array(17).fill([1, 0x61]).flat(), 0),
  Uint8Array.of(1, 1, 0, 0),
  Uint8Array.of(1, 1, 1, 0x20, 0),
  Uint8Array.of(1, 1, 1, 0x7f, 0),
  Uint8Array.of(1, 1, 2, 0x61),
  Uint8Array.of(1, 0),
  Uint8Array.of(2, 0, 0),
  // Only a later address is not printable: the first is, and the layout is right.
  Uint8Array.of(1, 2, 3, 0x61, 0x70, 0x69, 1, 0x01, 0, 0xaa),
  Uint8Array.of(1, 1, 3, 0x61, 0x70, 0x69, 1, 1, 0x20, 0xaa),
];

/** decodeRoutedMessage, or the MalformedError's code. */
function decodeOrCode(bytes: Uint8Array): RoutedMessage | string {
  try {
    return decodeRoutedMessage(bytes);
  } catch (error) {
    assert.ok(error instanceof MalformedError, `untyped rejection ${error}: ${toHex(bytes)}`);
    return typedCode(error, bytes);
  }
}

Deno.test("routed message property: decoding is typed and canonical", async () => {
  const original = routedMessages[0];
  const decoded = decodeRoutedMessage(original);
  assert.deepEqual(decoded.onward, ["scd.0123456789abcdef"]);
  await runProperty("routed message", original, (bytes, tally) => {
    const message = decodeOrCode(bytes);
    if (typeof message === "string") {
      tally.add(message);
      // The relay's quick look agrees: no first address where decoding fails on it.
      return Promise.resolve();
    }
    for (const route of [message.onward, message.return]) {
      assert.ok(route.length <= MAX_ROUTE_LENGTH);
      assert.ok(route.every(isAddress), `invalid address decoded from ${toHex(bytes)}`);
    }
    // One encoding per message: what decodes re-encodes to the same bytes.
    const again = encodeRoutedMessage(message.onward, message.return, message.payload);
    assert.ok(sameBytes(again, bytes), `non-canonical routed message ${toHex(bytes)}`);
    // What a relay reads without decoding is what decoding says.
    assert.equal(firstOnwardAddress(bytes), message.onward[0] ?? null, toHex(bytes));
    tally.add("decoded (canonical)");
    return Promise.resolve();
  }, routedExamples);
});

Deno.test("routed message property: header-only forwarding agrees with the decoder", async () => {
  // A relay forwards with forwardRoutedMessage, never decoding; the next
  // hop decodes. Whatever the relay forwards must decode there (else the
  // next hop closes its connection, the relay's, which carries every other
  // member's traffic too), and must be decode, pop, push `via`, encode.
  const via = "c.0123456789abcdef";
  /** Forwarded although malformed, and the next hop refuses the result. */
  let refusedNext = 0;
  /** Forwarded although malformed (its first address), the result decodes. */
  let malformedFirst = 0;
  let first = "";
  await runProperty("routed message forwarding", routedMessages[0], (bytes, tally) => {
    const message = decodeOrCode(bytes);
    let out: Uint8Array | null;
    try {
      out = forwardRoutedMessage(bytes, via);
    } catch (error) {
      assert.fail(`forwardRoutedMessage threw ${error} for ${toHex(bytes)}`);
    }
    if (typeof message !== "string") {
      const forwardable = message.onward.length > 0 && message.return.length < MAX_ROUTE_LENGTH;
      if (!forwardable) {
        assert.equal(out, null, `forwarded an unforwardable message ${toHex(bytes)}`);
        tally.add("refused (no onward address or full return route)");
        return Promise.resolve();
      }
      assert.ok(out !== null, `refused to forward a valid message ${toHex(bytes)}`);
      const expected = encodeRoutedMessage(
        message.onward.slice(1),
        [via, ...message.return],
        message.payload,
      );
      assert.ok(sameBytes(out, expected), `forwarded wrongly: ${toHex(bytes)}`);
      tally.add("forwarded");
      return Promise.resolve();
    }
    if (out === null) {
      tally.add(`refused (${message})`);
      return Promise.resolve();
    }
    // The original does not decode, yet it was forwarded.
    const next = decodeOrCode(out);
    if (typeof next === "string") {
      refusedNext++;
      first ||= `${toHex(bytes)} (decoder: ${message}; next hop: ${next})`;
      tally.add(`FORWARDED, NEXT HOP REFUSES (${message})`);
    } else {
      // Only the popped first address was bad (the relay checks it first
      // with firstOnwardAddress): a broken contract, harmless there.
      assert.equal(firstOnwardAddress(bytes), null);
      malformedFirst++;
      tally.add(`FORWARDED, bad first address (${message})`);
    }
    return Promise.resolve();
  }, routedExamples);
  assert.equal(
    refusedNext + malformedFirst,
    0,
    `forwardRoutedMessage forwarded ${refusedNext} malformed messages that the next hop ` +
      `refuses (it then closes its connection, the relay's, for every member) and ` +
      `${malformedFirst} whose first address is malformed; first: ${first}`,
  );
});
