/**
 * Portals over a real secure channel on loopback TCP, with real TCP
 * backends and clients: integrity over concurrent sessions, half-close,
 * backend down, policy denial.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { connectSecureChannel, listenSecureChannels } from "../channel/handshake.ts";
import { parsePolicy, type Policy } from "../policy/mod.ts";
import { outletRule } from "../policy/rules.ts";
import { Node } from "../routing/node.ts";
import { TcpTransport } from "../transport/tcp_transport.ts";
import { authority, eventually, link, member } from "../testdata/channel_fixtures.ts";
import type { Route } from "../routing/routed_message.ts";
import { createInlet, createOutlet, DEFAULT_WINDOW, MAX_CHUNK } from "./portal.ts";
import {
  creditMessage,
  dataMessage,
  decodePortalMessage,
  finMessage,
  PORTAL,
} from "./portal_message.ts";

/** A backend that answers with `reply(received)` once its client half-closes. */
function backend(reply: (received: Uint8Array) => Uint8Array) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) {
      (async () => {
        const chunks: Uint8Array[] = [];
        const buffer = new Uint8Array(64 * 1024);
        for (;;) {
          const n = await conn.read(buffer).catch(() => null);
          if (n === null) break;
          chunks.push(buffer.slice(0, n));
        }
        const all = new Uint8Array(chunks.reduce((s, c) => s + c.length, 0));
        let at = 0;
        for (const c of chunks) all.set(c, at), at += c.length;
        const out = reply(all);
        for (let w = 0; w < out.length;) w += await conn.write(out.subarray(w));
        conn.close();
      })().catch(() => {});
    }
  })().catch(() => {});
  return listener;
}

async function exchange(port: number, payload: Uint8Array): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const writing = (async () => {
    for (let w = 0; w < payload.length;) w += await conn.write(payload.subarray(w));
    await conn.closeWrite();
  })();
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) break;
    chunks.push(buffer.slice(0, n));
  }
  await writing;
  conn.close();
  const all = new Uint8Array(chunks.reduce((s, c) => s + c.length, 0));
  let at = 0;
  for (const c of chunks) all.set(c, at), at += c.length;
  return all;
}

const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

async function setUp(policyText: string | Policy, backendPort: number) {
  const ca = await authority();
  const gatewayNode = new Node({ name: "gateway" });
  const edgeNode = new Node({ name: "edge" });
  const tg = new TcpTransport(gatewayNode);
  const te = new TcpTransport(edgeNode);
  const gatewayMember = await member(ca.identity, { role: "gateway" });
  const edgeMember = await member(ca.identity, { role: "edge", customer_id: "cust_001" });
  listenSecureChannels({
    node: gatewayNode,
    address: "api",
    local: gatewayMember,
    policy: { trust: ca.trust },
  });
  const outlet = createOutlet({
    node: gatewayNode,
    name: "context",
    backend: { hostname: "127.0.0.1", port: backendPort },
    policy: typeof policyText === "string" ? parsePolicy(policyText) : policyText,
  });
  const listener = tg.listen({ hostname: "127.0.0.1", port: 0 });
  const conn = await te.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const channel = await connectSecureChannel({
    node: edgeNode,
    route: [conn.address, "api"],
    local: edgeMember,
    policy: { trust: ca.trust },
  });
  const inlet = createInlet({
    node: edgeNode,
    listen: { hostname: "127.0.0.1", port: 0 },
    route: () => [channel.address, "outlet.context"],
  });
  return {
    inlet,
    outlet,
    gatewayNode,
    async close() {
      inlet.close();
      await channel.close();
      await te.close();
      await tg.close();
    },
  };
}

Deno.test("portal: 20 concurrent sessions, random payloads checked by SHA-256 both ways, with half-close", async () => {
  const server = backend((received) => {
    // Reply: the received bytes reversed, so both directions carry distinct data.
    return received.slice().reverse();
  });
  const ctx = await setUp(
    'subject.role == "edge" and subject.customer_id == "cust_001"',
    (server.addr as Deno.NetAddr).port,
  );
  try {
    const results = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
      const payload = crypto.getRandomValues(new Uint8Array(64 * 1024)).slice(0, 1000 + i * 20_000);
      const big = new Uint8Array(payload.length * 4);
      for (let k = 0; k < 4; k++) big.set(payload, k * payload.length);
      const reply = await exchange(ctx.inlet.addr.port, big);
      return sha(reply) === sha(big.slice().reverse()) && reply.length === big.length;
    }));
    assert.deepEqual(results, Array(20).fill(true));
    assert.equal(ctx.outlet.stats.sessions, 20);
    await eventually(() => ctx.outlet.stats.open === 0 && ctx.inlet.stats.open === 0);
  } finally {
    await ctx.close();
    server.close();
  }
});

Deno.test("portal: a backend that is down closes the client's connection promptly", async () => {
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (closed.addr as Deno.NetAddr).port;
  closed.close();
  const ctx = await setUp('subject.role == "edge"', port);
  try {
    const started = performance.now();
    const reply = await exchange(ctx.inlet.addr.port, new Uint8Array(10));
    assert.equal(reply.length, 0);
    assert.ok(performance.now() - started < 3000);
    assert.equal(ctx.outlet.stats.refused, 1);
    await eventually(() => ctx.inlet.stats.refused === 1);
  } finally {
    await ctx.close();
  }
});

Deno.test("portal: a member the outlet's policy does not admit is refused at the outlet", async () => {
  let reached = 0;
  const server = backend((received) => {
    reached++;
    return received;
  });
  const ctx = await setUp('"mcp" in subject.capabilities', (server.addr as Deno.NetAddr).port);
  try {
    const reply = await exchange(ctx.inlet.addr.port, new Uint8Array(10));
    assert.equal(reply.length, 0);
    assert.equal(ctx.outlet.stats.denied, 1);
    assert.equal(reached, 0);
  } finally {
    await ctx.close();
    server.close();
  }
});

Deno.test("portal: a peer that sends past its credit is reset, not queued for", async () => {
  // A backend that accepts and never reads: only kernel buffers take data.
  const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  (async () => {
    for await (const conn of server) held.push(conn);
  })().catch(() => {});
  const ca = await authority();
  const gatewayNode = new Node({ name: "gateway" });
  const edgeNode = new Node({ name: "edge" });
  const tg = new TcpTransport(gatewayNode);
  const te = new TcpTransport(edgeNode);
  listenSecureChannels({
    node: gatewayNode,
    address: "api",
    local: await member(ca.identity, { role: "gateway" }),
    policy: { trust: ca.trust },
  });
  const outlet = createOutlet({
    node: gatewayNode,
    name: "context",
    backend: { hostname: "127.0.0.1", port: (server.addr as Deno.NetAddr).port },
    policy: parsePolicy('subject.role == "edge"'),
  });
  const listener = tg.listen({ hostname: "127.0.0.1", port: 0 });
  const conn = await te.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const channel = await connectSecureChannel({
    node: edgeNode,
    route: [conn.address, "api"],
    local: await member(ca.identity, { role: "edge" }),
    policy: { trust: ca.trust },
  });
  try {
    // A hand-made inlet that opens a session and then ignores credit.
    const opened = Promise.withResolvers<Route>();
    const reset = Promise.withResolvers<string>();
    edgeNode.register("rogue", (m) => {
      const decoded = decodePortalMessage(m.payload);
      if (decoded.kind === PORTAL.opened) opened.resolve([...m.return]);
      if (decoded.kind === PORTAL.reset) reset.resolve(decoded.reason);
    });
    await edgeNode.route({
      onward: [channel.address, "outlet.context"],
      return: ["rogue"],
      payload: creditMessage(PORTAL.open, 0, DEFAULT_WINDOW),
    });
    const session = await opened.promise;
    const zeros = new Uint8Array(MAX_CHUNK);
    let seq = 1;
    let sent = 0;
    let reason: string | null = null;
    reset.promise.then((r) => reason = r);
    // 64 MiB, far past the window and what the kernel buffers of the
    // backend's socket can take.
    while (reason === null && sent < 64 * 1024 * 1024) {
      await edgeNode.route({
        onward: session,
        return: ["rogue"],
        payload: dataMessage(seq++, zeros),
      });
      sent += MAX_CHUNK;
    }
    const answer = await Promise.race([
      reset.promise,
      new Promise<null>((resolve) => setTimeout(() => resolve(null), 2000)),
    ]);
    assert.equal(answer, "peer exceeded its credit");
    assert.ok(outlet.stats.bytesIn < 32 * 1024 * 1024, `the outlet took ${outlet.stats.bytesIn}`);
    await eventually(() => outlet.stats.open === 0);
  } finally {
    for (const c of held) c.close();
    server.close();
    await channel.close();
    await te.close();
    await tg.close();
  }
});

Deno.test("portal: a session takes messages only through the channel that opened it", async () => {
  // The backend answers with everything its client sent, once it half-closes.
  const server = backend((received) => received);
  const ca = await authority();
  const gatewayNode = new Node({ name: "gateway" });
  const tg = new TcpTransport(gatewayNode);
  listenSecureChannels({
    node: gatewayNode,
    address: "api",
    local: await member(ca.identity, { role: "gateway" }),
    policy: { trust: ca.trust },
  });
  createOutlet({
    node: gatewayNode,
    name: "context",
    backend: { hostname: "127.0.0.1", port: (server.addr as Deno.NetAddr).port },
    policy: parsePolicy('subject.role == "edge"'),
  });
  const listener = tg.listen({ hostname: "127.0.0.1", port: 0 });
  // Two edges, both admitted by the outlet's policy, each with its channel.
  const edges = await Promise.all(["a", "b"].map(async (name) => {
    const node = new Node({ name });
    const transport = new TcpTransport(node);
    const conn = await transport.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    const channel = await connectSecureChannel({
      node,
      route: [conn.address, "api"],
      local: await member(ca.identity, { role: "edge" }),
      policy: { trust: ca.trust },
    });
    return { node, transport, channel };
  }));
  const [a, b] = edges;
  try {
    const opened = Promise.withResolvers<Route>();
    const received: Uint8Array[] = [];
    const fin = Promise.withResolvers<void>();
    a.node.register("client", (m) => {
      const decoded = decodePortalMessage(m.payload);
      if (decoded.kind === PORTAL.opened) opened.resolve([...m.return]);
      if (decoded.kind === PORTAL.data) received.push(decoded.bytes.slice());
      if (decoded.kind === PORTAL.fin || decoded.kind === PORTAL.reset) fin.resolve();
    });
    await a.node.route({
      onward: [a.channel.address, "outlet.context"],
      return: ["client"],
      payload: creditMessage(PORTAL.open, 0, DEFAULT_WINDOW),
    });
    const session = await opened.promise; // [a's encryptor, portal.<session at the gateway>]
    const text = new TextEncoder();
    // Edge b learned the session's address: its DATA and FIN, through its
    // own channel, must not reach the session.
    for (const payload of [dataMessage(1, text.encode("from-b")), finMessage(2)]) {
      await b.node.route({ onward: [b.channel.address, session[1]], return: [], payload });
    }
    await new Promise((r) => setTimeout(r, 100));
    for (const payload of [dataMessage(1, text.encode("from-a")), finMessage(2)]) {
      await a.node.route({ onward: session, return: ["client"], payload });
    }
    await Promise.race([fin.promise, new Promise((r) => setTimeout(r, 5000))]);
    const all = new TextDecoder().decode(
      received.reduce((sum, c) => {
        const out = new Uint8Array(sum.length + c.length);
        out.set(sum), out.set(c, sum.length);
        return out;
      }, new Uint8Array(0)),
    );
    assert.equal(all, "from-a");
  } finally {
    server.close();
    for (const edge of edges) {
      await edge.channel.close();
      await edge.transport.close();
    }
    await tg.close();
  }
});

Deno.test("portal: an outlet's own customer check holds where the channel listener admits everyone", async () => {
  let reached = 0;
  const server = backend((received) => {
    reached++;
    return received;
  });
  // The listener in setUp checks trust only; the outlet's rule names another
  // customer than the edge's (cust_001).
  const rule = outletRule("cust_002", "context", 'subject.role == "edge"');
  const ctx = await setUp(rule, (server.addr as Deno.NetAddr).port);
  try {
    const reply = await exchange(ctx.inlet.addr.port, new Uint8Array(10));
    assert.equal(reply.length, 0);
    assert.equal(ctx.outlet.stats.denied, 1);
    assert.equal(reached, 0);
  } finally {
    await ctx.close();
    server.close();
  }
});

Deno.test("portal: an OPEN that comes through no secure channel is refused, whatever the policy", async () => {
  let reached = 0;
  const server = backend((received) => {
    reached++;
    return received;
  });
  const ctx = await setUp("true", (server.addr as Deno.NetAddr).port);
  const replies: Uint8Array[] = [];
  ctx.gatewayNode.register("forger", (m) => void replies.push(m.payload.slice()));
  try {
    // Straight onto the gateway's node, as a connection could deliver it.
    await ctx.gatewayNode.route({
      onward: ["outlet.context"],
      return: ["forger"],
      payload: creditMessage(PORTAL.open, 0, DEFAULT_WINDOW),
    });
    await eventually(() => replies.length === 1);
    const refusal = decodePortalMessage(replies[0]);
    assert.equal(refusal.kind, PORTAL.refused);
    assert.equal(ctx.outlet.stats.denied, 1);
    assert.equal(ctx.outlet.stats.sessions, 0);
    assert.equal(reached, 0);
  } finally {
    await ctx.close();
    server.close();
  }
});

Deno.test("portal: an inlet takes its answer only through the channel its OPEN left on", async () => {
  const ca = await authority();
  const edge = new Node({ name: "edge" });
  const gateway = new Node({ name: "gateway" });
  const other = new Node({ name: "other" });
  const { toB } = link(edge, gateway);
  const toEdge = link(other, edge).toB;
  listenSecureChannels({
    node: gateway,
    address: "api",
    local: await member(ca.identity, { role: "gateway" }),
    policy: { trust: ca.trust },
  });
  listenSecureChannels({
    node: edge,
    address: "side",
    local: await member(ca.identity, { role: "edge" }),
    policy: { trust: ca.trust },
  });
  const channel = await connectSecureChannel({
    node: edge,
    route: [toB, "api"],
    local: await member(ca.identity, { role: "edge" }),
    policy: { trust: ca.trust },
  });
  const side = await connectSecureChannel({
    node: other,
    route: [toEdge, "side"],
    local: await member(ca.identity, { role: "gateway" }),
    policy: { trust: ca.trust },
  });
  // A stand-in outlet that tells the test where the inlet waits, and answers later.
  const opened = Promise.withResolvers<Route>();
  gateway.register("outlet.slow", (m) => opened.resolve([...m.return]));
  const inlet = createInlet({
    node: edge,
    listen: { hostname: "127.0.0.1", port: 0 },
    route: () => [channel.address, "outlet.slow"],
  });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: inlet.addr.port });
  try {
    const back = await opened.promise;
    const pending = back[back.length - 1];
    const forged = creditMessage(PORTAL.opened, 0, DEFAULT_WINDOW);
    // Straight onto the edge's node, and through another (authentic) channel.
    await edge.route({ onward: [pending], return: [], payload: forged });
    await side.send([pending], forged);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(inlet.stats.sessions, 0, "a forged OPENED opened the session");
    // The real answer, through the channel the OPEN left on, still counts.
    await gateway.route({
      onward: back,
      return: ["outlet.slow"],
      payload: creditMessage(PORTAL.opened, 0, DEFAULT_WINDOW),
    });
    await eventually(() => inlet.stats.sessions === 1);
  } finally {
    client.close();
    inlet.close();
    side.close("done");
    channel.close("done");
  }
});
