/**
 * The edge's choice of gateway (edge.ts `gatewayPolicy`), over a real
 * in-memory secure channel: an alias at a relay is only a name, so the
 * edge must refuse a gateway of another customer, or no gateway at all,
 * that answers for it. The edge as a process is tests/edge_test.ts.
 */
import assert from "node:assert/strict";
import { connectSecureChannel, listenSecureChannels } from "../src/channel/handshake.ts";
import { HandshakeError } from "../src/errors.ts";
import { Node } from "../src/routing/node.ts";
import { authority, link, member } from "../src/testdata/channel_fixtures.ts";
import { gatewayPolicy } from "./edge.ts";

async function connectAs(attributes: Record<string, unknown>, pinned?: string) {
  const ca = await authority();
  const a = new Node({ name: "edge" });
  const b = new Node({ name: "gateway" });
  const { toB } = link(a, b);
  const responder = await member(ca.identity, attributes);
  const listener = listenSecureChannels({
    node: b,
    address: "api",
    local: responder,
    policy: { trust: ca.trust },
  });
  try {
    const channel = await connectSecureChannel({
      node: a,
      route: [toB, "api"],
      local: await member(ca.identity, { role: "edge", customer_id: "cust_001" }),
      policy: gatewayPolicy(
        { alias: "gw-cust-001", customerId: "cust_001", identifier: pinned },
        ca.trust,
      ),
      handshakeTimeoutMs: 2000,
    });
    channel.close("done");
    return responder.identity.identifier;
  } finally {
    listener.close({ closeChannels: true });
  }
}

Deno.test("edge: its own customer's gateway is taken", async () => {
  assert.match(await connectAs({ role: "gateway", customer_id: "cust_001" }), /^I/);
});

Deno.test("edge: another customer's gateway behind the alias is refused", async () => {
  await assert.rejects(
    connectAs({ role: "gateway", customer_id: "cust_002" }),
    (e: unknown) => e instanceof HandshakeError && e.code === "missing_attribute",
  );
});

Deno.test("edge: a member of its own customer that is no gateway is refused", async () => {
  await assert.rejects(
    connectAs({ role: "edge", customer_id: "cust_001" }),
    (e: unknown) => e instanceof HandshakeError && e.code === "missing_attribute",
  );
});

Deno.test("edge: a pinned gateway identifier is enforced", async () => {
  await assert.rejects(
    connectAs({ role: "gateway", customer_id: "cust_001" }, "I" + "00".repeat(32)),
    (e: unknown) => e instanceof HandshakeError && e.code === "not_pinned",
  );
});
