/**
 * The authority service in this process (a fresh SoftHSM2 token), under
 * concurrent refreshes: every credential is signed, recorded once and
 * audited in one chain that verifies, the records going to the store in
 * batches (group commit), and each member's key recorded once.
 */
import assert from "node:assert/strict";
import { createSoftHsmToken } from "../hsm/testing/softhsm.ts";
import { AuthorityClient } from "../src/authority_client/authority_client.ts";
import { createChannelIdentity } from "../src/channel/channel_identity.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { Identity } from "../src/identity/identity.ts";
import { SoftwareSigner } from "../src/identity/software_signer.ts";
import { Node } from "../src/routing/node.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import { initAuthority } from "./ceremony.ts";
import { startAuthority } from "./service.ts";

const token = await createSoftHsmToken();
Deno.env.set("SOFTHSM2_CONF", token.conf);
globalThis.addEventListener("unload", () => Deno.removeSync(token.dir, { recursive: true }));

Deno.test("service: concurrent refreshes are each signed, recorded once and audited in one verifying chain", async () => {
  const stateDir = await Deno.makeTempDir({ prefix: "nexus-authority-service-test-" });
  const hsm = { modulePath: token.modulePath, tokenLabel: token.tokenLabel, pin: token.pin };
  const ceremony = await initAuthority({ stateDir, hsm });
  ceremony.session.close();
  const running = await startAuthority({ stateDir, hsm, hostname: "127.0.0.1", port: 0 });
  const node = new Node({ name: "members" });
  const transport = new TcpTransport(node);
  const trust = new TrustStore([running.identity]);
  try {
    const members = await Promise.all(Array.from({ length: 8 }, async () => {
      const identity = await Identity.create(await SoftwareSigner.generate());
      const conn = await transport.connect({ hostname: "127.0.0.1", port: running.addr.port });
      const client = await AuthorityClient.connect({
        node,
        route: [conn.address],
        local: await createChannelIdentity(identity),
        trust,
      });
      const { secret } = await running.store.createTicket({
        attributes: { role: "edge" },
        ttlSeconds: 600,
      });
      const enrolled = await client.enroll({ ticket: secret });
      return { identity, client, ids: [enrolled.id] };
    }));
    const rounds = 5;
    await Promise.all(members.map(async (member) => {
      for (let i = 0; i < rounds; i++) {
        const credential = await member.client.credential();
        assert.equal(credential.subject, member.identity.identifier);
        member.ids.push(credential.id);
      }
    }));
    const ids = members.flatMap((member) => member.ids);
    const issued = members.length * (rounds + 1);
    assert.equal(new Set(ids).size, issued, "every credential has its own id");
    assert.equal(running.stats.credentials, issued);
    for (const id of ids) assert.ok(await running.store.credentialSubject(id) !== null, id);

    // Every record went through the batches, none of which failed.
    const batches = running.store.credentialBatches;
    assert.equal(batches.items, issued);
    assert.equal(batches.failed, 0);
    assert.ok(batches.batches >= 1 && batches.batches <= issued);

    // One chain: each credential audited once, each member's key once.
    const verified = await running.store.verifyAudit();
    assert.ok(verified.ok, JSON.stringify(verified));
    const entries = await running.store.auditEntries();
    const audited = entries.filter((e) => e.kind.startsWith("credential.")).map((e) => e.data.id);
    assert.deepEqual([...audited].sort(), [...ids].sort());
    const keys = entries.filter((e) => e.kind === "member.key").map((e) => e.data.identifier);
    assert.deepEqual(
      [...keys].sort(),
      members.map((member) => member.identity.identifier).sort(),
      "a member's key is recorded once, not at each refresh",
    );

    for (const member of members) await member.client.close().catch(() => {});
  } finally {
    await transport.close();
    await running.close();
    await Deno.remove(stateDir, { recursive: true });
  }
});
