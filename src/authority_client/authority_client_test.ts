/**
 * The authority client takes replies only through its own channel: a
 * forged answer delivered to its reply worker another way (straight onto
 * its node, or through another secure channel) is ignored, and the real
 * one still counts. The authority here is an in-process stand-in holding
 * the trusted identity; the real service is tests/authority_test.ts.
 */
import assert from "node:assert/strict";
import { createChannelIdentity } from "../channel/channel_identity.ts";
import { connectSecureChannel, listenSecureChannels } from "../channel/handshake.ts";
import { Node } from "../routing/node.ts";
import type { Route } from "../routing/routed_message.ts";
import { authority, eventually, link, member } from "../testdata/channel_fixtures.ts";
import { AuthorityClient } from "./authority_client.ts";
import {
  AUTHORITY_API,
  AUTHORITY_LISTENER,
  decodeRequest,
  encodeError,
  encodeResult,
} from "./protocol.ts";

Deno.test("authority client: a forged reply that does not come through its channel is ignored", async () => {
  const ca = await authority();
  const a = new Node({ name: "member" });
  const b = new Node({ name: "authority" });
  const { toB } = link(a, b);
  listenSecureChannels({
    node: b,
    address: AUTHORITY_LISTENER,
    local: await createChannelIdentity(ca.identity),
    policy: { trust: ca.trust, requireCredential: false },
  });
  // The stand-in answers after a pause, long enough for the forgeries below.
  const asked = Promise.withResolvers<{ id: number; back: Route }>();
  b.register(AUTHORITY_API, async (message) => {
    const request = decodeRequest(message.payload);
    asked.resolve({ id: request.id, back: message.return });
    await new Promise((resolve) => setTimeout(resolve, 200));
    await b.route({
      onward: message.return,
      return: [AUTHORITY_API],
      payload: encodeResult(request.id, { list: null, history: ca.identity.history.encoded }),
    });
  });
  const client = await AuthorityClient.connect({
    node: a,
    route: [toB],
    local: await createChannelIdentity((await member(ca.identity, { role: "edge" })).identity),
    trust: ca.trust,
  });
  // A second channel on the member's node, from a peer the member trusts as
  // much as any other: its messages are authentic, but not the authority's.
  const c = new Node({ name: "other" });
  const toA = link(c, a).toB;
  listenSecureChannels({
    node: a,
    address: "inbox",
    local: await member(ca.identity, { role: "edge" }),
    policy: { trust: ca.trust },
  });
  const other = await connectSecureChannel({
    node: c,
    route: [toA, "inbox"],
    local: await member(ca.identity, { role: "gateway" }),
    policy: { trust: ca.trust },
  });
  try {
    const answer = client.revocations();
    const { id, back } = await asked.promise;
    const replyWorker = back[back.length - 1];
    const forged = encodeError(id, "member_revoked", "forged");
    // Straight onto the member's node, as a transport or relay could deliver it.
    await a.route({ onward: [replyWorker], return: [], payload: forged });
    // Through another channel.
    await other.send([replyWorker], forged);
    assert.equal(await answer, null);
  } finally {
    other.close("done");
    await client.close();
    await eventually(() => client.channel.isClosed);
  }
});
