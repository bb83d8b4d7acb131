/**
 * Secure channel costs. `deno bench` prints ratios against each group's
 * baseline, measured in the same run.
 *
 * - `handshake`: one XX handshake with identity verification, both sides
 *   in this process (history, attestation and credential of each peer),
 *   against the six X25519 operations the two sides cannot avoid. The
 *   responder's rate on its own core comes from the two-process run
 *   (`scripts/bench_channel.ts`, `deno task bench:channel`).
 * - `responder`: the responder's own work only (message 1 read, message 2
 *   written, message 3 read, Split(), the initiator verified), for a peer
 *   seen before (its signatures verified once) and for a new peer each
 *   time, against the four X25519 operations of a responder.
 *
 * The handshake runs on OpenSSL's libcrypto when ffi allows it
 * (src/channel/noise/openssl.ts), else on the portable primitives, as
 * under `deno task bench`'s permission set.
 * - `seal 16 KiB`, `seal 64 KiB`, `100-byte messages`: a record sealed
 *   (and opened) by SendCipher / ReceiveCipher against a bare WebCrypto
 *   AES-256-GCM encryption of the same plaintext. MB/s = size / time.
 *
 * @module
 */
import { issueCredential } from "../credential/credential.ts";
import { TrustStore } from "../credential/trust_store.ts";
import { Identity } from "../identity/identity.ts";
import { SoftwareSigner } from "../identity/software_signer.ts";
import { encodeIdentityPayload } from "./identity_payload.ts";
import { XXHandshake } from "./noise/handshake_state.ts";
import { dh, generateDhKeyPair } from "./noise/x25519.ts";
import { PROLOGUE } from "./secure_channel.ts";
import { type ChannelIdentity, createChannelIdentity } from "./channel_identity.ts";
import { ReceiveCipher, SendCipher } from "./transport_cipher.ts";
import { verifyPeer } from "./trust_policy.ts";

const authority = await Identity.create(await SoftwareSigner.generate());
const trust = new TrustStore([authority]);
async function party(role: string) {
  const identity = await Identity.create(await SoftwareSigner.generate());
  const credential = await issueCredential(authority, {
    subject: identity.identifier,
    subjectKey: identity.primaryKey,
    attributes: { role },
  });
  const local = await createChannelIdentity(identity, { credentials: () => [credential.encoded] });
  const payload = encodeIdentityPayload({
    history: identity.history.encoded,
    attestation: local.attestation,
    credentials: [credential.encoded],
  });
  return { local, payload };
}
const edge = await party("edge");
const gateway = await party("gateway");
const policy = { trust, requiredAttributes: { role: "edge" } };
const empty = new Uint8Array(0);

Deno.bench("6 × X25519 (both sides' DH)", { group: "handshake", baseline: true }, async () => {
  const e = await generateDhKeyPair();
  const peer = await generateDhKeyPair();
  for (let i = 0; i < 3; i++) await dh(e, peer.publicKey);
  for (let i = 0; i < 3; i++) await dh(peer, e.publicKey);
});

Deno.bench("XX handshake + identity verification, both sides", { group: "handshake" }, async () => {
  const initiator = new XXHandshake({
    initiator: true,
    prologue: PROLOGUE,
    staticKeyPair: edge.local.staticKeyPair,
  });
  const responder = new XXHandshake({
    initiator: false,
    prologue: PROLOGUE,
    staticKeyPair: gateway.local.staticKeyPair,
  });
  await responder.readMessage(await initiator.writeMessage(empty));
  const m2 = await responder.writeMessage(gateway.payload);
  await verifyPeer(await initiator.readMessage(m2), initiator.remoteStaticKey!, { trust });
  const p3 = await responder.readMessage(await initiator.writeMessage(edge.payload));
  await verifyPeer(p3, responder.remoteStaticKey!, policy);
  initiator.split();
  responder.split();
});

const initiatorKeys = [generateDhKeyPair(), generateDhKeyPair()];
Deno.bench("4 × X25519 (a responder's DH)", { group: "responder", baseline: true }, () => {
  const [re, rs] = initiatorKeys;
  const e = generateDhKeyPair();
  dh(e, re.publicKey); // ee
  dh(gateway.local.staticKeyPair, re.publicKey); // es
  dh(e, rs.publicKey); // se
  e.privateKey.dispose();
});

/**
 * One handshake with `initiator` up to message 3; only the responder's part
 * of the half named is timed (a bench times one span): `"first"` reads
 * message 1 and writes message 2, `"last"` reads message 3, splits and
 * verifies the initiator. The responder's work is the sum of the two.
 */
async function respond(
  b: Deno.BenchContext,
  initiator: { local: ChannelIdentity; payload: Uint8Array },
  half: "first" | "last",
) {
  const i = new XXHandshake({
    initiator: true,
    prologue: PROLOGUE,
    staticKeyPair: initiator.local.staticKeyPair,
  });
  const m1 = await i.writeMessage(empty);
  if (half === "first") b.start();
  const r = new XXHandshake({
    initiator: false,
    prologue: PROLOGUE,
    staticKeyPair: gateway.local.staticKeyPair,
  });
  await r.readMessage(m1);
  const m2 = await r.writeMessage(gateway.payload);
  if (half === "first") b.end();
  await i.readMessage(m2);
  const m3 = await i.writeMessage(initiator.payload);
  if (half === "last") b.start();
  const p3 = await r.readMessage(m3);
  r.split();
  await verifyPeer(p3, r.remoteStaticKey!, policy);
  if (half === "last") b.end();
}

Deno.bench(
  "responder: messages 1 and 2",
  { group: "responder" },
  async (b) => await respond(b, edge, "first"),
);
Deno.bench(
  "responder: message 3 and verifyPeer, a peer seen before",
  { group: "responder" },
  async (b) => await respond(b, edge, "last"),
);

/** New members, one per iteration of the next bench. */
const newcomers = await Promise.all(Array.from({ length: 300 }, () => party("edge")));
Deno.bench(
  "responder: message 3 and verifyPeer, a new peer (every signature)",
  { group: "responder", n: 250, warmup: 20 },
  async (b) => await respond(b, newcomers.pop()!, "last"),
);

const key = crypto.getRandomValues(new Uint8Array(32));
const rawKey = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["encrypt"]);
for (
  const [group, size] of [["seal 16 KiB", 16 * 1024], ["seal 64 KiB", 64 * 1024], [
    "100-byte messages",
    100,
  ]] as const
) {
  const plaintext = crypto.getRandomValues(new Uint8Array(size));
  const sender = SendCipher.create(key);
  const receiver = ReceiveCipher.create(key);
  const iv = new Uint8Array(12);
  Deno.bench(`WebCrypto AES-256-GCM encrypt, ${size} B`, { group, baseline: true }, async () => {
    await crypto.subtle.encrypt({ name: "AES-GCM", iv }, rawKey, plaintext);
  });
  Deno.bench(`SendCipher.seal, ${size} B`, { group }, async () => {
    await sender.seal(plaintext);
  });
  Deno.bench(`SendCipher.seal × 4 in flight, ${size} B each`, { group, n: 250 }, async () => {
    await Promise.all([
      sender.seal(plaintext),
      sender.seal(plaintext),
      sender.seal(plaintext),
      sender.seal(plaintext),
    ]);
  });
  const pairSender = SendCipher.create(key);
  Deno.bench(`seal + open, ${size} B`, { group }, async () => {
    const result = await receiver.open(await pairSender.seal(plaintext));
    if (!result.ok) throw new Error(result.reason);
  });
}
