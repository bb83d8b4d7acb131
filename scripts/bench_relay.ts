/**
 * Relay benchmark: figures for the relay's closing note, each with what it
 * is compared against in the same run. The relay runs as a real process
 * (`deno run -P=relay relay/main.ts`), as in production.
 *
 * 1. Forwarding throughput through one connection pair: this process pushes
 *    `--megabytes` MiB in routed messages with 64 KiB payloads (frames of
 *    64 KiB plus a 40-byte routing header) from connection A through the
 *    relay to `forward.<alias>` held by connection B, up to 8 messages in
 *    flight, and counts them arriving at B. The relay only reads the
 *    routing header and copies the rest (no crypto). Baseline: the same
 *    messages over one direct loopback framed TCP connection between the
 *    same node's transport and its own listener. Both ends are in this
 *    process either way, so the endpoints cost the same in both; the relay
 *    adds a process, two socket hops and a copy, and runs on the other core
 *    of a 2-core machine. Its CPU time per GB forwarded (utime + stime from
 *    /proc/<pid>/stat) says what it would cost on a busy machine. Each is
 *    the median of `--runs` runs, interleaved. The relay is started with
 *    `--rate` raised: its default per-identity limit (256 MiB/s) would
 *    otherwise be what is measured.
 *
 *    Then round trips of small messages (`--requests` of each size, 64 B,
 *    1 KiB and 3 KiB payloads, one at a time, after a tenth as many to warm
 *    up): from A through the relay to an echo worker behind B, and back
 *    along the return route the relay wrote; baseline, the same over the
 *    direct connection. The two paths take turns in blocks of a tenth.
 *    Median and p99, and the relay's CPU time per round trip (two frames
 *    forwarded), from /proc over the relay's blocks. 1 KiB and 3 KiB
 *    frames are larger than the 512-byte buffer a parked connection waits
 *    with (architecture.md §5.5).
 *
 * 2. Resident memory per idle admitted connection, at 1,000 and 10,000
 *    connections: a relay, one connection admitted to warm the admission
 *    path, its VmRSS; then `--clients` child processes open connections
 *    (each admitted by a signed challenge) up to 1,000 and hold them, and
 *    once /metrics counts them all and a second has passed, VmRSS again;
 *    then more children up to 10,000, and VmRSS again. Per connection is
 *    (RSS − RSS before) / count, as asked; per added connection is the
 *    slope between stages, which leaves out one-time growth (V8's young
 *    generation grows by tens of MiB during the first burst of admissions,
 *    which dominates the figure at 1,000). Kernel socket memory is not in
 *    RSS; allocator and V8 heap slack are. 10,000 connections need about
 *    10,100 descriptors in the relay, so the relay and the clients are
 *    started through `bash -c 'ulimit -n N'` (N cannot exceed `ulimit -Hn`).
 *
 * /proc is read with `cat`: Deno 2.9 wants --allow-all to read it directly.
 *
 * Usage: deno task bench:relay [--megabytes N] [--runs N] [--requests N] [--counts 1000,10000]
 *        [--clients N]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { quantile } from "./support/load.ts";
import { issueCredential } from "../src/credential/credential.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { fromHex, toHex } from "../src/encoding/hex.ts";
import { Identity } from "../src/identity/identity.ts";
import { readIdentityFile, writeIdentityFile } from "../src/identity/identity_file.ts";
import { SoftwareSigner } from "../src/identity/software_signer.ts";
import { connectRelay, registerAlias, type RelayConnection } from "../src/relay_client/mod.ts";
import { Node } from "../src/routing/node.ts";
import type { Route } from "../src/routing/routed_message.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import { type RelayService, startRelay } from "./support/portal_harness.ts";
import { cpuSeconds, memoryOf } from "./support/process_usage.ts";
import { fileLimitWrap, type ServiceProcess, spawnDeno } from "./support/service_process.ts";

const ROOT = new URL("../", import.meta.url).pathname;
/** How long a client process has to open its connections. */
const CLIENT_READY_MS = 600_000;
const SCRIPT = new URL(import.meta.url).pathname;
const MESSAGE_BYTES = 64 * 1024;
/** Payload sizes of the round trips. */
const ROUND_TRIP_BYTES = [64, 1024, 3072];
const IN_FLIGHT = 8;
const CONNECT_CONCURRENCY = 50;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function progress(line: string): void {
  console.error(`[bench] ${line}`);
}

/** VmRSS of a process, KiB. */
async function rssKiB(pid: number): Promise<number> {
  return (await memoryOf([pid])).get(pid)!.rss;
}

/** A member identity and credential, as files a client process can load. */
interface MemberFiles {
  /** The authority's identity file (the relay's credential must come from it). */
  authority: string;
  identity: string;
  seed: string;
  credential: string;
}

async function loadMember(files: MemberFiles) {
  const anchor = await readIdentityFile(files.identity);
  const seed = fromHex((await Deno.readTextFile(files.seed)).trim());
  const identity = await Identity.fromHistory(anchor.history, await SoftwareSigner.fromSeed(seed));
  const credential = fromHex((await Deno.readTextFile(files.credential)).trim());
  const trust = new TrustStore([await readIdentityFile(files.authority)]);
  return { identity, credential, trust };
}

/** Opens `count` admitted connections, CONNECT_CONCURRENCY at a time. */
async function openConnections(
  transport: TcpTransport,
  port: number,
  member: { identity: Identity; credential: Uint8Array; trust: TrustStore },
  count: number,
): Promise<RelayConnection[]> {
  const connections: RelayConnection[] = [];
  while (connections.length < count) {
    const batch = Math.min(CONNECT_CONCURRENCY, count - connections.length);
    connections.push(
      ...await Promise.all(
        Array.from({ length: batch }, () =>
          connectRelay({
            transport,
            hostname: "127.0.0.1",
            port,
            identity: member.identity,
            credential: member.credential,
            trust: member.trust,
          })),
      ),
    );
  }
  return connections;
}

/**
 * Client mode (a child of the benchmark): opens `count` connections to the
 * relay at `port` as the member in `dir`, prints `READY`, holds them until
 * stdin closes.
 */
async function clientMain(dir: string, port: number, count: number): Promise<void> {
  const member = await loadMember({
    authority: `${dir}/authority.json`,
    identity: `${dir}/member.json`,
    seed: `${dir}/member.seed`,
    credential: `${dir}/member.credential`,
  });
  const node = new Node({ name: "bench-client" });
  const transport = new TcpTransport(node);
  await openConnections(transport, port, member, count);
  console.log("READY");
  for await (const _ of Deno.stdin.readable) { /* hold until stdin closes */ }
  await transport.close();
  Deno.exit(0);
}

/** Pushes `total` bytes along `route` + "sink"; seconds until the sink had them all. */
async function push(
  node: Node,
  route: Route,
  total: number,
  sink: { received: number; waitFor(bytes: number): Promise<void> },
): Promise<number> {
  const payload = crypto.getRandomValues(new Uint8Array(MESSAGE_BYTES));
  const count = Math.ceil(total / MESSAGE_BYTES);
  const expected = sink.received + count * MESSAGE_BYTES;
  const arrived = sink.waitFor(expected);
  const inflight = new Set<Promise<boolean>>();
  let failed = 0;
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const sent = node.route({ onward: [...route, "sink"], return: [], payload });
    inflight.add(sent);
    sent.then((ok) => {
      inflight.delete(sent);
      if (!ok) failed++;
    });
    if (inflight.size >= IN_FLIGHT) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  if (failed > 0) throw new Error(`${failed} sends failed`);
  await arrived;
  return (performance.now() - started) / 1000;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/**
 * Round trips of `payload` along `route` to the node's `echo` worker and
 * back to `origin`, one at a time; each one's time in µs.
 */
async function roundTrips(
  node: Node,
  route: Route,
  payload: Uint8Array,
  count: number,
  answered: { next(): Promise<void> },
): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    const back = answered.next();
    if (!await node.route({ onward: [...route, "echo"], return: ["origin"], payload })) {
      throw new Error("a round trip's send failed");
    }
    await back;
    times.push((performance.now() - started) * 1000);
  }
  return times;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      megabytes: { type: "string", default: "256" },
      runs: { type: "string", default: "5" },
      requests: { type: "string", default: "5000" },
      counts: { type: "string", default: "1000,10000" },
      clients: { type: "string", default: "4" },
      client: { type: "string" },
      port: { type: "string" },
      count: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(
      "Usage: deno task bench:relay [--megabytes N] [--runs N] [--requests N] " +
        "[--counts 1000,10000] [--clients N]",
    );
    return;
  }
  if (values.client !== undefined) {
    return await clientMain(values.client, Number(values.port), Number(values.count));
  }
  const megabytes = Number(values.megabytes);
  const runs = Number(values.runs);
  const requests = Number(values.requests);
  const counts = values.counts.split(",").map(Number);
  const clients = Number(values.clients);
  if (
    ![megabytes, runs, requests, clients, ...counts].every((n) => Number.isInteger(n) && n > 0)
  ) {
    throw new Error(
      "--megabytes, --runs, --requests, --counts and --clients want positive integers",
    );
  }

  // The trust anchor and a member's files under ./.state (the relay's
  // permission set reads ./.state only), removed at the end.
  const dir = `${ROOT}.state/bench-relay-${crypto.randomUUID()}`;
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const relays: RelayService[] = [];
  try {
    const ca = await Identity.create(await SoftwareSigner.generate());
    const trustFile = `${dir}/authority.json`;
    await writeIdentityFile(trustFile, ca.history);
    const seed = crypto.getRandomValues(new Uint8Array(32));
    const memberIdentity = await Identity.create(await SoftwareSigner.fromSeed(seed));
    const memberCredential = await issueCredential(ca, {
      subject: memberIdentity.identifier,
      subjectKey: memberIdentity.primaryKey,
      attributes: { role: "edge", relay: "bench" },
    });
    await writeIdentityFile(`${dir}/member.json`, memberIdentity.history);
    await Deno.writeTextFile(`${dir}/member.seed`, toHex(seed), { mode: 0o600 });
    await Deno.writeTextFile(`${dir}/member.credential`, toHex(memberCredential.encoded));
    const member = {
      identity: memberIdentity,
      credential: memberCredential.encoded,
      trust: new TrustStore([ca]),
    };

    // 1. Throughput.
    const total = megabytes * 1024 * 1024;
    const relay = await startRelay(dir, ["--rate", String(2 ** 40)], { fileLimit: 1024, ca });
    relays.push(relay);
    const node = new Node({ name: "bench" });
    const transport = new TcpTransport(node);
    const waiters: { bytes: number; resolve: () => void }[] = [];
    const sink = {
      received: 0,
      waitFor(bytes: number): Promise<void> {
        if (sink.received >= bytes) return Promise.resolve();
        const { promise, resolve } = Promise.withResolvers<void>();
        waiters.push({ bytes, resolve });
        return promise;
      },
    };
    node.register("sink", (m) => {
      sink.received += m.payload.length;
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (sink.received >= waiters[i].bytes) waiters.splice(i, 1)[0].resolve();
      }
    });
    const [a, b] = await openConnections(transport, relay.port, member, 2);
    await registerAlias(node, b.address, "bench");
    const listener = transport.listen({ hostname: "127.0.0.1", port: 0 });
    const direct = await transport.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    const viaRelay: Route = [a.address, "forward.bench"];
    // Warm-up: both paths compiled in this process and in the relay.
    await push(node, viaRelay, 16 * 1024 * 1024, sink);
    await push(node, [direct.address], 16 * 1024 * 1024, sink);
    const relaySeconds: number[] = [];
    const directSeconds: number[] = [];
    const cpuPerGB: number[] = [];
    for (let i = 0; i < runs; i++) {
      progress(`run ${i + 1}/${runs}: ${megabytes} MiB direct, then through the relay`);
      directSeconds.push(await push(node, [direct.address], total, sink));
      const cpuBefore = await cpuSeconds(relay.pid);
      relaySeconds.push(await push(node, viaRelay, total, sink));
      cpuPerGB.push((await cpuSeconds(relay.pid) - cpuBefore) / (total / 1e9));
    }

    // Round trips: an echo worker on this node, reached through B (via
    // the relay) or through the direct connection's listener end.
    node.register("echo", async (m) => {
      await node.route({ onward: m.return, return: [], payload: m.payload });
    });
    let waiting: (() => void) | null = null;
    node.register("origin", () => {
      const resolve = waiting;
      waiting = null;
      resolve?.();
    });
    const answered = {
      next(): Promise<void> {
        const { promise, resolve } = Promise.withResolvers<void>();
        waiting = resolve;
        return promise;
      },
    };
    const latencyRows: string[] = [];
    const block = Math.max(1, Math.floor(requests / 10));
    for (const size of ROUND_TRIP_BYTES) {
      progress(`${requests} round trips of ${size} B, direct and through the relay`);
      const payload = crypto.getRandomValues(new Uint8Array(size));
      await roundTrips(node, viaRelay, payload, block, answered);
      await roundTrips(node, [direct.address], payload, block, answered);
      const relayTimes: number[] = [];
      const directTimes: number[] = [];
      let relayCpu = 0;
      for (let done = 0; done < requests; done += block) {
        const n = Math.min(block, requests - done);
        directTimes.push(...await roundTrips(node, [direct.address], payload, n, answered));
        const cpuBefore = await cpuSeconds(relay.pid);
        relayTimes.push(...await roundTrips(node, viaRelay, payload, n, answered));
        relayCpu += await cpuSeconds(relay.pid) - cpuBefore;
      }
      const us = (values: number[], q: number) => `${quantile(values, q).toFixed(0)} µs`;
      latencyRows.push(
        `| ${size} B | ${us(directTimes, 0.5)} | ${us(relayTimes, 0.5)} | ${
          us(directTimes, 0.99)
        } | ${us(relayTimes, 0.99)} | ${(relayCpu / requests * 1e6).toFixed(0)} µs |`,
      );
    }

    await transport.close();
    await relay.stop();
    relays.pop();
    const mb = total / 1e6;
    const relayRate = mb / median(relaySeconds);
    const directRate = mb / median(directSeconds);

    // 2. Memory per idle admitted connection: one relay, connections added
    // in stages up to each count and held.
    const memoryRows: string[] = [];
    const largest = Math.max(...counts);
    const idle = await startRelay(dir, [
      "--max-per-identity",
      String(largest + 10),
      "--max-pending-per-source",
      String(4 * CONNECT_CONCURRENCY),
      "--max-connections",
      String(largest + 10),
    ], { fileLimit: largest + 1024, ca });
    relays.push(idle);
    const warm = new TcpTransport(new Node({ name: "bench-warm" }));
    await openConnections(warm, idle.port, member, 1);
    await sleep(1000);
    const before = await rssKiB(idle.pid);
    const children: ServiceProcess[] = [];
    let held = 0;
    let previous = before;
    for (const count of [...counts].sort((x, y) => x - y)) {
      const adding = count - held;
      const processes = Math.min(clients, adding);
      progress(`${adding} more connections from ${processes} client processes (${count} in all)`);
      const started = performance.now();
      const stage = Array.from({ length: processes }, (_, i) => {
        const share = Math.floor(adding / processes) + (i < adding % processes ? 1 : 0);
        return spawnDeno(`client process ${children.length + i + 1}`, [
          `--allow-read=${dir}`,
          "--allow-net=127.0.0.1",
          SCRIPT,
          "--client",
          dir,
          "--port",
          String(idle.port),
          "--count",
          String(share),
        ], { stdin: "piped", wrap: fileLimitWrap(share + 256) });
      });
      children.push(...stage);
      for (const client of stage) await client.waitFor(/^READY$/, CLIENT_READY_MS);
      const seconds = (performance.now() - started) / 1000;
      const counted = await idle.metric("nexus_relay_connections");
      if (counted !== count + 1) throw new Error(`the relay counts ${counted}, not ${count + 1}`);
      await sleep(1000);
      const rss = await rssKiB(idle.pid);
      memoryRows.push(
        `| ${count.toLocaleString("en")} | ${(rss / 1024).toFixed(1)} MiB | **${
          ((rss - before) / count).toFixed(1)
        } KiB** | ${((rss - previous) / adding).toFixed(1)} KiB | ${seconds.toFixed(1)} s |`,
      );
      held = count;
      previous = rss;
    }
    for (const client of children) await client.end();
    await sleep(1000);
    const closed = await rssKiB(idle.pid);
    await warm.close();
    await idle.stop();
    relays.pop();

    console.log(`
Relay forwarding, one connection pair, ${megabytes} MiB in 64 KiB messages, ${IN_FLIGHT} in flight, median of ${runs}

| Path | Throughput | Relative |
| --- | --- | --- |
| Direct loopback framed TCP (baseline) | ${directRate.toFixed(0)} MB/s | 1.00 |
| Through the relay process | ${relayRate.toFixed(0)} MB/s | ${
      (relayRate / directRate).toFixed(2)
    } |

Relay CPU time: ${median(cpuPerGB).toFixed(2)} s per GB forwarded.

Round trips, one at a time, ${requests} of each size (median, p99)

| Payload | Direct, median | Through the relay, median | Direct, p99 | Through the relay, p99 | Relay CPU per round trip |
| --- | --- | --- | --- | --- | --- |
${latencyRows.join("\n")}

Relay resident memory per idle admitted connection (RSS ${
      (before / 1024).toFixed(1)
    } MiB with one connection)

| Connections | Relay RSS | Per connection | Per added connection | Time to add (incl. client start) |
| --- | --- | --- | --- | --- |
${memoryRows.join("\n")}

Relay RSS once all had closed: ${(closed / 1024).toFixed(1)} MiB.
`);
  } finally {
    for (const relay of relays) await relay.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

await main();
