/**
 * The routing-only gateway in memory: an edge's inner channel to a
 * service agent, nested in the edge's channel to the gateway and the
 * gateway's channel to the agent, forwarded by ServiceRouter; and every
 * message of the wrong shape, from the wrong place, of an edge the policy
 * refuses or beyond the handshake rate, dropped and counted. Across
 * processes, with a compromised gateway: tests/e2e_test.ts.
 */
import assert from "node:assert/strict";
import { connectSecureChannel, listenSecureChannels } from "../src/channel/handshake.ts";
import type { SecureChannel } from "../src/channel/secure_channel.ts";
import { INNER_LISTENER, serviceAddress } from "../src/channel/service_routes.ts";
import { HandshakeError } from "../src/errors.ts";
import { silentLogger } from "../src/log.ts";
import { outletRule, serviceRule } from "../src/policy/rules.ts";
import { Node } from "../src/routing/node.ts";
import type { RoutedMessage } from "../src/routing/routed_message.ts";
import { authority, eventually, link, member } from "../src/testdata/channel_fixtures.ts";
import { type ForwardedFrame, ServiceRouter } from "./service_router.ts";

const CUSTOMER = "cust_001";

/** Edge, gateway and agent nodes, their outer channels, and the router on the gateway. */
async function deployment(
  options: {
    policy?: string;
    edgeAttributes?: Record<string, unknown>;
    hook?: (frame: ForwardedFrame) => RoutedMessage[];
    handshakes?: { perSecond: number; burst: number };
  } = {},
) {
  const ca = await authority();
  const edge = new Node({ name: "edge" });
  const gateway = new Node({ name: "gateway" });
  const agent = new Node({ name: "agent" });
  const edgeLink = link(edge, gateway);
  const agentLink = link(gateway, agent);
  const edgeLocal = await member(ca.identity, {
    role: "edge",
    customer_id: CUSTOMER,
    ...options.edgeAttributes,
  });
  const gatewayLocal = await member(ca.identity, { role: "gateway", customer_id: CUSTOMER });
  const agentLocal = await member(ca.identity, {
    role: "service",
    customer_id: CUSTOMER,
    service: "orchestrator",
  });
  const edges = listenSecureChannels({
    node: gateway,
    address: "api",
    local: gatewayLocal,
    policy: { trust: ca.trust },
  });
  const outerAtAgent = listenSecureChannels({
    node: agent,
    address: "api",
    local: agentLocal,
    policy: { trust: ca.trust },
  });
  // The agent takes inner channels only through a gateway's channel.
  const inner = listenSecureChannels({
    node: agent,
    address: INNER_LISTENER,
    local: agentLocal,
    policy: { trust: ca.trust },
    acceptFrom: (m) => outerAtAgent.channel(m.return[0]) !== undefined,
  });
  const received: RoutedMessage[] = [];
  agent.register("echo", async (m) => {
    received.push(m);
    await agent.route({ onward: m.return, return: ["echo"], payload: m.payload });
  });
  const path = await connectSecureChannel({
    node: gateway,
    route: [agentLink.toB, "api"],
    local: gatewayLocal,
    policy: { trust: ca.trust, admit: serviceRule(CUSTOMER, "orchestrator") },
  });
  const router = new ServiceRouter({
    node: gateway,
    edges,
    services: [{
      name: "orchestrator",
      policy: outletRule(CUSTOMER, "orchestrator", options.policy ?? 'subject.role == "edge"'),
      channel: () => path,
    }],
    handshakes: options.handshakes,
    hook: options.hook,
    logger: silentLogger,
  });
  const outer = await connectSecureChannel({
    node: edge,
    route: [edgeLink.toB, "api"],
    local: edgeLocal,
    policy: { trust: ca.trust },
  });
  const connectInner = () =>
    connectSecureChannel({
      node: edge,
      route: [outer.address, serviceAddress("orchestrator"), INNER_LISTENER],
      local: edgeLocal,
      policy: { trust: ca.trust, admit: serviceRule(CUSTOMER, "orchestrator") },
      handshakeTimeoutMs: 1000,
    });
  return {
    ca,
    edge,
    gateway,
    agent,
    outer,
    path,
    edges,
    inner,
    router,
    received,
    connectInner,
    stats: () => router.stats.get("orchestrator")!,
    /** The agent's end of the gateway's channel to it. */
    agentEnd: () => outerAtAgent.channels()[0],
    close() {
      router.close();
      for (const c of [...edges.channels(), ...outerAtAgent.channels(), ...inner.channels()]) {
        c.close("done");
      }
      outer.close("done");
      path.close("done");
    },
  };
}

/** Sends `text` to the agent's echo through `channel` and waits for the answer. */
async function echo(edge: Node, channel: SecureChannel, text: string): Promise<string> {
  const answer = Promise.withResolvers<string>();
  const inbox = edge.registerRandom(
    "in",
    (m) => answer.resolve(new TextDecoder().decode(m.payload)),
  );
  try {
    await channel.send(["echo"], new TextEncoder().encode(text), [inbox]);
    return await answer.promise;
  } finally {
    edge.unregister(inbox);
  }
}

Deno.test("service router: an inner channel through the gateway reaches the agent, which sees the edge", async () => {
  const d = await deployment();
  try {
    const inner = await d.connectInner();
    assert.equal(inner.peer.credential?.attributes.service, "orchestrator");
    assert.equal(await echo(d.edge, inner, "hello"), "hello");
    // The agent sees the edge itself, through the inner channel.
    const seen = d.received[0].local?.secureChannel;
    assert.equal(seen?.credential()?.attributes.role, "edge");
    assert.equal(seen?.credential()?.attributes.customer_id, CUSTOMER);
    assert.ok(d.stats().toService >= 3 && d.stats().toEdge >= 3);
    assert.equal(d.stats().refused.size, 0);
  } finally {
    d.close();
  }
});

Deno.test("service router: the gateway forwards only ciphertext it cannot open", async () => {
  const marker = "MARKER-" + crypto.randomUUID();
  const seen: Uint8Array[] = [];
  const d = await deployment({
    hook: (frame) => {
      seen.push(frame.message.payload.slice());
      return [frame.message];
    },
  });
  try {
    const inner = await d.connectInner();
    assert.equal(await echo(d.edge, inner, marker), marker);
    const all = seen.map((bytes) => new TextDecoder("latin1").decode(bytes)).join("\n");
    assert.ok(seen.length > 0);
    assert.ok(!all.includes(marker), "the gateway saw the plaintext");
  } finally {
    d.close();
  }
});

Deno.test("service router: an edge the service's policy refuses is dropped at the gateway", async () => {
  const d = await deployment({ policy: '"orchestrate" in subject.capabilities' });
  try {
    await assert.rejects(d.connectInner(), HandshakeError);
    assert.equal(d.stats().refused.get("denied"), 1);
    assert.equal(d.stats().toService, 0);
  } finally {
    d.close();
  }
});

Deno.test("service router: new inner channels are rate-limited per edge", async () => {
  const d = await deployment({ handshakes: { perSecond: 0.001, burst: 2 } });
  try {
    await d.connectInner();
    await d.connectInner();
    await assert.rejects(d.connectInner(), HandshakeError);
    assert.equal(d.stats().refused.get("rate"), 1);
  } finally {
    d.close();
  }
});

Deno.test("service router: messages of the wrong shape or from the wrong place are dropped", async () => {
  const d = await deployment();
  try {
    const inner = await d.connectInner();
    const before = d.stats().toService + d.stats().toEdge;
    const record = Uint8Array.of(0x04, ...new Uint8Array(40));
    const message1 = Uint8Array.of(0x01, ...new Uint8Array(32));
    const attempts: [string, RoutedMessage, (m: RoutedMessage) => Promise<unknown>][] = [
      // Straight onto the gateway's node: no edge channel.
      [
        "not_an_edge",
        {
          onward: [serviceAddress("orchestrator"), INNER_LISTENER],
          return: ["x", "scd.1"],
          payload: message1,
        },
        (m) => d.gateway.route(m),
      ],
      // Through the edge's channel, but a message 1 to a decryptor, a record to the listener,
      // two hops at the far end, a far end that is not a decryptor.
      [
        "bad_route",
        {
          onward: [serviceAddress("orchestrator"), "scd.ab"],
          return: ["scd.1"],
          payload: message1,
        },
        (m) => d.outer.send(m.onward, m.payload, m.return),
      ],
      [
        "bad_route",
        {
          onward: [serviceAddress("orchestrator"), INNER_LISTENER],
          return: ["scd.1"],
          payload: record,
        },
        (m) => d.outer.send(m.onward, m.payload, m.return),
      ],
      [
        "bad_route",
        {
          onward: [serviceAddress("orchestrator"), "scd.ab", "echo"],
          return: ["scd.1"],
          payload: record,
        },
        (m) => d.outer.send(m.onward, m.payload, m.return),
      ],
      [
        "bad_route",
        { onward: [serviceAddress("orchestrator"), "echo"], return: ["scd.1"], payload: record },
        (m) => d.outer.send(m.onward, m.payload, m.return),
      ],
      // An edge posing as the agent on the way back.
      [
        "not_the_agent",
        { onward: ["svcret.orchestrator", "x", "scd.1"], return: ["scd.2"], payload: record },
        (m) => d.outer.send(m.onward, m.payload, m.return),
      ],
      // The agent posing as an edge: through a channel, but not an edge's.
      [
        "not_an_edge",
        {
          onward: [serviceAddress("orchestrator"), INNER_LISTENER],
          return: ["scd.1"],
          payload: message1,
        },
        (m) => d.agentEnd().send(m.onward, m.payload, m.return),
      ],
    ];
    for (const [reason, message, send] of attempts) {
      const count = d.stats().refused.get(reason as never) ?? 0;
      await send(message);
      await eventually(() => (d.stats().refused.get(reason as never) ?? 0) === count + 1, 1000)
        .catch(() => {
          throw new Error(`not refused as ${reason}: ${JSON.stringify(message.onward)}`);
        });
    }
    assert.equal(d.stats().toService + d.stats().toEdge, before);
    // The inner channel still works.
    assert.equal(await echo(d.edge, inner, "still"), "still");
  } finally {
    d.close();
  }
});

Deno.test("service router: the agent takes inner channels only through a gateway's channel", async () => {
  const d = await deployment();
  try {
    // Straight to the agent's inner listener (as from a relay connection).
    const direct = link(d.edge, d.agent).toB;
    await assert.rejects(
      connectSecureChannel({
        node: d.edge,
        route: [direct, INNER_LISTENER],
        local: await member(d.ca.identity, { role: "edge", customer_id: CUSTOMER }),
        policy: { trust: d.ca.trust },
        handshakeTimeoutMs: 300,
      }),
      (e: unknown) => e instanceof HandshakeError && e.code === "timeout",
    );
    assert.equal(d.inner.failures.get("not_accepted"), 1);
  } finally {
    d.close();
  }
});
