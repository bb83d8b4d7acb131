/**
 * Channel attestations are renewed while processes run (docs/design.md §2,
 * §4; the member runtime, src/member/): an authority, a relay, a gateway
 * and an edge, each a real process, run with 4-second attestations for
 * about four lifetimes. Throughout:
 *
 * - every new handshake with the gateway and with the authority finds an
 *   attestation that is valid *now* (no clock skew allowed in this check),
 *   made from a fresh static key each lifetime;
 * - the edge's channel to the gateway, opened at the start, stays open,
 *   and an HTTP keep-alive connection through it keeps answering;
 * - the edge's metric of its attestation's expiry moves forward.
 *
 * Without renewal, each process would present its first attestation
 * after it expired and these checks would fail after four seconds.
 */
import assert from "node:assert/strict";
import { AuthorityClient } from "../src/authority_client/authority_client.ts";
import { createChannelIdentity } from "../src/channel/channel_identity.ts";
import { toHex } from "../src/encoding/hex.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { readIdentityFile } from "../src/identity/identity_file.ts";
import { Identity } from "../src/identity/identity.ts";
import { SoftwareSigner } from "../src/identity/software_signer.ts";
import { Node } from "../src/routing/node.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import { freePort } from "../scripts/support/free_port.ts";
import { spawnDeno } from "../scripts/support/service_process.ts";
import { authorityFixture } from "../scripts/support/authority_process.ts";
import { startTestEdge } from "./support/test_edge.ts";

const root = new URL("..", import.meta.url).pathname;
const TTL = 4;
const ALIAS = "gw-renewal";
const CUSTOMER = "cust_renewal";

async function ticket(
  fixture: Awaited<ReturnType<typeof authorityFixture>>,
  ...attrs: string[]
): Promise<string> {
  const out = await fixture.run([
    "ticket",
    "create",
    "--json",
    ...attrs.flatMap((a) => ["--attr", a]),
  ]);
  assert.equal(out.code, 0, out.stderr);
  return JSON.parse(out.stdout).ticket;
}

async function metric(address: string, name: string): Promise<number> {
  const text = await (await fetch(`http://${address}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  assert.ok(line, `no ${name} at ${address}`);
  return Number(line.split(" ")[1]);
}

/** One HTTP/1.1 request on an open connection; the response's body. */
async function request(conn: Deno.Conn, path: string): Promise<string> {
  await conn.write(new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`));
  const buffer = new Uint8Array(4096);
  let text = "";
  while (!/\r\n\r\n[\s\S]*\n$/.test(text)) {
    const n = await conn.read(buffer);
    if (n === null) throw new Error(`connection closed after: ${text}`);
    text += new TextDecoder().decode(buffer.subarray(0, n));
  }
  return text.slice(text.indexOf("\r\n\r\n") + 4);
}

Deno.test({
  name: "attestations: authority, relay, gateway and edge renew theirs while channels stay open",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fixture = await authorityFixture();
    const dir = `.state/test-renewal-${crypto.randomUUID()}`;
    await Deno.mkdir(`${root}${dir}`, { recursive: true });
    const cleanup: (() => Promise<unknown> | unknown)[] = [];
    try {
      assert.equal((await fixture.run(["init"])).code, 0);
      const authority = await fixture.serve(["--attestation-ttl", `${TTL}s`]);
      cleanup.push(() => authority.stop());
      const trustFile = `${fixture.state}/authority.identity.json`;
      const authorityAddress = `127.0.0.1:${authority.port}`;

      const relay = spawnDeno("the relay", [
        "-P=relay",
        "relay/main.ts",
        ...await fixture.relayArgs(freePort(), authority.port),
        "--metrics",
        "off",
        "--attestation-ttl",
        String(TTL),
      ]);
      cleanup.push(() => relay.stop());
      const relayPort = Number((await relay.waitFor(/^LISTENING /)).split(" ")[1].split(":")[1]);

      const backend = Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen() {} },
        (req) => new Response(`served ${new URL(req.url).pathname}\n`),
      );
      cleanup.push(() => backend.shutdown());

      const gatewayTicketFile = `${dir}/gateway.json`;
      await Deno.writeTextFile(
        `${root}${gatewayTicketFile}`,
        JSON.stringify({
          stateDir: `${dir}/gateway`,
          authority: { identityFile: trustFile, address: authorityAddress },
          relays: [`127.0.0.1:${relayPort}`],
          alias: ALIAS,
          customerId: CUSTOMER,
          ticket: await ticket(
            fixture,
            "role=gateway",
            `customer_id=${CUSTOMER}`,
            `relay=${ALIAS}`,
          ),
          outlets: [{
            name: "web",
            backend: `127.0.0.1:${backend.addr.port}`,
            policy: 'subject.role == "edge"',
          }],
          ops: "127.0.0.1:0",
          shutdownGraceMs: 500,
          attestationTtlSeconds: TTL,
        }),
      );
      const gateway = spawnDeno("the gateway", [
        "-P=gateway",
        "gateway/main.ts",
        "run",
        "--config",
        gatewayTicketFile,
      ]);
      cleanup.push(() => gateway.stop());
      await gateway.waitFor(/\bREADY\b/);

      await Deno.writeTextFile(
        `${root}${dir}/edge.ticket`,
        await ticket(fixture, "role=edge", `customer_id=${CUSTOMER}`),
        { mode: 0o600 },
      );
      await Deno.writeTextFile(
        `${root}${dir}/edge.json`,
        JSON.stringify({
          stateDir: `${dir}/edge`,
          authority: { identityFile: trustFile, address: authorityAddress },
          relays: [`127.0.0.1:${relayPort}`],
          gateway: { alias: ALIAS, customerId: CUSTOMER },
          ticketFile: `${dir}/edge.ticket`,
          inlets: [{ listen: "127.0.0.1:0", outlet: "web" }],
          ops: "127.0.0.1:0",
          attestationTtlSeconds: TTL,
        }),
      );
      // Port 0 for the inlet and ops: the edge's own set lists fixed ports,
      // so the test grants loopback (and its files) explicitly.
      const edge = spawnDeno("the edge", [
        "-P=edge",
        "--allow-net=127.0.0.1",
        "edge/main.ts",
        "run",
        "--config",
        `${dir}/edge.json`,
      ]);
      cleanup.push(() => edge.stop());
      const ready = await edge.waitFor(/\bREADY\b/);
      const inlet = ready.match(/inlets=(\S+)/)![1];
      const edgeOps = ready.match(/metrics=(\S+)/)![1];
      const [inletHost, inletPort] = inlet.split(":");

      // A keep-alive connection through the edge's first channel.
      const conn = await Deno.connect({ hostname: inletHost, port: Number(inletPort) });
      cleanup.push(() => conn.close());
      assert.equal(await request(conn, "/first"), "served /first\n");
      const firstExpiry = await metric(edgeOps, "nexus_edge_attestation_expiry_seconds");

      // A client of the gateway and of the authority, handshaking again and again.
      const probe = await startTestEdge({
        name: "probe",
        authorityIdentityFile: `${root}${trustFile}`,
        authorityPort: authority.port,
        relayPort,
        ticket: await ticket(fixture, "role=edge", `customer_id=${CUSTOMER}`),
      });
      cleanup.push(() => probe.close());
      const trust = new TrustStore([await readIdentityFile(`${root}${trustFile}`)]);
      const node = new Node({ name: "authority-probe" });
      const transport = new TcpTransport(node);
      cleanup.push(() => transport.close());
      const local = await createChannelIdentity(
        await Identity.create(await SoftwareSigner.generate()),
      );

      const seen = { gateway: new Set<string>(), authority: new Set<string>() };
      const started = Date.now();
      while (Date.now() - started < 4 * TTL * 1000) {
        const now = Date.now() / 1000;
        const channel = await probe.connectGateway({
          alias: ALIAS,
          requiredAttributes: { role: "gateway", customer_id: CUSTOMER },
        });
        const gw = channel.peer.attestation;
        assert.ok(
          gw.expiresAt >= now,
          `the gateway presented an expired attestation (${gw.expiresAt} < ${now})`,
        );
        seen.gateway.add(toHex(gw.publicKey));
        await channel.close("probe done");

        const conn = await transport.connect({ hostname: "127.0.0.1", port: authority.port });
        const client = await AuthorityClient.connect({ node, route: [conn.address], local, trust });
        const au = client.channel.peer.attestation;
        assert.ok(
          au.expiresAt >= now,
          `the authority presented an expired attestation (${au.expiresAt} < ${now})`,
        );
        seen.authority.add(toHex(au.publicKey));
        await client.close();
        conn.connection.close("probe done");
        await new Promise((resolve) => setTimeout(resolve, 700));
      }
      console.log(
        `over ${
          4 * TTL
        } s: gateway static keys ${seen.gateway.size}, authority static keys ${seen.authority.size}`,
      );
      assert.ok(seen.gateway.size >= 4, `the gateway renewed ${seen.gateway.size - 1} times`);
      assert.ok(seen.authority.size >= 4, `the authority renewed ${seen.authority.size - 1} times`);

      // The edge's first channel is still the one it uses, and still carries requests.
      assert.equal(await request(conn, "/after-renewals"), "served /after-renewals\n");
      assert.equal(await metric(edgeOps, "nexus_edge_path_changes_total"), 1);
      const expiry = await metric(edgeOps, "nexus_edge_attestation_expiry_seconds");
      assert.ok(
        expiry >= firstExpiry + 2 * TTL,
        `edge attestation expiry ${firstExpiry} -> ${expiry}`,
      );
      for (
        const [name, service] of [["gateway", gateway], ["relay", relay], ["edge", edge]] as const
      ) {
        const renewals = service.stderr.lines.filter((l) => /channel attestation renewed/.test(l));
        assert.ok(
          renewals.length >= 3,
          `${name}: ${renewals.length} renewals\n${service.stderr.text(20)}`,
        );
      }
    } finally {
      for (const step of cleanup.reverse()) await Promise.resolve(step()).catch(() => {});
      await fixture.remove();
      await Deno.remove(`${root}${dir}`, { recursive: true }).catch(() => {});
    }
  },
});
