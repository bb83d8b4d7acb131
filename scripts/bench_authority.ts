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
 * With `--postgres`, the same measure twice more in the same run, on a
 * PostgreSQL server of its own (Debian's `postgresql`, as the tests start
 * it): one `authority serve` on it, then three replicas sharing it, the
 * members spread over them (the replicas' CPU is summed).
 *
 * Usage: deno task bench:authority [--seconds N] [--members N] [--postgres] [--cpu-prof DIR]
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
import { serviceV8Flag } from "../src/config/runtime_flags.ts";
import { AuthorityStore } from "../authority/store.ts";
import { type PostgresServer, startPostgres } from "../tests/support/postgres.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    members: { type: "string", default: "16" },
    "cpu-prof": { type: "string" },
    postgres: { type: "boolean", default: false },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log(
    "Usage: deno task bench:authority [--seconds N] [--members N] [--postgres] [--cpu-prof DIR]",
  );
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
const serviceFlags = [serviceV8Flag()];
const tokens = [token];
let postgres: PostgresServer | null = null;
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

  // 2. Credentials end to end, for each store: SQLite, and with
  // --postgres one and three replicas sharing one PostgreSQL database.
  // A token per run (a fresh key: each run is its own authority).
  const cli = (stateDir: string, args: string[], runFlags: string[] = [], hsm = token) =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-q",
        "--no-prompt",
        "-P=authority",
        ...serviceFlags,
        ...runFlags,
        "authority/main.ts",
        ...args,
        "--state",
        stateDir,
        "--hsm-module",
        hsm.modulePath,
        "--hsm-token",
        hsm.tokenLabel,
        "--pin-env",
        "NEXUS_HSM_PIN",
      ],
      cwd: root,
      env: { SOFTHSM2_CONF: hsm.conf, NEXUS_HSM_PIN: hsm.pin },
      stdout: "piped",
      stderr: "inherit",
    });
  const runs: { label: string; database?: string; replicas: number }[] = [
    { label: "SQLite, one authority", replicas: 1 },
  ];
  if (values.postgres) {
    postgres = await startPostgres({ settings: { max_connections: "100" } });
    for (const replicas of [1, 3]) {
      const name = `bench${replicas}`;
      await postgres.psql(`CREATE DATABASE ${name}`);
      runs.push({
        label: `PostgreSQL, ${replicas} replica${replicas > 1 ? "s" : ""}`,
        database: `postgresql://${postgres.user}@127.0.0.1:${postgres.port}/${name}`,
        replicas,
      });
    }
  }
  const results: { label: string; rate: number; serverCpu: number; clientCpu: number }[] = [];
  for (const [i, run] of runs.entries()) {
    const stateDir = `${state}-${i}`;
    const hsm = i === 0 ? token : await createSoftHsmToken();
    if (i > 0) tokens.push(hsm);
    const authority = (args: string[], runFlags: string[] = []) =>
      cli(stateDir, args, runFlags, hsm);
    const database = run.database === undefined ? [] : ["--database", run.database];
    progress(`${run.label}: authority init and serve`);
    const init = await authority(["init", ...database]).output();
    if (init.code !== 0) throw new Error("init failed");
    // No ops endpoint: its fixed default port may be taken by another run.
    const servers = Array.from({ length: run.replicas }, () =>
      authority(
        ["serve", "--listen", "127.0.0.1:0", "--metrics", "off", ...database],
        profile === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${profile}`],
      ).spawn());
    const ports = await Promise.all(servers.map(async (server) => (await readBanner(server)).port));
    const trust = new TrustStore([
      await readIdentityFile(`${root}${stateDir}/authority.identity.json`),
    ]);
    const node = new Node();
    const transport = new TcpTransport(node);
    progress(`${run.label}: enrolling ${members} members`);
    // Tickets straight from the store (one process, not one CLI run per member).
    const store = await AuthorityStore.open(run.database ?? `${root}${stateDir}/authority.db`);
    const tickets: string[] = [];
    for (let m = 0; m < members; m++) {
      tickets.push(
        (await store.createTicket({ attributes: { role: "edge" }, ttlSeconds: 600 })).secret,
      );
    }
    await store.close();
    const clients = await Promise.all(Array.from({ length: members }, async (_, m) => {
      const ticket = tickets[m];
      const identity = await Identity.create(await SoftwareSigner.generate());
      // A connection per member, as members connect: the authority closes a
      // connection that carries more than a few channels (connection_guard.ts).
      // Members spread over the replicas, one endpoint each.
      const conn = await transport.connect({
        hostname: "127.0.0.1",
        port: ports[m % ports.length],
      });
      const client = await AuthorityClient.connect({
        node,
        route: [conn.address],
        local: await createChannelIdentity(identity),
        trust,
      });
      await client.enroll({ ticket });
      return client;
    }));
    progress(`${run.label}: credential refreshes for ${seconds} s, ${members} members at once`);
    let issued = 0;
    const pids = [...servers.map((server) => server.pid), Deno.pid];
    const cpuBefore = await Promise.all(pids.map(cpuSeconds));
    const until = performance.now() + seconds * 1000;
    await Promise.all(clients.map(async (client) => {
      while (performance.now() < until) {
        await client.credential();
        issued++;
      }
    }));
    const cpuAfter = await Promise.all(pids.map(cpuSeconds));
    // CPU per credential: steadier than the rate on a shared machine, which
    // other processes' load moves a lot. The replicas' CPU is summed.
    const perCredential = cpuAfter.map((after, j) =>
      (after - cpuBefore[j]) * 1e6 / Math.max(issued, 1)
    );
    results.push({
      label: run.label,
      rate: issued / seconds,
      serverCpu: perCredential.slice(0, -1).reduce((a, b) => a + b, 0),
      clientCpu: perCredential.at(-1)!,
    });
    for (const client of clients) await client.close();
    await transport.close();
    for (const server of servers) {
      server.kill("SIGTERM");
      await server.status;
      await server.stdout.cancel().catch(() => {});
    }
    await Deno.remove(`${root}${stateDir}`, { recursive: true }).catch(() => {});
  }

  console.log("| measure | per second | baseline in the same run |");
  console.log("| --- | --- | --- |");
  console.log(
    `| HSM Ed25519 signatures (SoftHSM2, CKM_EDDSA) | ${
      hsmRate.toFixed(0)
    } | software Ed25519 signer: ${softwareRate.toFixed(0)} (${
      (hsmRate / softwareRate).toFixed(2)
    }×) |`,
  );
  for (const result of results) {
    console.log(
      `| credentials issued end to end over secure channels (${result.label}) | ${
        result.rate.toFixed(0)
      } | HSM signatures alone: ${hsmRate.toFixed(0)} (${(result.rate / hsmRate).toFixed(2)}×) |`,
    );
  }
  console.log("\nCPU per credential (user + system, over the refreshes):");
  for (const result of results) {
    console.log(
      `  ${result.label}: authority process${result.label.includes("3 replicas") ? "es" : ""} ${
        result.serverCpu.toFixed(0)
      } µs, this process (the ${members} members) ${result.clientCpu.toFixed(0)} µs`,
    );
  }
} finally {
  await postgres?.stop();
  for (const hsm of tokens) await hsm.remove();
}
