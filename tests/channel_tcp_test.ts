/**
 * Secure channels over real loopback TCP: in one process, through an
 * intermediate forwarding node, and across two processes.
 */
import assert from "node:assert/strict";
import { issueCredential } from "../src/credential/credential.ts";
import { toHex } from "../src/encoding/hex.ts";
import { writeIdentityFile } from "../src/identity/identity_file.ts";
import { Identity } from "../src/identity/identity.ts";
import { SoftwareSigner } from "../src/identity/software_signer.ts";
import { connectSecureChannel, listenSecureChannels } from "../src/channel/handshake.ts";
import { Node } from "../src/routing/node.ts";
import type { RoutedMessage } from "../src/routing/routed_message.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import { authority, member } from "../src/testdata/channel_fixtures.ts";
import { createChannelIdentity } from "../src/channel/channel_identity.ts";
import { readBanner } from "../scripts/support/banner.ts";

const MESSAGES = 10_000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Sends MESSAGES numbered messages to "echo" and checks every reply, in order. */
async function exchange(node: Node, channelAddress: string): Promise<void> {
  const replies: string[] = [];
  const done = Promise.withResolvers<void>();
  node.register("sink", (m: RoutedMessage) => {
    replies.push(decoder.decode(m.payload));
    if (replies.length === MESSAGES) done.resolve();
  });
  for (let i = 0; i < MESSAGES; i++) {
    await node.route({
      onward: [channelAddress, "echo"],
      return: ["sink"],
      payload: encoder.encode(`message ${i} ${"x".repeat(i % 200)}`),
    });
  }
  await done.promise;
  for (let i = 0; i < MESSAGES; i++) {
    assert.equal(replies[i], `message ${i} ${"x".repeat(i % 200)}`);
  }
  node.unregister("sink");
}

function echo(node: Node, seen?: RoutedMessage["local"][]): void {
  node.register("echo", async (m) => {
    seen?.push(m.local);
    await node.route({ onward: m.return, return: ["echo"], payload: m.payload });
  });
}

Deno.test("tcp, one process: handshake and 10,000 messages each way", async () => {
  const ca = await authority();
  const a = new Node({ name: "a" });
  const b = new Node({ name: "b" });
  const ta = new TcpTransport(a);
  const tb = new TcpTransport(b);
  const seen: RoutedMessage["local"][] = [];
  echo(b, seen);
  const gateway = await member(ca.identity, { role: "gateway" });
  const edge = await member(ca.identity, { role: "edge" });
  listenSecureChannels({ node: b, address: "api", local: gateway, policy: { trust: ca.trust } });
  const listener = tb.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const conn = await ta.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    const channel = await connectSecureChannel({
      node: a,
      route: [conn.address, "api"],
      local: edge,
      policy: { trust: ca.trust, pinned: [gateway.identity.identifier] },
    });
    await exchange(a, channel.address);
    assert.equal(seen.length, MESSAGES);
    assert.ok(seen.every((local) => local?.secureChannel?.peer === edge.identity.identifier));
    assert.equal(channel.stats.dropped, 0);
    channel.close();
  } finally {
    await ta.close();
    await tb.close();
  }
});

Deno.test("tcp: a channel through an intermediate forwarding node", async () => {
  const ca = await authority();
  const [a, b, c] = ["a", "b", "c"].map((name) => new Node({ name }));
  const [ta, tb, tc] = [a, b, c].map((node) => new TcpTransport(node));
  const gateway = await member(ca.identity, { role: "gateway" });
  const edge = await member(ca.identity, { role: "edge" });
  echo(c);
  listenSecureChannels({ node: c, address: "api", local: gateway, policy: { trust: ca.trust } });
  const listenB = tb.listen({ hostname: "127.0.0.1", port: 0 });
  const listenC = tc.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    // B connects out to C and forwards what arrives at "forward_to_c".
    const bToC = await tb.connect({ hostname: "127.0.0.1", port: listenC.addr.port });
    let forwarded = 0;
    b.register("forward_to_c", async (m) => {
      forwarded++;
      await b.route({
        onward: [bToC.address, ...m.onward.slice(1)],
        return: m.return,
        payload: m.payload,
      });
    });
    const aToB = await ta.connect({ hostname: "127.0.0.1", port: listenB.addr.port });
    const channel = await connectSecureChannel({
      node: a,
      route: [aToB.address, "forward_to_c", "api"],
      local: edge,
      policy: { trust: ca.trust },
    });
    assert.equal(channel.peer.identifier, gateway.identity.identifier);
    await exchange(a, channel.address);
    // Only message 1 needs the alias; everything after follows the return
    // route it built, through B's two connections. A never connects to C.
    assert.equal(forwarded, 1);
    assert.equal(ta.connections().size, 1);
    assert.equal(tc.connections().size, 1);
    assert.equal(tb.connections().size, 2);
    await channel.close();
  } finally {
    await Promise.all([ta.close(), tb.close(), tc.close()]);
  }
});

Deno.test("tcp, two processes: handshake and 10,000 messages each way", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nexus-channel-" });
  const seed = crypto.getRandomValues(new Uint8Array(32));
  const ca = await Identity.create(await SoftwareSigner.fromSeed(seed));
  await writeIdentityFile(`${dir}/authority.json`, ca.history);
  await Deno.writeTextFile(`${dir}/authority.seed`, toHex(seed), { mode: 0o600 });
  const peer = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-q",
      "--no-prompt",
      `--allow-read=${dir}`,
      "--allow-net=127.0.0.1",
      new URL("../scripts/support/channel_peer.ts", import.meta.url).pathname,
      `${dir}/authority.json`,
      `${dir}/authority.seed`,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const a = new Node({ name: "a" });
  const ta = new TcpTransport(a);
  try {
    const { port, identifier } = await readBanner(peer);
    const me = await Identity.create(await SoftwareSigner.generate());
    const credential = await issueCredential(ca, {
      subject: me.identifier,
      subjectKey: me.primaryKey,
      attributes: { role: "edge" },
    });
    const conn = await ta.connect({ hostname: "127.0.0.1", port: Number(port) });
    const channel = await connectSecureChannel({
      node: a,
      route: [conn.address, "api"],
      local: await createChannelIdentity(me, { credentials: () => [credential.encoded] }),
      policy: {
        trust: await authorityTrust(ca),
        pinned: [identifier!],
        requiredAttributes: { role: "gateway" },
      },
    });
    await exchange(a, channel.address);
    await channel.close();
  } finally {
    await ta.close();
    await peer.stdin.close();
    await peer.status;
    await peer.stdout.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

async function authorityTrust(ca: Identity) {
  const { TrustStore } = await import("../src/credential/trust_store.ts");
  return new TrustStore([ca]);
}
