/**
 * Secure channels between in-process nodes: handshake, messages both ways
 * with the peer's identity attached, refresh, close, policy refusals,
 * timeouts. Over real TCP: tests/channel_tcp_test.ts.
 */
import assert from "node:assert/strict";
import { HandshakeError } from "../errors.ts";
import { Node } from "../routing/node.ts";
import type { RoutedMessage } from "../routing/routed_message.ts";
import { authority, eventually, link, member } from "../testdata/channel_fixtures.ts";
import { connectSecureChannel, listenSecureChannels } from "./handshake.ts";

const text = new TextEncoder();

Deno.test("channel: handshake, messages both ways, peer identity reaches the worker", async () => {
  const ca = await authority();
  const edge = await member(ca.identity, { role: "edge", customer_id: "cust_001" });
  const gateway = await member(ca.identity, { role: "gateway", customer_id: "cust_001" });
  const a = new Node({ name: "a" });
  const b = new Node({ name: "b" });
  const { toB } = link(a, b);
  const received: RoutedMessage[] = [];
  b.register("echo", async (m) => {
    received.push(m);
    await b.route({ onward: m.return, return: ["echo"], payload: m.payload });
  });
  const replies: RoutedMessage[] = [];
  a.register("app", (m) => void replies.push(m));
  const listener = listenSecureChannels({
    node: b,
    address: "api",
    local: gateway,
    policy: { trust: ca.trust, requiredAttributes: { role: "edge" } },
  });
  const channel = await connectSecureChannel({
    node: a,
    route: [toB, "api"],
    local: edge,
    policy: { trust: ca.trust, requiredAttributes: { role: "gateway", customer_id: "cust_001" } },
  });
  assert.equal(channel.peer.identifier, gateway.identity.identifier);
  for (let i = 0; i < 100; i++) {
    await a.route({
      onward: [channel.address, "echo"],
      return: ["app"],
      payload: text.encode(`m${i}`),
    });
  }
  await eventually(() => replies.length === 100);
  assert.equal(received.length, 100);
  assert.equal(received[0].local?.secureChannel?.peer, edge.identity.identifier);
  assert.equal(received[0].local?.secureChannel?.credential()?.attributes.role, "edge");
  assert.equal(replies.length, 100);
  assert.equal(new TextDecoder().decode(replies[99].payload), "m99");
  assert.equal(replies[0].local?.secureChannel?.peer, gateway.identity.identifier);
  assert.equal(listener.channels().length, 1);
  channel.close("done");
  const info = await listener.channels()[0]?.closed;
  assert.equal(info?.reason, "done");
  assert.equal(info?.byPeer, true);
});

async function refused(
  initiatorAttrs: Record<string, unknown>,
  responderPolicy: Record<string, unknown>,
  initiatorPolicy: Record<string, unknown>,
  expected: string,
  options: { untrustedResponder?: boolean; pinned?: string[] } = {},
) {
  const ca = await authority();
  const other = await authority();
  const edge = await member(ca.identity, initiatorAttrs);
  const gateway = await member(options.untrustedResponder ? other.identity : ca.identity, {
    role: "gateway",
  });
  const a = new Node({ name: "a" });
  const b = new Node({ name: "b" });
  const { toB } = link(a, b);
  let delivered = 0;
  b.register("echo", () => void delivered++);
  listenSecureChannels({
    node: b,
    address: "api",
    local: gateway,
    policy: { trust: ca.trust, requiredAttributes: responderPolicy as Record<string, string> },
  });
  await assert.rejects(
    connectSecureChannel({
      node: a,
      route: [toB, "api"],
      local: edge,
      policy: {
        trust: ca.trust,
        requiredAttributes: initiatorPolicy as Record<string, string>,
        pinned: options.pinned,
      },
      handshakeTimeoutMs: 2000,
    }),
    (e: unknown) => e instanceof HandshakeError && e.code === expected,
  );
  assert.equal(delivered, 0);
}

Deno.test("channel: responder with an untrusted credential is refused by the initiator", () =>
  refused({ role: "edge" }, {}, {}, "credential_rejected", { untrustedResponder: true }));

Deno.test("channel: responder not among pinned identifiers is refused", () =>
  refused({ role: "edge" }, {}, {}, "not_pinned", { pinned: ["I" + "0".repeat(64)] }));

Deno.test("channel: responder lacking a required attribute is refused", () =>
  refused({ role: "edge" }, {}, { customer_id: "cust_002" }, "missing_attribute"));

Deno.test("channel: initiator refused by the responder learns it and nothing is delivered", () =>
  refused({ role: "intruder" }, { role: "edge" }, {}, "refused"));

Deno.test("channel: handshake timeout when the responder never answers", async () => {
  const ca = await authority();
  const edge = await member(ca.identity, { role: "edge" });
  const a = new Node({ name: "a" });
  a.register("black_hole", () => {});
  const started = Date.now();
  await assert.rejects(
    connectSecureChannel({
      node: a,
      route: ["black_hole"],
      local: edge,
      policy: { trust: ca.trust },
      handshakeTimeoutMs: 300,
    }),
    (e: unknown) => e instanceof HandshakeError && e.code === "timeout",
  );
  assert.ok(Date.now() - started < 2000);
});

Deno.test("channel: idle timeout closes both ends' view of a silent channel", async () => {
  const ca = await authority();
  const edge = await member(ca.identity, { role: "edge" });
  const gateway = await member(ca.identity, { role: "gateway" });
  const a = new Node({ name: "a" });
  const b = new Node({ name: "b" });
  const { toB, toA } = link(a, b);
  listenSecureChannels({ node: b, address: "api", local: gateway, policy: { trust: ca.trust } });
  const channel = await connectSecureChannel({
    node: a,
    route: [toB, "api"],
    local: edge,
    policy: { trust: ca.trust },
    idleTimeoutMs: 200,
  });
  // The channel's timers do not hold the process open: this one does.
  const hold = setTimeout(() => {}, 10_000);
  // While the path works, keepalive answers keep the short-timeout end open
  // although the peer's own timeout (300 s) is much longer.
  await new Promise((resolve) => setTimeout(resolve, 700));
  assert.equal(channel.isClosed, false, "closed although the peer answered its keepalives");
  // The peer goes silent: nothing from b reaches a any more.
  b.unregister(toA);
  const info = await channel.closed;
  clearTimeout(hold);
  assert.equal(info.reason, "idle timeout");
});

Deno.test("channel: credential refresh replaces the credential used for decisions", async () => {
  const ca = await authority();
  const edge = await member(ca.identity, { role: "edge", tier: "basic" });
  const gateway = await member(ca.identity, { role: "gateway" });
  const a = new Node({ name: "a" });
  const b = new Node({ name: "b" });
  const { toB } = link(a, b);
  const tiers: unknown[] = [];
  b.register("echo", (m) => void tiers.push(m.local?.secureChannel?.credential()?.attributes.tier));
  listenSecureChannels({ node: b, address: "api", local: gateway, policy: { trust: ca.trust } });
  const channel = await connectSecureChannel({
    node: a,
    route: [toB, "api"],
    local: edge,
    policy: { trust: ca.trust },
  });
  await channel.send(["echo"], text.encode("before"));
  const { issueCredential } = await import("../credential/credential.ts");
  const fresh = await issueCredential(ca.identity, {
    subject: edge.identity.identifier,
    subjectKey: edge.identity.primaryKey,
    attributes: { role: "edge", tier: "enterprise" },
  });
  await channel.refreshCredential(fresh.encoded);
  await channel.send(["echo"], text.encode("after"));
  await eventually(() => tiers.length === 2);
  assert.deepEqual(tiers, ["basic", "enterprise"]);
  channel.close();
});

Deno.test("channel: ends when the peer's credential expires unrefreshed", async () => {
  const ca = await authority();
  const now = Math.floor(Date.now() / 1000);
  // Valid for 1 s beyond the 60 s skew: created 61 s ago with a 2 s lifetime.
  const edge = await member(ca.identity, { role: "edge" }, { ttlSeconds: 2, now: now - 61 });
  const gateway = await member(ca.identity, { role: "gateway" });
  const a = new Node({ name: "a" });
  const b = new Node({ name: "b" });
  const { toB } = link(a, b);
  const listener = listenSecureChannels({
    node: b,
    address: "api",
    local: gateway,
    policy: { trust: ca.trust },
  });
  const channel = await connectSecureChannel({
    node: a,
    route: [toB, "api"],
    local: edge,
    policy: { trust: ca.trust },
  });
  const hold = setTimeout(() => {}, 10_000); // the channel's timers do not hold the process open
  const info = await listener.channels()[0].closed;
  assert.equal(info.reason, "peer credential expired");
  await channel.closed;
  clearTimeout(hold);
});

Deno.test("channel: a peer whose attestation names another key is refused (man in the middle)", async () => {
  const ca = await authority();
  const edge = await member(ca.identity, { role: "edge" });
  const gateway = await member(ca.identity, { role: "gateway" });
  // The attacker presents the gateway's identity, credential and attestation
  // but uses its own Noise static key: the attestation names another key.
  const { generateDhKeyPair } = await import("./noise/x25519.ts");
  const impostor = { ...gateway, staticKeyPair: await generateDhKeyPair() };
  const a = new Node({ name: "a" });
  const b = new Node({ name: "b" });
  const { toB } = link(a, b);
  let delivered = 0;
  b.register("echo", () => void delivered++);
  listenSecureChannels({ node: b, address: "api", local: impostor, policy: { trust: ca.trust } });
  await assert.rejects(
    connectSecureChannel({
      node: a,
      route: [toB, "api"],
      local: edge,
      policy: { trust: ca.trust },
    }),
    (e: unknown) => e instanceof HandshakeError && e.code === "attestation_mismatch",
  );
  assert.equal(delivered, 0);
});

/** Two linked nodes whose link records every payload from a to b, and can replay or alter it. */
function tappedLink(a: Node, b: Node) {
  const captured: RoutedMessage[] = [];
  let alter: ((payload: Uint8Array) => Uint8Array) | null = null;
  a.register("tap.b", (m) => {
    const payload = alter ? alter(m.payload.slice()) : m.payload;
    captured.push({ onward: m.onward.slice(1), return: ["tap.a", ...m.return], payload });
    return b.route({ onward: m.onward.slice(1), return: ["tap.a", ...m.return], payload }).then(
      () => {},
    );
  });
  b.register(
    "tap.a",
    (m) =>
      a.route({ onward: m.onward.slice(1), return: ["tap.b", ...m.return], payload: m.payload })
        .then(() => {}),
  );
  return {
    captured,
    setAlter: (f: typeof alter) => alter = f,
    replay: (m: RoutedMessage) => b.route(m),
  };
}

Deno.test("channel: replayed records are dropped and a tampered record is never delivered", async () => {
  const ca = await authority();
  const edge = await member(ca.identity, { role: "edge" });
  const gateway = await member(ca.identity, { role: "gateway" });
  const a = new Node({ name: "a" });
  const b = new Node({ name: "b" });
  const tap = tappedLink(a, b);
  const got: string[] = [];
  b.register("echo", (m) => void got.push(new TextDecoder().decode(m.payload)));
  const listener = listenSecureChannels({
    node: b,
    address: "api",
    local: gateway,
    policy: { trust: ca.trust },
  });
  const channel = await connectSecureChannel({
    node: a,
    route: ["tap.b", "api"],
    local: edge,
    policy: { trust: ca.trust },
  });
  await channel.send(["echo"], text.encode("once"));
  const record = tap.captured.at(-1)!;
  await eventually(() => got.length === 1);
  await tap.replay(record);
  await tap.replay(record);
  const responder = listener.channels()[0];
  await eventually(() => responder.stats.dropped === 2);
  assert.deepEqual(got, ["once"]);
  // Flip one bit of the ciphertext on the way: dropped, not delivered.
  tap.setAlter((payload) => {
    payload[payload.length - 1] ^= 0x01;
    return payload;
  });
  await channel.send(["echo"], text.encode("tampered"));
  tap.setAlter(null);
  await channel.send(["echo"], text.encode("after"));
  await eventually(() => got.length === 2);
  assert.deepEqual(got, ["once", "after"]);
  assert.equal(responder.stats.dropped, 3);
  await channel.close();
});

Deno.test("channel: a replayed handshake fails and opens no channel", async () => {
  const ca = await authority();
  const edge = await member(ca.identity, { role: "edge" });
  const gateway = await member(ca.identity, { role: "gateway" });
  const a = new Node({ name: "a" });
  const b = new Node({ name: "b" });
  const tap = tappedLink(a, b);
  const listener = listenSecureChannels({
    node: b,
    address: "api",
    local: gateway,
    policy: { trust: ca.trust },
  });
  const channel = await connectSecureChannel({
    node: a,
    route: ["tap.b", "api"],
    local: edge,
    policy: { trust: ca.trust },
  });
  const [message1, message3] = tap.captured;
  assert.equal(message1.payload[0], 0x01);
  assert.equal(message3.payload[0], 0x03);
  // Replay message 1: the listener answers with a fresh ephemeral key, so the
  // recorded message 3 cannot complete it (its se/ee keys differ).
  const replies: RoutedMessage[] = [];
  b.register("attacker", (m) => void replies.push({ ...m, payload: m.payload.slice() }));
  await b.route({ onward: ["api"], return: ["attacker"], payload: message1.payload });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(replies.length, 1);
  await b.route({ onward: replies[0].return, return: ["attacker"], payload: message3.payload });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(listener.channels().length, 1, "only the genuine channel exists");
  assert.equal(listener.failures.get("decrypt_failed"), 1);
  await channel.close();
});

Deno.test("channel: keepalives hold a one-way channel open past the idle timeout", async () => {
  const ca = await authority();
  const edge = await member(ca.identity, { role: "edge" });
  const gateway = await member(ca.identity, { role: "gateway" });
  const a = new Node({ name: "a" });
  const b = new Node({ name: "b" });
  const { toB } = link(a, b);
  let got = 0;
  b.register("sink", () => void got++);
  listenSecureChannels({
    node: b,
    address: "api",
    local: gateway,
    policy: { trust: ca.trust },
    idleTimeoutMs: 300,
  });
  const channel = await connectSecureChannel({
    node: a,
    route: [toB, "api"],
    local: edge,
    policy: { trust: ca.trust },
    idleTimeoutMs: 300,
  });
  // Only a -> b carries data for three idle periods; b's keepalives keep a's
  // side open, a's data keeps b's side open.
  for (let i = 0; i < 18; i++) {
    await channel.send(["sink"], text.encode("tick"));
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(channel.isClosed, false);
  await eventually(() => got === 18);
  await channel.close();
});

Deno.test("channel: a message too large for one record is refused with a RangeError", async () => {
  const ca = await authority();
  const edge = await member(ca.identity, { role: "edge" });
  const gateway = await member(ca.identity, { role: "gateway" });
  const a = new Node({ name: "a" });
  const b = new Node({ name: "b" });
  const { toB } = link(a, b);
  listenSecureChannels({ node: b, address: "api", local: gateway, policy: { trust: ca.trust } });
  const channel = await connectSecureChannel({
    node: a,
    route: [toB, "api"],
    local: edge,
    policy: { trust: ca.trust },
  });
  await assert.rejects(channel.send(["sink"], new Uint8Array(192 * 1024 + 1)), RangeError);
  assert.equal(channel.isClosed, false);
  await channel.close();
});

Deno.test("channel: one source's unfinished handshakes cannot take the listener's slots from another", async () => {
  const ca = await authority();
  const gateway = await member(ca.identity, { role: "gateway" });
  const honest = await member(ca.identity, { role: "edge" });
  const b = new Node({ name: "b" });
  const flooder = new Node({ name: "flooder" });
  const a = new Node({ name: "a" });
  const flood = link(flooder, b);
  const { toB } = link(a, b);
  const listener = listenSecureChannels({
    node: b,
    address: "api",
    local: gateway,
    policy: { trust: ca.trust },
    maxPendingHandshakes: 16,
    maxPendingPerSource: 8,
    handshakeTimeoutMs: 2000,
  });
  // 40 message 1s (an ephemeral key each), never followed by a message 3.
  for (let i = 0; i < 40; i++) {
    const ephemeral = crypto.getRandomValues(new Uint8Array(32));
    await flooder.route({
      onward: [flood.toB, "api"],
      return: [`scd.flood${i}`],
      payload: Uint8Array.of(0x01, ...ephemeral),
    });
  }
  await eventually(() => (listener.failures.get("too_many_pending") ?? 0) === 32);
  // The listener-wide cap (16) still has room for another source.
  const channel = await connectSecureChannel({
    node: a,
    route: [toB, "api"],
    local: honest,
    policy: { trust: ca.trust },
    handshakeTimeoutMs: 1500,
  });
  assert.equal(channel.peer.identifier, gateway.identity.identifier);
  channel.close("done");
  listener.close({ closeChannels: true });
  // Let the flood's handshakes time out, so no timer outlives the test.
  await eventually(() => (listener.failures.get("timeout") ?? 0) === 8, 5000);
});
