/**
 * The relay follows the real authority: an authority process (SoftHSM2
 * token), a relay process subscribed to it with --authority, a member
 * admitted at the relay; `authority revoke` cuts the member's relay
 * connection. The time from the revoke command to the closed connection is
 * measured and printed.
 */
import assert from "node:assert/strict";
import { AuthorityClient } from "../src/authority_client/authority_client.ts";
import { createChannelIdentity } from "../src/channel/channel_identity.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { readIdentityFile } from "../src/identity/identity_file.ts";
import { Identity } from "../src/identity/identity.ts";
import { SoftwareSigner } from "../src/identity/software_signer.ts";
import { connectRelay } from "../src/relay_client/relay_client.ts";
import { Node } from "../src/routing/node.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import { eventually } from "../src/testdata/channel_fixtures.ts";
import { authorityFixture, statePath } from "../scripts/support/authority_process.ts";
import { readBanner } from "../scripts/support/banner.ts";
import { freePort } from "../scripts/support/free_port.ts";

Deno.test("relay + authority processes: a revoked member's relay connection is cut", async () => {
  const fixture = await authorityFixture();
  const root = new URL("..", import.meta.url).pathname;
  let relay: Deno.ChildProcess | null = null;
  let authority: Awaited<ReturnType<typeof fixture.serve>> | null = null;
  const node = new Node({ name: "member" });
  const transport = new TcpTransport(node);
  try {
    assert.equal((await fixture.run(["init"])).code, 0);
    authority = await fixture.serve();
    relay = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-q",
        "--no-prompt",
        "-P=relay",
        "relay/main.ts",
        ...await fixture.relayArgs(freePort(), authority.port),
        "--metrics",
        "off",
      ],
      cwd: root,
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const relayPort = (await readBanner(relay)).port;

    // Enroll a member at the authority, then join the relay with its credential.
    const trust = new TrustStore([
      await readIdentityFile(statePath(fixture, "authority.identity.json")),
    ]);
    const identity = await Identity.create(await SoftwareSigner.generate());
    const toAuthority = await transport.connect({ hostname: "127.0.0.1", port: authority.port });
    const client = await AuthorityClient.connect({
      node,
      route: [toAuthority.address],
      local: await createChannelIdentity(identity),
      trust,
    });
    const ticket =
      JSON.parse((await fixture.run(["ticket", "create", "--attr", "role=edge", "--json"])).stdout)
        .ticket;
    const credential = await client.enroll({ ticket });
    await client.close();
    const joined = await connectRelay({
      transport,
      hostname: "127.0.0.1",
      port: relayPort,
      identity,
      credential: credential.encoded,
      trust,
    });
    let closedAt = 0;
    joined.connection.closed.then(() => closedAt = performance.now());
    // Give the relay's subscription a moment to be in place.
    await new Promise((r) => setTimeout(r, 300));
    const started = performance.now();
    const revoke = await fixture.run(["revoke", identity.identifier]);
    assert.equal(revoke.code, 0, revoke.stderr);
    await eventually(() => closedAt > 0, 10_000);
    const ms = closedAt - started;
    console.log(`revoke command to closed relay connection: ${ms.toFixed(0)} ms`);
    assert.ok(ms < 5000, `took ${ms} ms`);
  } finally {
    await transport.close();
    relay?.kill("SIGTERM");
    await relay?.status;
    await relay?.stdout.cancel().catch(() => {});
    await authority?.stop();
    await fixture.remove();
  }
});
