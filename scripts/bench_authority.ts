/**
 * Credential authority throughput with SoftHSM2 (a fresh token in a
 * temporary directory):
 *
 * - HSM signatures per second alone (CKM_EDDSA through graphene-pk11), with
 *   a software Ed25519 signer measured in the same run as the baseline;
 * - credentials issued per second end to end: the authority service runs as
 *   its own process (`authority serve`); this process enrolls 16 members,
 *   each over its own TCP connection, and has each request fresh credentials
 *   over its secure channel, as fast as the authority answers; and the CPU
 *   time (user + system, from /proc) each credential cost the authority
 *   process and this one, which other load on the machine moves far less
 *   than the rates.
 *
 * Usage: deno task bench:authority [--seconds N] [--members N] [--cpu-prof DIR]
 *
 * `--cpu-prof DIR` runs `authority serve` under `deno run --cpu-prof`, so
 * its V8 CPU profile (the whole run: start, enrollments, refreshes) lands in
 * DIR as a `.cpuprofile` file when the service stops.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { HsmSession } from "../hsm/pkcs11_signer.ts";
import { createSoftHsmToken } from "../hsm/testing/softhsm.ts";
import { AuthorityClient } from "../src/authority_client/authority_client.ts";
import { createChannelIdentity } from "../src/channel/channel_identity.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { readIdentityFile } from "../src/identity/identity_file.ts";
import { Identity } from "../src/identity/identity.ts";
import { SoftwareSigner } from "../src/identity/software_signer.ts";
import { Node } from "../src/routing/node.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import { readBanner } from "./support/banner.ts";
import { cpuSeconds } from "./support/process_usage.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    members: { type: "string", default: "16" },
    "cpu-prof": { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log("Usage: deno task bench:authority [--seconds N] [--members N] [--cpu-prof DIR]");
  Deno.exit(0);
}
const seconds = Number(values.seconds);
const members = Number(values.members);
if (!(seconds > 0) || !Number.isSafeInteger(members) || members < 1) {
  throw new RangeError("--seconds must be positive and --members a positive integer");
}
const profile = values["cpu-prof"];
const progress = (line: string) => console.error(`[bench] ${line}`);
const root = new URL("../", import.meta.url).pathname;

const token = await createSoftHsmToken();
const state = `.state/bench-authority-${crypto.randomUUID()}`;
Deno.env.set("SOFTHSM2_CONF", token.conf);
try {
  // 1. Signatures alone.
  progress(`HSM signatures for ${seconds} s`);
  const session = HsmSession.open(token);
  const hsmKey = session.generateKey({ label: "bench", id: "ff" });
  const software = await SoftwareSigner.generate();
  const message = new Uint8Array(300).fill(7);
  const rate = async (sign: (m: Uint8Array) => Promise<Uint8Array>) => {
    let n = 0;
    const until = performance.now() + seconds * 1000 / 2;
    while (performance.now() < until) {
      await sign(message);
      n++;
    }
    return n / (seconds / 2);
  };
  const hsmRate = await rate((m) => hsmKey.sign(m));
  const softwareRate = await rate((m) => software.sign(m));
  session.close();

  // 2. Credentials end to end.
  const cli = (args: string[], runFlags: string[] = []) =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-q",
        "--no-prompt",
        "-P=authority",
        ...runFlags,
        "authority/main.ts",
        ...args,
        "--state",
        state,
        "--hsm-module",
        token.modulePath,
        "--hsm-token",
        token.tokenLabel,
        "--pin-env",
        "NEXUS_HSM_PIN",
      ],
      cwd: root,
      env: { SOFTHSM2_CONF: token.conf, NEXUS_HSM_PIN: token.pin },
      stdout: "piped",
      stderr: "inherit",
    });
  progress("authority init and serve");
  if ((await cli(["init"]).output()).code !== 0) throw new Error("init failed");
  // No ops endpoint: its fixed default port may be taken by another run.
  const server = cli(
    ["serve", "--listen", "127.0.0.1:0", "--metrics", "off"],
    profile === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${profile}`],
  ).spawn();
  const port = (await readBanner(server)).port;
  const trust = new TrustStore([await readIdentityFile(`${root}${state}/authority.identity.json`)]);
  const node = new Node();
  const transport = new TcpTransport(node);
  progress(`enrolling ${members} members`);
  const clients = await Promise.all(Array.from({ length: members }, async () => {
    const ticket = JSON.parse(
      new TextDecoder().decode(
        (await cli(["ticket", "create", "--attr", "role=edge", "--json"]).output()).stdout,
      ),
    ).ticket as string;
    const identity = await Identity.create(await SoftwareSigner.generate());
    // A connection per member, as members connect: the authority closes a
    // connection that carries more than a few channels (connection_guard.ts).
    const conn = await transport.connect({ hostname: "127.0.0.1", port });
    const client = await AuthorityClient.connect({
      node,
      route: [conn.address],
      local: await createChannelIdentity(identity),
      trust,
    });
    await client.enroll({ ticket });
    return client;
  }));
  progress(`credential refreshes for ${seconds} s, ${members} members at once`);
  let issued = 0;
  const cpuBefore = await Promise.all([cpuSeconds(server.pid), cpuSeconds(Deno.pid)]);
  const until = performance.now() + seconds * 1000;
  await Promise.all(clients.map(async (client) => {
    while (performance.now() < until) {
      await client.credential();
      issued++;
    }
  }));
  const cpuAfter = await Promise.all([cpuSeconds(server.pid), cpuSeconds(Deno.pid)]);
  const endToEnd = issued / seconds;
  // CPU per credential: steadier than the rate on a shared machine, which
  // other processes' load moves a lot.
  const [serverCpu, clientCpu] = cpuAfter.map((after, i) =>
    (after - cpuBefore[i]) * 1e6 / Math.max(issued, 1)
  );
  for (const client of clients) await client.close();
  await transport.close();
  server.kill("SIGTERM");
  await server.status;
  await server.stdout.cancel().catch(() => {});

  console.log("| measure | per second | baseline in the same run |");
  console.log("| --- | --- | --- |");
  console.log(
    `| HSM Ed25519 signatures (SoftHSM2, CKM_EDDSA) | ${
      hsmRate.toFixed(0)
    } | software Ed25519 signer: ${softwareRate.toFixed(0)} (${
      (hsmRate / softwareRate).toFixed(2)
    }×) |`,
  );
  console.log(
    `| credentials issued end to end over secure channels | ${
      endToEnd.toFixed(0)
    } | HSM signatures alone: ${hsmRate.toFixed(0)} (${(endToEnd / hsmRate).toFixed(2)}×) |`,
  );
  console.log(
    `\nCPU per credential (user + system, over the refreshes): authority process ${
      serverCpu.toFixed(0)
    } µs, this process (the ${members} members) ${clientCpu.toFixed(0)} µs`,
  );
} finally {
  await Deno.remove(`${root}${state}`, { recursive: true }).catch(() => {});
  await token.remove();
}
