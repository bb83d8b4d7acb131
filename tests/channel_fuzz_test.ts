/**
 * Fuzzing a secure channel listener over real loopback TCP.
 *
 * A listener node (TcpTransport + listenSecureChannels at "api", an "echo"
 * worker) takes fuzz connections: raw `Deno.connect` sockets that speak
 * the wire by hand, seeded by fast-check. Each one is one of:
 *
 * - **bytes**: a version byte (often wrong) and random bytes;
 * - **frames**: the version byte and a few frames: routed messages to
 *   "api" (or elsewhere) carrying mutated Noise messages 1 under a random
 *   wire kind, random frame bodies, mutants of a whole genuine frame,
 *   headers that claim zero, oversized or more-than-sent lengths;
 * - **handshake**: a hand-driven initiator (the real XXHandshake and
 *   record ciphers) that goes some way into a handshake and then misbehaves:
 *   falls silent after message 2 (closing, or keeping the socket open until
 *   the handshake timeout), sends a mutated message 3, a mutated identity
 *   payload inside a valid message 3, mutated records on an established
 *   channel, or a validly sealed record with a fuzzed plaintext (message,
 *   credential refresh, close, ready or unknown kind).
 *
 * Every outcome is predicted by a model and checked exactly:
 *
 * - the listener side of the connection closes for the predicted reason:
 *   the transport's FrameError code, "malformed message" (routing header),
 *   "truncated" or "peer_closed" once the fuzzer hangs up (the model runs
 *   the same FrameDecoder and decodeRoutedMessage over what was sent);
 * - every handshake the fuzzer started ends exactly once, as predicted:
 *   established, or one typed failure counted in `listener.failures` under
 *   the predicted code (an in-process responder predicts message 1, the
 *   AEAD layout predicts message 3, a local `verifyPeer` with the
 *   listener's policy predicts the payload); handshakes left hanging are
 *   counted as `timeout` and their decryptor is gone (a short
 *   `handshakeTimeoutMs`); never `internal` nor `overloaded`;
 * - records: forgeries of the next record, sent just ahead of it, are
 *   dropped (the listener channel's counters say so) and cost neither it
 *   nor the channel, which still echoes; refused initiators get the
 *   encrypted "refused" close; a bad credential refresh closes the channel.
 *
 * Meanwhile a genuine client keeps a channel busy, ping-pong through the
 * echo worker, and every reply must be right and in order; every
 * {@link CHECK_EVERY} connections (and at the end) all fuzz connections are
 * drained, the accounting above is settled, no fuzz connection or channel
 * is left on the listener, and a new genuine client opens a channel and
 * exchanges a message.
 *
 * Connections: 2,000 by default, 8 at a time, about 10 s here (PROPERTY_RUNS
 * sets the count); seed: PROPERTY_SEED. The 10,000-per-message counts are in process:
 * src/channel/handshake_property_test.ts.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { checkCredential, verifyPeer } from "../src/channel/trust_policy.ts";
import { encodeIdentityPayload } from "../src/channel/identity_payload.ts";
import { dhKeyPairFromPrivate } from "../src/channel/noise/x25519.ts";
import { XXHandshake } from "../src/channel/noise/handshake_state.ts";
import { PROLOGUE } from "../src/channel/secure_channel.ts";
import { type ChannelIdentity } from "../src/channel/channel_identity.ts";
import { connectSecureChannel, listenSecureChannels } from "../src/channel/handshake.ts";
import { ReceiveCipher, SendCipher, SMALL_RECORD } from "../src/channel/transport_cipher.ts";
import { issueCredential } from "../src/credential/credential.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { toHex } from "../src/encoding/hex.ts";
import { HandshakeError } from "../src/errors.ts";
import { createAttestation } from "../src/identity/attestation.ts";
import { Node } from "../src/routing/node.ts";
import {
  decodeRoutedMessage,
  encodeRoutedMessage,
  type RoutedMessage,
} from "../src/routing/routed_message.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import {
  encodeFrameHeader,
  type FramedConnection,
  FrameDecoder,
  FrameError,
  MAX_FRAME_BYTES,
} from "../src/transport/mod.ts";
import {
  describeConfiguration,
  mutantOf,
  type Mutation,
  mutationArbitrary,
  propertyRuns,
  propertySeed,
  sameBytes,
} from "../src/testdata/mutations.ts";
import { concat, identityFromByte } from "../src/testdata/test_helpers.ts";

console.log(describeConfiguration("channel_fuzz_test"));

/** Fuzz connections in the default run. */
const DEFAULT_CONNECTIONS = 2_000;
/** Fuzz connections in flight at once. */
const CONCURRENCY = 8;
/** A genuine client connects after every this many fuzz connections. */
const CHECK_EVERY = 100;
/** The listener's handshake timeout: short, so that hanging handshakes end quickly. */
const HANDSHAKE_TIMEOUT_MS = 300;
/** How long any single expected event may take before the test fails. */
const STEP_TIMEOUT_MS = 30_000;

const WIRE = { message1: 0x01, message2: 0x02, message3: 0x03, record: 0x04 } as const;
const KIND = { message: 0x01, refresh: 0x02, close: 0x03, ready: 0x05 } as const;
const EMPTY = new Uint8Array(0);
const text = new TextEncoder();
const fromText = new TextDecoder();

// ---------------------------------------------------------------------------
// Identities: fixed keys, so a failure replays from the seed (the clock and
// the listener's ephemerals are real).

const now = Math.floor(Date.now() / 1000);
const authority = await identityFromByte(0xa1, now - 86400);
const trust = new TrustStore([authority]);
/** The listener's policy; the models below verify with the same one. */
const listenerPolicy = { trust };

async function channelIdentity(byte: number, role: string): Promise<ChannelIdentity> {
  const identity = await identityFromByte(byte, now - 3600);
  const staticKeyPair = await dhKeyPairFromPrivate(new Uint8Array(32).fill(byte ^ 0x5a));
  const attestation = await createAttestation(identity, staticKeyPair.publicKey, { now: now - 60 });
  const credential = await issueCredential(authority, {
    subject: identity.identifier,
    subjectKey: identity.primaryKey,
    attributes: { role },
    now: now - 60,
    id: new Uint8Array(16).fill(byte),
  });
  return {
    identity,
    staticKeyPair,
    attestation: attestation.encoded,
    credentials: () => [credential.encoded],
  };
}

const gateway = await channelIdentity(0xb2, "gateway");
const edge = await channelIdentity(0xc3, "edge");
const fuzzer = await channelIdentity(0xd4, "edge");
const fuzzerCredential = fuzzer.credentials()[0];
const fuzzerPayload = encodeIdentityPayload({
  history: fuzzer.identity.history.encoded,
  attestation: fuzzer.attestation,
  credentials: [fuzzerCredential],
});

/** Genuine structures that splices and transplants take bytes from. */
const staticCorpus: readonly Uint8Array[] = [
  fuzzerPayload,
  fuzzerCredential,
  fuzzer.attestation,
  fuzzer.identity.history.encoded,
  edge.credentials()[0],
  edge.attestation,
  gateway.attestation,
  authority.history.encoded,
  encodeRoutedMessage(["api"], ["fz"], Uint8Array.of(WIRE.message1, ...new Uint8Array(32))),
].map((bytes) => new Uint8Array(bytes));

function mutate(original: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  return mutantOf(original, [original, ...staticCorpus], mutations).bytes;
}

// ---------------------------------------------------------------------------
// Models: what the listener must do with what a fuzz connection sent.

/** What the listener side of a connection will do with the bytes `stream`. */
interface StreamModel {
  /** Why the listener closes the connection once the fuzzer has hung up. */
  readonly reason: string;
  /** The routed messages it delivers before that, in order. */
  readonly messages: RoutedMessage[];
}

function modelStream(stream: Uint8Array): StreamModel {
  const decoder = new FrameDecoder({ maxFrameBytes: MAX_FRAME_BYTES });
  const messages: RoutedMessage[] = [];
  try {
    decoder.push(stream);
    for (let frame = decoder.next(); frame !== null; frame = decoder.next()) {
      try {
        messages.push(decodeRoutedMessage(frame.slice()));
      } catch {
        return { reason: "malformed message", messages };
      }
    }
    decoder.end();
  } catch (error) {
    assert.ok(error instanceof FrameError, String(error));
    return { reason: error.code, messages };
  }
  return { reason: "peer_closed", messages };
}

/** A handshake at the listener and how it must end: a failure code or "established". */
type Outcome = string;

/**
 * How the listener's handshake ends for a message 1 `body` the fuzzer
 * does not follow up: an in-process responder runs the same steps.
 */
async function modelMessage1(body: Uint8Array): Promise<Outcome> {
  const responder = new XXHandshake({
    initiator: false,
    prologue: PROLOGUE,
    staticKeyPair: gateway.staticKeyPair,
  });
  try {
    if ((await responder.readMessage(body)).length !== 0) return "bad_payload";
    await responder.writeMessage(EMPTY);
    return "timeout";
  } catch (error) {
    assert.ok(error instanceof HandshakeError, String(error));
    return error.code;
  }
}

/** The handshakes `messages` start at the listener (the "api" address, wire kind 1). */
async function handshakesStarted(messages: readonly RoutedMessage[]): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  for (const message of messages) {
    if (message.onward[0] === "api" && message.payload[0] === WIRE.message1) {
      outcomes.push(await modelMessage1(message.payload.subarray(1)));
    }
  }
  return outcomes;
}

/**
 * How the listener's readMessage ends on `mutant` in place of the genuine
 * message 3 `original` (48 bytes of encrypted static key, then the
 * encrypted payload): each encrypted part decrypts only if it is the
 * original, byte for byte (AEAD, and the key of the second depends on the
 * first).
 */
function modelMessage3(mutant: Uint8Array, original: Uint8Array): Outcome | null {
  if (mutant.length > 65535 || mutant.length < 48) return "malformed_message";
  if (!sameBytes(mutant.subarray(0, 48), original.subarray(0, 48))) return "decrypt_failed";
  if (mutant.length - 48 < 16) return "malformed_message";
  if (!sameBytes(mutant, original)) return "decrypt_failed";
  return null; // the genuine message
}

/** verifyPeer with the listener's policy: the failure code, or "established". */
async function modelPayload(payload: Uint8Array): Promise<Outcome> {
  try {
    await verifyPeer(payload, fuzzer.staticKeyPair.publicKey, listenerPolicy);
    return "established";
  } catch (error) {
    assert.ok(error instanceof HandshakeError, String(error));
    return error.code;
  }
}

// ---------------------------------------------------------------------------
// Fuzz cases

const address = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom("api", "echo", "nowhere", "fz", "scd.0000000000000000") },
  { weight: 1, arbitrary: fc.stringMatching(/^[\x21-\x7e]{1,12}$/) },
);
const mutations = fc.array(mutationArbitrary, { minLength: 1, maxLength: 3 });

type FrameSpec =
  /** A routed message carrying a mutated genuine message 1 under wire kind `wire`. */
  | {
    kind: "routed";
    onward: readonly string[];
    back: readonly string[];
    wire: number;
    mutations: readonly Mutation[];
  }
  /** A random frame body. */
  | { kind: "raw"; bytes: Uint8Array }
  /** A whole routed-message frame body (to "api", a genuine message 1), mutated. */
  | { kind: "mutated"; mutations: readonly Mutation[] }
  /** A header claiming `length`, then `bytes` (of any length). */
  | { kind: "length"; length: number; bytes: Uint8Array };

const frameSpec: fc.Arbitrary<FrameSpec> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("routed" as const),
      onward: fc.oneof(
        { weight: 4, arbitrary: fc.constant(["api"]) },
        { weight: 1, arbitrary: fc.array(address, { maxLength: 3 }) },
      ),
      back: fc.array(address, { maxLength: 17 }),
      wire: fc.oneof(
        { weight: 4, arbitrary: fc.constant(WIRE.message1) },
        { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) },
      ),
      mutations: fc.oneof(fc.constant([]), mutations),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("raw" as const),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 300 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("mutated" as const), mutations }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("length" as const),
      length: fc.oneof(
        fc.constantFrom(0, MAX_FRAME_BYTES + 1, 0xffff_ffff, 0x8000_0000),
        fc.integer({ min: MAX_FRAME_BYTES + 1, max: 0xffff_ffff }),
        fc.integer({ min: 1, max: 600 }),
      ),
      bytes: fc.uint8Array({ maxLength: 64 }),
    }),
  },
);

type Stage =
  /** Message 1, read message 2, hang up. */
  | "silence"
  /** Message 1, read message 2, keep the socket open past the handshake timeout. */
  | "idle"
  /** A mutated message 3. */
  | "message3"
  /** A mutated identity payload inside a valid message 3. */
  | "payload"
  /** Established; mutated records, then genuine ones. */
  | "records"
  /** Established; one validly sealed record with a fuzzed plaintext. */
  | "plaintext"
  /** Established, one echo, close. */
  | "genuine";

type FuzzCase =
  | { kind: "bytes"; version: number; bytes: Uint8Array }
  | { kind: "frames"; frames: FrameSpec[]; trailing: Uint8Array }
  | {
    kind: "handshake";
    stage: Stage;
    stacks: Mutation[][];
    plaintextKind: number;
    /** Leave the established channel open (the check closes it). */
    hangUpEarly: boolean;
    /** Records over SMALL_RECORD in the "records" stage (opened by WebCrypto). */
    large: boolean;
    /** Frames sent to the decryptor before message 3 (wire kind, body). */
    early: readonly { wire: number; bytes: Uint8Array }[];
  };

const fuzzCase: fc.Arbitrary<FuzzCase> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("bytes" as const),
      version: fc.oneof(fc.constant(1), fc.integer({ min: 0, max: 255 })),
      bytes: fc.uint8Array({ maxLength: 400 }),
    }),
  },
  {
    weight: 7,
    arbitrary: fc.record({
      kind: fc.constant("frames" as const),
      frames: fc.array(frameSpec, { minLength: 1, maxLength: 4 }),
      trailing: fc.oneof(
        { weight: 4, arbitrary: fc.constant(EMPTY) },
        { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 16 }) },
      ),
    }),
  },
  {
    weight: 10,
    arbitrary: fc.record({
      kind: fc.constant("handshake" as const),
      stage: fc.oneof(
        { weight: 2, arbitrary: fc.constant("silence" as const) },
        { weight: 1, arbitrary: fc.constant("idle" as const) },
        { weight: 4, arbitrary: fc.constant("message3" as const) },
        { weight: 5, arbitrary: fc.constant("payload" as const) },
        { weight: 3, arbitrary: fc.constant("records" as const) },
        { weight: 4, arbitrary: fc.constant("plaintext" as const) },
        { weight: 1, arbitrary: fc.constant("genuine" as const) },
      ),
      stacks: fc.array(mutations, { minLength: 1, maxLength: 6 }),
      plaintextKind: fc.oneof(
        fc.constantFrom(KIND.message, KIND.refresh, KIND.close, KIND.ready),
        fc.integer({ min: 0, max: 255 }),
      ),
      hangUpEarly: fc.boolean(),
      large: fc.boolean(),
      early: fc.oneof(
        { weight: 3, arbitrary: fc.constant([]) },
        {
          weight: 1,
          arbitrary: fc.array(
            fc.record({
              wire: fc.oneof(
                fc.constantFrom(WIRE.message1, WIRE.message2, WIRE.message3, WIRE.record),
                fc.integer({ min: 0, max: 255 }),
              ),
              bytes: fc.uint8Array({ maxLength: 120 }),
            }),
            { minLength: 1, maxLength: 2 },
          ),
        },
      ),
    }),
  },
);

function framed(body: Uint8Array): Uint8Array {
  return concat(encodeFrameHeader(body.length), body);
}

/** A fresh genuine message 1 (a new initiator's ephemeral key). */
async function genuineMessage1(): Promise<Uint8Array> {
  return await new XXHandshake({
    initiator: true,
    prologue: PROLOGUE,
    staticKeyPair: fuzzer.staticKeyPair,
  }).writeMessage(EMPTY);
}

async function frameBytes(spec: FrameSpec): Promise<Uint8Array> {
  switch (spec.kind) {
    case "routed": {
      const body = mutate(await genuineMessage1(), spec.mutations);
      return framed(
        encodeRoutedMessage(spec.onward, spec.back.slice(0, 16), Uint8Array.of(spec.wire, ...body)),
      );
    }
    case "raw":
      return framed(spec.bytes);
    case "mutated": {
      const genuine = encodeRoutedMessage(
        ["api"],
        ["fz"],
        Uint8Array.of(WIRE.message1, ...await genuineMessage1()),
      );
      const body = mutate(genuine, spec.mutations);
      return body.length === 0 ? framed(Uint8Array.of(0)) : framed(body);
    }
    case "length":
      return concat(Uint8Array.of(...u32(spec.length)), spec.bytes);
  }
}

function u32(n: number): number[] {
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}

// ---------------------------------------------------------------------------
// A raw client: a socket, what was written to it, and the frames read back.

class RawClient {
  readonly conn: Deno.TcpConn;
  readonly port: number;
  readonly #written: Uint8Array[] = [];
  readonly #decoder = new FrameDecoder();
  readonly #frames: Uint8Array[] = [];
  #wake: (() => void) | null = null;
  #ended = false;
  readonly #reading: Promise<void>;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.port = (conn.localAddr as Deno.NetAddr).port;
    this.#reading = this.#read();
  }

  static async connect(port: number): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Every byte handed to the socket so far. */
  get written(): Uint8Array {
    return concat(...this.#written);
  }

  async #read(): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await this.conn.read(buffer);
        if (n === null) break;
        this.#decoder.push(buffer.subarray(0, n));
        for (let frame = this.#decoder.next(); frame !== null; frame = this.#decoder.next()) {
          this.#frames.push(frame.slice());
        }
        this.#wake?.();
      }
    } catch {
      // A reset after the listener closed on us, or our own close.
    }
    this.#ended = true;
    this.#wake?.();
  }

  /** Writes `bytes`; a listener that already closed on us is not an error here. */
  async write(bytes: Uint8Array): Promise<void> {
    this.#written.push(bytes);
    try {
      for (let at = 0; at < bytes.length;) at += await this.conn.write(bytes.subarray(at));
    } catch {
      // Broken pipe or reset: the stream model says when that is expected.
    }
  }

  /** Sends one routed message in a frame. */
  send(onward: string[], back: string[], payload: Uint8Array): Promise<void> {
    return this.write(framed(encodeRoutedMessage(onward, back, payload)));
  }

  /** The next routed message from the listener, or null when the connection ended. */
  async next(timeoutMs = STEP_TIMEOUT_MS): Promise<RoutedMessage | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const frame = this.#frames.shift();
      if (frame !== undefined) return decodeRoutedMessage(frame);
      if (this.#ended) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame from the listener within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = null;
    }
  }

  /** Hangs up (FIN), reads until the listener closes too, and frees the socket. */
  async finish(): Promise<void> {
    try {
      await this.conn.closeWrite();
    } catch {
      // Already reset.
    }
    await within(this.#reading, STEP_TIMEOUT_MS, "the listener did not close the connection");
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }
}

async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} (after ${ms} ms)`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function until(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what} (after ${ms} ms)`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

// ---------------------------------------------------------------------------
// The listener

const server = new Node({ name: "server" });
/** Listener-side connections by the fuzzer's local port. */
const serverConnections = new Map<number, FramedConnection>();
const serverTransport = new TcpTransport(server, {
  onConnection: ({ connection }) => serverConnections.set(connection.remoteAddr.port, connection),
});
server.register("echo", async (m) => {
  await server.route({ onward: m.return, return: ["echo"], payload: m.payload });
});

/** What one fuzz connection expects of the listener, settled at the next check. */
interface Expectation {
  outcomes: Outcome[];
  /** Decryptor addresses it learned: all must be gone once settled. */
  decryptors: string[];
}

/** Failures collected across the run and asserted at its end. */
const findings = { genuineLost: [] as string[] };

/** The handshake part of a fuzz connection driven by hand. */
async function handshakeCase(
  client: RawClient,
  fuzz: Extract<FuzzCase, { kind: "handshake" }>,
  expectation: Expectation,
  listener: ReturnType<typeof listenSecureChannels>,
): Promise<void> {
  const handshake = new XXHandshake({
    initiator: true,
    prologue: PROLOGUE,
    staticKeyPair: fuzzer.staticKeyPair,
  });
  const message1 = await handshake.writeMessage(EMPTY);
  await client.send(["api"], ["fz"], Uint8Array.of(WIRE.message1, ...message1));
  const reply = await client.next();
  assert.ok(reply !== null && reply.payload[0] === WIRE.message2, "no message 2");
  assert.deepEqual(reply.onward, ["fz"]);
  assert.equal(reply.return.length, 1);
  const decryptor = reply.return[0];
  assert.ok(decryptor.startsWith("scd."));
  expectation.decryptors.push(decryptor);
  const payload2 = await handshake.readMessage(reply.payload.subarray(1));
  const peer = await verifyPeer(payload2, handshake.remoteStaticKey!, { trust });
  assert.equal(peer.identifier, gateway.identity.identifier);

  const stage = fuzz.stage;
  if (stage === "silence" || stage === "idle") {
    expectation.outcomes.push("timeout");
    if (stage === "idle") {
      // The socket stays open; the handshake timeout alone must clean up.
      const started = Date.now();
      await until(() => !server.has(decryptor), STEP_TIMEOUT_MS, "a hanging handshake lingered");
      assert.ok(Date.now() - started >= HANDSHAKE_TIMEOUT_MS / 2);
    }
    return;
  }

  let payload3 = fuzzerPayload;
  if (stage === "payload") payload3 = mutate(fuzzerPayload, fuzz.stacks[0]);
  let message3: Uint8Array;
  try {
    message3 = await handshake.writeMessage(payload3);
  } catch (error) {
    // Only a mutant over 65,535 bytes; then nothing is sent and the listener times out.
    assert.ok(error instanceof HandshakeError && error.code === "malformed_message");
    expectation.outcomes.push("timeout");
    return;
  }
  const keys = handshake.split();
  const send = SendCipher.create(keys.initiatorToResponder);
  const receive = ReceiveCipher.create(keys.responderToInitiator);
  const sendRecord = async (plaintext: Uint8Array) =>
    client.send([decryptor], ["fz"], Uint8Array.of(WIRE.record, ...await send.seal(plaintext)));
  /** The next record from the listener, opened. */
  const nextRecord = async (): Promise<Uint8Array | null> => {
    const message = await client.next();
    if (message === null) return null;
    assert.equal(message.payload[0], WIRE.record);
    const opened = await receive.open(message.payload.subarray(1));
    assert.ok(opened.ok, "a record from the listener did not open");
    return opened.plaintext;
  };

  // Frames of other kinds are ignored before message 3; the first frame of
  // kind 3, junk or not, is the one the listener reads.
  for (const { wire, bytes } of fuzz.early) {
    await client.send([decryptor], ["fz"], Uint8Array.of(wire, ...bytes));
  }
  const junk = fuzz.early.find(({ wire }) => wire === WIRE.message3);
  let sent = message3;
  if (stage === "message3") sent = mutate(message3, fuzz.stacks[0]);
  await client.send([decryptor], ["fz"], Uint8Array.of(WIRE.message3, ...sent));
  const read = junk?.bytes ?? sent;
  const readFails = read === message3 ? null : modelMessage3(read, message3);
  const outcome = readFails ?? (await modelPayload(payload3));
  expectation.outcomes.push(outcome);
  if (readFails !== null) return; // nothing comes back
  if (outcome !== "established") {
    // Refused after message 3: told so inside the encryption.
    const refusal = await nextRecord();
    assert.ok(refusal !== null, "no refusal");
    assert.equal(refusal[0], KIND.close);
    assert.equal(fromText.decode(refusal.subarray(1)), "refused");
    return;
  }
  assert.deepEqual(await nextRecord(), Uint8Array.of(KIND.ready));
  const channel = listener.channels().find((c) => c.decryptorAddress === decryptor);
  assert.ok(channel !== undefined, "the listener does not list the established channel");
  if (fuzz.hangUpEarly && stage === "genuine") return; // left open: closed at the check

  let echoes = 0;
  /** Echo replies that came back before the one awaited. */
  const earlier: Uint8Array[] = [];
  const echoRequest = (body: Uint8Array) =>
    Uint8Array.of(KIND.message, ...encodeRoutedMessage(["echo"], ["fzreply"], body));
  const echo = async (expectReply: boolean) => {
    const body = text.encode(`echo ${echoes++} from ${client.port}`);
    await sendRecord(echoRequest(body));
    if (!expectReply) return;
    for (;;) {
      const plaintext = await nextRecord();
      assert.ok(plaintext !== null, "the channel stopped echoing");
      if (plaintext[0] !== KIND.message) continue;
      const inner = decodeRoutedMessage(plaintext.subarray(1));
      if (inner.onward[0] !== "fzreply") continue; // something the fuzzed plaintext routed back
      if (sameBytes(inner.payload, body)) return;
      earlier.push(inner.payload);
    }
  };

  await echo(true);
  if (stage === "records") {
    // The next genuine record, sealed but held back: forgeries of it go
    // first, then it. Mutants open only if they are it (once; then the
    // genuine one is a replay). Large half the time: records over
    // SMALL_RECORD are opened by WebCrypto, several at once.
    const big = fuzz.large ? SMALL_RECORD : 0;
    const body = text.encode(`held back from ${client.port} ${"h".repeat(big)}`);
    const held = await send.seal(echoRequest(body));
    for (const stack of fuzz.stacks) {
      const record = mutate(held, stack);
      await client.send([decryptor], ["fz"], Uint8Array.of(WIRE.record, ...record));
    }
    await client.send([decryptor], ["fz"], Uint8Array.of(WIRE.record, ...held));
    // The forged records are dropped and the channel still works.
    await echo(true);
    const replies = earlier.filter((payload) => sameBytes(payload, body)).length;
    assert.ok(replies <= 1, "the held-back record was delivered twice");
    if (replies === 0) {
      // Forgeries sent ahead of a genuine record cost it: counted, and
      // reported at the end so the rest of the run still happens.
      findings.genuineLost.push(`connection ${client.port}: ${describe(fuzz).slice(0, 300)}`);
    } else {
      assert.equal(channel.stats.received, 3);
      assert.equal(channel.stats.dropped, fuzz.stacks.length);
    }
  } else if (stage === "plaintext") {
    const kind = fuzz.plaintextKind;
    let body: Uint8Array;
    let closes: string | null = null;
    if (kind === KIND.refresh) {
      body = mutate(fuzzerCredential, fuzz.stacks[0]);
      try {
        await checkCredential(body, fuzzer.identity.identifier, listenerPolicy);
      } catch (error) {
        assert.ok(error instanceof HandshakeError);
        closes = error.message;
      }
    } else if (kind === KIND.message) {
      body = mutate(encodeRoutedMessage(["nowhere"], ["fz"], text.encode("x")), fuzz.stacks[0]);
      try {
        // A message the channel delivers may start a handshake itself.
        expectation.outcomes.push(...await handshakesStarted([decodeRoutedMessage(body)]));
      } catch {
        // Malformed inside: dropped.
      }
    } else {
      body = mutate(text.encode("fuzz"), fuzz.stacks[0]);
      if (kind === KIND.close) closes = fromText.decode(body) || "closed by peer";
    }
    await sendRecord(Uint8Array.of(kind, ...body));
    await echo(closes === null);
    if (closes !== null) {
      const info = await within(channel.closed, STEP_TIMEOUT_MS, "the channel did not close");
      assert.equal(info.reason, closes);
      assert.equal(info.byPeer, kind === KIND.close);
      return;
    }
  }
  if (!fuzz.hangUpEarly) {
    await sendRecord(Uint8Array.of(KIND.close, ...text.encode("bye")));
    const info = await within(channel.closed, STEP_TIMEOUT_MS, "the channel did not close");
    assert.deepEqual(info, { reason: "bye", byPeer: true });
  }
}

Deno.test("fuzz: a secure channel listener over TCP survives hostile connections", async () => {
  const started = performance.now();
  const connections = propertyRuns(DEFAULT_CONNECTIONS);
  const cases = fc.sample(fuzzCase, { seed: propertySeed(), numRuns: connections });

  let established = 0;
  const listener = listenSecureChannels({
    node: server,
    address: "api",
    local: gateway,
    policy: listenerPolicy,
    handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
    onChannel: () => established++,
  });
  const tcp = serverTransport.listen({ hostname: "127.0.0.1", port: 0 });
  const port = tcp.addr.port;

  // The genuine client, busy for the whole run.
  const client = new Node({ name: "client" });
  const clientTransport = new TcpTransport(client);
  const genuineOpen = async (node: Node, transport: TcpTransport) => {
    const conn = await transport.connect({ hostname: "127.0.0.1", port });
    // Only fuzz connections are looked up by port.
    await until(
      () => serverConnections.has(conn.connection.localAddr.port),
      STEP_TIMEOUT_MS,
      "not accepted",
    );
    serverConnections.delete(conn.connection.localAddr.port);
    const channel = await connectSecureChannel({
      node,
      route: [conn.address, "api"],
      local: edge,
      policy: { trust, pinned: [gateway.identity.identifier] },
    });
    return { conn, channel };
  };
  const busy = await genuineOpen(client, clientTransport);
  await until(() => established === 1, STEP_TIMEOUT_MS, "busy channel");
  const busyAtListener = listener.channels()[0];
  let pumped = 0;
  let stop = false;
  let expected = "";
  let got: PromiseWithResolvers<string> | null = null;
  client.register("sink", (m) => void got?.resolve(fromText.decode(m.payload)));
  const pumping = (async () => {
    while (!stop) {
      expected = `pump ${pumped} ${"x".repeat(pumped % 97)}`;
      got = Promise.withResolvers<string>();
      await busy.channel.send(["echo"], text.encode(expected), ["sink"]);
      assert.equal(
        await within(got.promise, STEP_TIMEOUT_MS, "the busy channel stalled"),
        expected,
      );
      pumped++;
    }
  })();
  // Its failure is reported at the end, with the rest.
  const pump = pumping.then(() => null, (error: unknown) => error);

  const checker = new Node({ name: "checker" });
  const checkerTransport = new TcpTransport(checker);
  let checks = 0;
  let failuresBefore = new Map<string, number>();
  let establishedBefore = established;
  let pending: { index: number; expectation: Expectation }[] = [];
  const reasons = new Map<string, number>();
  const stages = new Map<string, number>();
  const count = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);

  /** Settles the accounting of every connection since the last check, then connects genuinely. */
  const check = async () => {
    const outcomes = pending.flatMap((p) => p.expectation.outcomes);
    const want = new Map<string, number>();
    for (const outcome of outcomes) count(want, outcome);
    const settled = () => {
      let ended = established - establishedBefore;
      for (const [code, n] of listener.failures) ended += n - (failuresBefore.get(code) ?? 0);
      return ended;
    };
    await until(
      () => settled() >= outcomes.length,
      HANDSHAKE_TIMEOUT_MS + STEP_TIMEOUT_MS,
      `handshakes never ended: ${settled()} of ${outcomes.length}`,
    );
    const actual = new Map<string, number>();
    if (established > establishedBefore) {
      actual.set("established", established - establishedBefore);
    }
    for (const [code, n] of listener.failures) {
      const before = failuresBefore.get(code) ?? 0;
      if (n > before) actual.set(code, n - before);
    }
    const sorted = (m: Map<string, number>) => Object.fromEntries([...m].sort());
    assert.deepEqual(
      sorted(actual),
      sorted(want),
      `connections ${pending[0]?.index}..${pending.at(-1)?.index}: handshake outcomes`,
    );
    for (const { index, expectation } of pending) {
      for (const decryptor of expectation.decryptors) {
        // An established channel left open by the fuzzer is closed here, by the listener.
        const open = listener.channels().find((c) => c.decryptorAddress === decryptor);
        if (open !== undefined) {
          await open.close("fuzz check");
          await open.closed;
        }
        assert.ok(!server.has(decryptor), `connection ${index}: decryptor ${decryptor} lingers`);
      }
    }
    assert.deepEqual(listener.channels(), [busyAtListener], "fuzz channels left open");
    assert.equal(serverTransport.connections().size, 1, "fuzz connections left open");
    assert.ok(!listener.failures.has("internal") && !listener.failures.has("overloaded"));

    // A genuine client can still open a channel and be answered.
    const establishedNow = established;
    const fresh = await genuineOpen(checker, checkerTransport);
    await until(() => established === establishedNow + 1, STEP_TIMEOUT_MS, "check channel");
    const reply = Promise.withResolvers<string>();
    checker.register("sink", (m) => reply.resolve(fromText.decode(m.payload)));
    await fresh.channel.send(["echo"], text.encode(`check ${checks}`), ["sink"]);
    assert.equal(await within(reply.promise, STEP_TIMEOUT_MS, "check echo"), `check ${checks}`);
    checker.unregister("sink");
    const atListener = listener.channels().find((c) =>
      c.peer.identifier === edge.identity.identifier &&
      c !== busyAtListener
    );
    await fresh.channel.close("check done");
    if (atListener !== undefined) await within(atListener.closed, STEP_TIMEOUT_MS, "check close");
    fresh.conn.connection.close();
    await fresh.conn.connection.closed;
    await until(() => serverTransport.connections().size === 1, STEP_TIMEOUT_MS, "check conn");
    checks++;
    pending = [];
    failuresBefore = new Map(listener.failures);
    establishedBefore = established;
  };

  /** Runs fuzz case `index` on a fresh connection. */
  const run = async (index: number, expectation: Expectation) => {
    const fuzz = cases[index];
    const raw = await RawClient.connect(port);
    try {
      await until(
        () => serverConnections.get(raw.port)?.isClosed === false,
        STEP_TIMEOUT_MS,
        "not accepted",
      );
      const serverSide = serverConnections.get(raw.port)!;
      serverConnections.delete(raw.port);
      await raw.write(Uint8Array.of(fuzz.kind === "bytes" ? fuzz.version : 1));
      if (fuzz.kind === "bytes") {
        await raw.write(fuzz.bytes);
      } else if (fuzz.kind === "frames") {
        for (const spec of fuzz.frames) await raw.write(await frameBytes(spec));
        await raw.write(fuzz.trailing);
      } else {
        await handshakeCase(raw, fuzz, expectation, listener);
      }
      await raw.finish();
      const info = await within(serverSide.closed, STEP_TIMEOUT_MS, "listener side still open");
      const model = modelStream(raw.written);
      assert.equal(info.reason, model.reason, "close reason");
      count(reasons, info.reason);
      count(stages, fuzz.kind === "handshake" ? `handshake/${fuzz.stage}` : fuzz.kind);
      if (fuzz.kind !== "handshake") {
        expectation.outcomes.push(...await handshakesStarted(model.messages));
      }
    } catch (error) {
      throw new Error(
        `fuzz connection ${index} failed (PROPERTY_SEED=${propertySeed()}): ` +
          `${error instanceof Error ? error.message : error}\n  case: ${describe(fuzz)}`,
        { cause: error },
      );
    } finally {
      try {
        raw.conn.close();
      } catch {
        // Closed by finish().
      }
    }
  };

  try {
    let next = 0;
    while (next < cases.length) {
      const end = Math.min(cases.length, next + CHECK_EVERY);
      const worker = async () => {
        while (next < end) {
          const index = next++;
          const expectation: Expectation = { outcomes: [], decryptors: [] };
          pending.push({ index, expectation });
          await run(index, expectation);
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      await check();
    }
  } finally {
    // Stops the pump whatever happened; its own failure is thrown below.
    stop = true;
    await pump;
  }
  const pumpError = await pump;
  if (pumpError !== null) throw pumpError;
  // The busy channel was never disturbed.
  assert.ok(pumped > 0);
  assert.equal(busy.channel.stats.dropped, 0);
  assert.equal(busyAtListener.stats.dropped, 0);
  assert.ok(!busy.channel.isClosed && !busyAtListener.isClosed);
  await busy.channel.close("done");
  await within(busyAtListener.closed, STEP_TIMEOUT_MS, "busy close");
  listener.close({ closeChannels: true });
  await Promise.all([clientTransport.close(), checkerTransport.close(), serverTransport.close()]);

  const seconds = (performance.now() - started) / 1000;
  const lost = findings.genuineLost.length;
  const failures = Object.fromEntries([...listener.failures].sort());
  console.log(
    `${cases.length} fuzz connections (${CONCURRENCY} at a time), ${checks} genuine checks, ` +
      `${pumped} busy-channel round trips, ${seconds.toFixed(1)} s\n` +
      `  cases: ${JSON.stringify(Object.fromEntries([...stages].sort()))}\n` +
      `  listener closed them: ${JSON.stringify(Object.fromEntries([...reasons].sort()))}\n` +
      `  handshakes: ${established} established, failures ${JSON.stringify(failures)}\n` +
      `  held-back genuine records lost to forgeries sent ahead of them: ${lost}`,
  );
  assert.equal(
    lost,
    0,
    `${lost} genuine records were dropped because forgeries with their counter were sent ` +
      `just ahead of them (ReceiveCipher drops a record whose counter is in flight as ` +
      `"replayed"); first: ${findings.genuineLost[0]}`,
  );
});

/** A short description of a case for failure messages. */
function describe(fuzz: FuzzCase): string {
  return JSON.stringify(
    fuzz,
    (_, value) => (value instanceof Uint8Array ? toHex(value) : value),
  ).slice(0, 2000);
}
