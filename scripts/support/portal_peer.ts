/**
 * A portal end in its own process, for cross-process tests and benchmarks
 * (tests/portal_backpressure_test.ts, scripts/bench_portal.ts), so that its
 * resident memory and CPU can be measured apart from the others.
 *
 * - `gateway`: a node with a TCP transport, one admitted connection to the
 *   relay (connectRelay), the alias `gw` registered on it (registerAlias),
 *   secure channels accepted at `api` (listenSecureChannels) and one outlet
 *   per `--outlet NAME=PORT` (createOutlet to 127.0.0.1:PORT, admitting
 *   members with `role == "edge"`). Prints `READY`.
 * - `edge`: a node with a TCP transport, one admitted connection to the
 *   relay, one secure channel along `[relay connection, "forward.gw",
 *   "api"]` (connectSecureChannel; the gateway must have a `role ==
 *   "gateway"` credential) and one inlet per `--inlet NAME` (createInlet on
 *   127.0.0.1:0, routed to `outlet.NAME`). Prints `READY {"NAME": port, …}`.
 *
 * Both run until stdin closes, then print `STATS {…}` (portal and channel
 * counters, messages the node dropped) and exit.
 *
 * Member files, in `--dir` (written by ./portal_harness.ts's writeDeploymentFiles):
 * `authority.json` (the trust anchor), `<mode>.json` (the member's
 * identity), `<mode>.seed` (its Ed25519 seed, hex), `<mode>.credential`
 * (its credential, hex).
 *
 * Usage: portal_peer.ts gateway|edge --dir DIR --relay PORT
 *          [--outlet NAME=PORT]… [--inlet NAME]… [--window BYTES]
 *
 * Permissions: --allow-read=DIR --allow-net=127.0.0.1.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type SecureChannel } from "../../src/channel/secure_channel.ts";
import { createChannelIdentity } from "../../src/channel/channel_identity.ts";
import { connectSecureChannel, listenSecureChannels } from "../../src/channel/handshake.ts";
import { TrustStore } from "../../src/credential/trust_store.ts";
import { fromHex } from "../../src/encoding/hex.ts";
import { Identity } from "../../src/identity/identity.ts";
import { readIdentityFile } from "../../src/identity/identity_file.ts";
import { SoftwareSigner } from "../../src/identity/software_signer.ts";
import { createLogger } from "../../src/log.ts";
import { parsePolicy } from "../../src/policy/mod.ts";
import { createInlet, createOutlet, type Inlet, type Outlet } from "../../src/portal/portal.ts";
import { connectRelay, registerAlias } from "../../src/relay_client/mod.ts";
import { Node } from "../../src/routing/node.ts";
import { TcpTransport } from "../../src/transport/tcp_transport.ts";

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    dir: { type: "string" },
    relay: { type: "string" },
    outlet: { type: "string", multiple: true, default: [] },
    inlet: { type: "string", multiple: true, default: [] },
    window: { type: "string" },
  },
});
const mode = positionals[0];
if ((mode !== "gateway" && mode !== "edge") || !values.dir || !values.relay) {
  console.error("usage: portal_peer.ts gateway|edge --dir DIR --relay PORT …");
  Deno.exit(2);
}
const dir = values.dir;
const window = values.window === undefined ? undefined : Number(values.window);
const logger = createLogger({ component: `portal-${mode}`, level: "warn" });

const anchor = await readIdentityFile(`${dir}/authority.json`);
const trust = new TrustStore([anchor]);
const mine = await readIdentityFile(`${dir}/${mode}.json`);
const seed = fromHex((await Deno.readTextFile(`${dir}/${mode}.seed`)).trim());
const identity = await Identity.fromHistory(mine.history, await SoftwareSigner.fromSeed(seed));
seed.fill(0);
const credential = fromHex((await Deno.readTextFile(`${dir}/${mode}.credential`)).trim());
const local = await createChannelIdentity(identity, { credentials: () => [credential] });

const node = new Node({ name: mode, logger });
const transport = new TcpTransport(node, { logger });
const relay = await connectRelay({
  transport,
  hostname: "127.0.0.1",
  port: Number(values.relay),
  identity,
  credential,
  trust,
});

const outlets: Outlet[] = [];
const inlets = new Map<string, Inlet>();
let channel: SecureChannel | null = null;
let stopListening = () => {};
if (mode === "gateway") {
  const listener = listenSecureChannels({
    node,
    address: "api",
    local,
    policy: { trust, requiredAttributes: { role: "edge" } },
    logger,
  });
  stopListening = () => listener.close({ closeChannels: true });
  for (const spec of values.outlet) {
    const [name, port] = spec.split("=");
    outlets.push(createOutlet({
      node,
      name,
      backend: { hostname: "127.0.0.1", port: Number(port) },
      policy: parsePolicy('subject.role == "edge"'),
      window,
      logger,
    }));
  }
  await registerAlias(node, relay.address, "gw");
  console.log("READY");
} else {
  const open = await connectSecureChannel({
    node,
    route: [relay.address, "forward.gw", "api"],
    local,
    policy: { trust, requiredAttributes: { role: "gateway" } },
    logger,
  });
  channel = open;
  for (const name of values.inlet) {
    inlets.set(
      name,
      createInlet({
        node,
        listen: { hostname: "127.0.0.1", port: 0 },
        route: () => [open.address, `outlet.${name}`],
        window,
        logger,
      }),
    );
  }
  console.log(
    `READY ${JSON.stringify(Object.fromEntries([...inlets].map(([n, i]) => [n, i.addr.port])))}`,
  );
}

for await (const _ of Deno.stdin.readable) { /* run until stdin closes */ }

console.log(`STATS ${
  JSON.stringify({
    dropped: node.dropped,
    relayClosed: relay.connection.isClosed,
    channel: channel?.stats ?? null,
    outlets: outlets.map((o) => o.stats),
    inlets: Object.fromEntries([...inlets].map(([n, i]) => [n, i.stats])),
  })
}`);
for (const inlet of inlets.values()) inlet.close();
for (const outlet of outlets) outlet.close();
stopListening();
await channel?.close();
await transport.close();
Deno.exit(0);
