/**
 * The handshake drivers' own machinery (./handshake.ts): deadlines that
 * share one timer per duration, and the identity payload re-encoded only
 * when what it carries changes.
 */
import assert from "node:assert/strict";
import { HandshakeError } from "../errors.ts";
import { Node } from "../routing/node.ts";
import { authority, link, member } from "../testdata/channel_fixtures.ts";
import { issueCredential } from "../credential/credential.ts";
import { createChannelIdentity } from "./channel_identity.ts";
import { connectSecureChannel, listenSecureChannels } from "./handshake.ts";

Deno.test("handshake deadlines: each expires on time, whatever others of its duration and of others do", async () => {
  const ca = await authority();
  const edge = await member(ca.identity, { role: "edge" });
  const a = new Node({ name: "a" });
  a.register("black_hole", () => {});
  const attempt = (ms: number) => {
    const started = performance.now();
    return connectSecureChannel({
      node: a,
      route: ["black_hole"],
      local: edge,
      policy: { trust: ca.trust },
      handshakeTimeoutMs: ms,
    }).then(
      () => assert.fail("a handshake into a black hole succeeded"),
      (error: unknown) => {
        assert.ok(error instanceof HandshakeError && error.code === "timeout");
        return performance.now() - started;
      },
    );
  };
  // Three of one duration set apart, one shorter and one longer set between them.
  const first = attempt(400);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const short = attempt(100);
  const second = attempt(400);
  const long = attempt(700);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const third = attempt(400);
  const elapsed = await Promise.all([first, short, second, long, third]);
  for (const [i, ms] of [400, 100, 400, 700, 400].entries()) {
    assert.ok(elapsed[i] >= ms - 5, `deadline ${i} of ${ms} ms expired after ${elapsed[i]} ms`);
    assert.ok(elapsed[i] < ms + 1000, `deadline ${i} of ${ms} ms expired after ${elapsed[i]} ms`);
  }
  // The sanitizer checks that no timer is left behind once none is pending.
});

Deno.test("handshake deadlines: handshakes that finish cancel theirs; a later one still expires", async () => {
  const ca = await authority();
  const edge = await member(ca.identity, { role: "edge" });
  const gateway = await member(ca.identity, { role: "gateway" });
  const a = new Node({ name: "a" });
  const b = new Node({ name: "b" });
  const { toB } = link(a, b);
  a.register("black_hole", () => {});
  const listener = listenSecureChannels({
    node: b,
    address: "api",
    local: gateway,
    policy: { trust: ca.trust },
    handshakeTimeoutMs: 1000,
  });
  const options = { node: a, local: edge, policy: { trust: ca.trust }, handshakeTimeoutMs: 1000 };
  // Ten at once (the listener takes sixteen unfinished ones per source).
  const channels = await Promise.all(
    Array.from({ length: 10 }, () => connectSecureChannel({ ...options, route: [toB, "api"] })),
  );
  await assert.rejects(
    connectSecureChannel({ ...options, route: ["black_hole"] }),
    (e: unknown) => e instanceof HandshakeError && e.code === "timeout",
  );
  assert.equal(listener.channels().length, 10);
  for (const channel of channels) channel.close("done");
  listener.close({ closeChannels: true });
});

Deno.test("identity payload: a renewed static key and new credentials are what the next handshake presents", async () => {
  const ca = await authority();
  const gateway = await member(ca.identity, { role: "gateway" });
  const edge = await member(ca.identity, { role: "edge" });
  let credentials = edge.credentials();
  const renewable = await createChannelIdentity(edge.identity, { credentials: () => credentials });
  const a = new Node({ name: "a" });
  const b = new Node({ name: "b" });
  const { toB } = link(a, b);
  const listener = listenSecureChannels({
    node: b,
    address: "api",
    local: gateway,
    policy: { trust: ca.trust, requiredAttributes: { role: "edge" } },
  });
  const connect = () =>
    connectSecureChannel({
      node: a,
      route: [toB, "api"],
      local: renewable,
      policy: { trust: ca.trust },
      handshakeTimeoutMs: 2000,
    });
  const before = await connect();
  assert.deepEqual(
    listener.channels().map((c) => c.peer.attestation.publicKey),
    [renewable.staticKeyPair.publicKey],
  );
  // A stale payload would carry the old attestation: the responder would
  // refuse the new static key (attestation_mismatch) and the connect fail.
  await renewable.renew();
  const after = await connect();
  assert.deepEqual(
    listener.channels().map((c) => c.peer.attestation.publicKey).at(-1),
    renewable.staticKeyPair.publicKey,
  );
  // New credentials (another role): the responder's policy now refuses it.
  credentials = [
    (await issueCredential(ca.identity, {
      subject: edge.identity.identifier,
      subjectKey: edge.identity.primaryKey,
      attributes: { role: "intruder" },
    })).encoded,
  ];
  await assert.rejects(
    connect(),
    (e: unknown) => e instanceof HandshakeError && e.code === "refused",
  );
  before.close("done");
  after.close("done");
  listener.close({ closeChannels: true });
});
