/**
 * Portal benchmark: what a TCP portal through a relay costs, against a
 * direct loopback TCP connection to the same backend in the same run.
 *
 * Deployment (scripts/support/portal_harness.ts), each piece its own process
 * as in production: a relay (`deno run -P=relay relay/main.ts`, its
 * per-identity rate limit raised so that it is not what is measured), a
 * gateway (scripts/support/portal_peer.ts: relay connection, alias `gw`,
 * secure channel listener, outlets `sink` and `echo`), an edge (same
 * script: relay connection, one secure channel to the gateway through the
 * relay, inlets for `sink` and `echo`). The backends and the clients run in
 * this process, so the endpoints cost the same on both paths; the portal
 * adds two processes' encryption, the relay's copy and four socket hops, on
 * a machine whose cores the four processes share.
 *
 * 1. Throughput: `--megabytes` MiB written in 256 KiB writes to the sink
 *    backend (it reads and discards, and closes at end of stream), over one
 *    connection, then over 8 at once (each an eighth; 8 portal sessions in
 *    one channel). Timed from the first write until every client has seen
 *    the backend's close, so every byte has reached the backend. Median of
 *    `--runs` runs, the direct and portal runs interleaved. CPU time per GB
 *    of the edge, relay and gateway processes (utime + stime from
 *    /proc/<pid>/stat, read with `cat`) over the single-session portal runs.
 * 2. Latency: `--requests` round trips of a 64-byte request that the echo
 *    backend sends back, one at a time over one connection (one portal
 *    session), after 10% as many to warm up; median and p99. And the same
 *    for a new connection per request (connect, one round trip, close):
 *    through the portal that includes opening a session (OPEN, the outlet
 *    connecting to the backend, OPENED), not the secure channel handshake,
 *    which the edge did once at start.
 *
 * Usage: deno task bench:portal [--megabytes N] [--runs N] [--requests N]
 *
 * @module
 */
import { median, quantile, readFull, throughput } from "./support/load.ts";
import { parseArgs } from "node:util";
import {
  type PeerService,
  type RelayService,
  startPeer,
  startRelay,
  writeDeploymentFiles,
} from "./support/portal_harness.ts";
import { cpuSeconds } from "./support/process_usage.ts";

const MiB = 1024 * 1024;
const WRITE_BYTES = 256 * 1024;
const REQUEST_BYTES = 64;
const SESSIONS = 8;

function progress(line: string): void {
  console.error(`[bench] ${line}`);
}

/** A backend that reads and discards until end of stream, then closes. */
function sinkBackend(): Deno.Listener {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) {
      (async () => {
        const buffer = new Uint8Array(MiB);
        try {
          while (await conn.read(buffer) !== null) { /* discard */ }
        } finally {
          conn.close();
        }
      })().catch(() => {});
    }
  })().catch(() => {});
  return listener;
}

/** A backend that writes back what it reads, until end of stream. */
function echoBackend(): Deno.Listener {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) {
      (async () => {
        conn.setNoDelay(true);
        const buffer = new Uint8Array(64 * 1024);
        try {
          for (;;) {
            const n = await conn.read(buffer);
            if (n === null) break;
            for (let w = 0; w < n;) w += await conn.write(buffer.subarray(w, n));
          }
        } finally {
          conn.close();
        }
      })().catch(() => {});
    }
  })().catch(() => {});
  return listener;
}

/** Round-trip times, µs, of `count` requests over one connection to `port`. */
async function roundTrips(port: number, count: number): Promise<number[]> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  const request = crypto.getRandomValues(new Uint8Array(REQUEST_BYTES));
  const answer = new Uint8Array(REQUEST_BYTES);
  const times: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const started = performance.now();
      await conn.write(request);
      await readFull(conn, answer);
      times.push((performance.now() - started) * 1000);
    }
  } finally {
    conn.close();
  }
  return times;
}

/** Times, µs, of `count` × (connect, one round trip, close) to `port`. */
async function connectTrips(port: number, count: number): Promise<number[]> {
  const request = crypto.getRandomValues(new Uint8Array(REQUEST_BYTES));
  const answer = new Uint8Array(REQUEST_BYTES);
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    try {
      await conn.write(request);
      await readFull(conn, answer);
    } finally {
      conn.close();
    }
    times.push((performance.now() - started) * 1000);
  }
  return times;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      megabytes: { type: "string", default: "256" },
      runs: { type: "string", default: "5" },
      requests: { type: "string", default: "2000" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log("Usage: deno task bench:portal [--megabytes N] [--runs N] [--requests N]");
    return;
  }
  const megabytes = Number(values.megabytes);
  const runs = Number(values.runs);
  const requests = Number(values.requests);
  if (![megabytes, runs, requests].every((n) => Number.isInteger(n) && n > 0)) {
    throw new Error("--megabytes, --runs and --requests want positive integers");
  }
  if (megabytes % SESSIONS !== 0) throw new Error(`--megabytes must be a multiple of ${SESSIONS}`);
  const total = megabytes * MiB;

  const sink = sinkBackend();
  const echo = echoBackend();
  const dir = await writeDeploymentFiles("bench-portal");
  let relay: RelayService | null = null;
  let gateway: PeerService | null = null;
  let edge: PeerService | null = null;
  try {
    relay = await startRelay(dir, ["--rate", String(2 ** 40)]);
    gateway = await startPeer("gateway", dir, relay.port, {
      outlets: {
        sink: (sink.addr as Deno.NetAddr).port,
        echo: (echo.addr as Deno.NetAddr).port,
      },
    });
    edge = await startPeer("edge", dir, relay.port, { inlets: ["sink", "echo"] });
    const direct = {
      sink: (sink.addr as Deno.NetAddr).port,
      echo: (echo.addr as Deno.NetAddr).port,
    };
    const portal = { sink: edge.inlets.sink, echo: edge.inlets.echo };
    const processes = { edge: edge.pid, relay: relay.pid, gateway: gateway.pid };

    // 1. Throughput. Warm-up: every path compiled, every buffer pool filled.
    progress("warm-up");
    for (const sessions of [1, SESSIONS]) {
      await throughput(direct.sink, 32 * MiB, sessions, WRITE_BYTES);
      await throughput(portal.sink, 32 * MiB, sessions, WRITE_BYTES);
    }
    const seconds = {
      direct1: [] as number[],
      portal1: [] as number[],
      direct8: [] as number[],
      portal8: [] as number[],
    };
    const cpu: Record<string, number> = { edge: 0, relay: 0, gateway: 0 };
    for (let i = 0; i < runs; i++) {
      progress(`run ${i + 1}/${runs}: ${megabytes} MiB over 1 and over ${SESSIONS} connections`);
      seconds.direct1.push(await throughput(direct.sink, total, 1, WRITE_BYTES));
      const before = await Promise.all(Object.values(processes).map(cpuSeconds));
      seconds.portal1.push(await throughput(portal.sink, total, 1, WRITE_BYTES));
      const after = await Promise.all(Object.values(processes).map(cpuSeconds));
      Object.keys(processes).forEach((name, k) => cpu[name] += after[k] - before[k]);
      seconds.direct8.push(await throughput(direct.sink, total, SESSIONS, WRITE_BYTES));
      seconds.portal8.push(await throughput(portal.sink, total, SESSIONS, WRITE_BYTES));
    }
    const rate = (list: number[]) => total / 1e6 / median(list);

    // 2. Latency.
    progress(`${requests} round trips over one connection, direct and through the portal`);
    const warm = Math.max(1, Math.floor(requests / 10));
    await roundTrips(direct.echo, warm);
    await roundTrips(portal.echo, warm);
    const directTrips = await roundTrips(direct.echo, requests);
    const portalTrips = await roundTrips(portal.echo, requests);
    const connects = Math.max(1, Math.floor(requests / 10));
    progress(`${connects} new connections with one round trip each`);
    await connectTrips(direct.echo, Math.ceil(connects / 10));
    await connectTrips(portal.echo, Math.ceil(connects / 10));
    const directConnects = await connectTrips(direct.echo, connects);
    const portalConnects = await connectTrips(portal.echo, connects);

    const edgeStats = await edge.finish();
    const gatewayStats = await gateway.finish();
    const dropped = await relay.metric("nexus_relay_frames_dropped_total");
    if (edgeStats?.dropped || gatewayStats?.dropped || dropped) {
      throw new Error(
        `messages were dropped: edge ${edgeStats?.dropped}, gateway ${gatewayStats?.dropped}, ` +
          `relay ${dropped}`,
      );
    }

    const rows: [string, string, string, string][] = [];
    const throughputRow = (label: string, d: number[], p: number[]) => {
      rows.push([
        label,
        `${rate(d).toFixed(0)} MB/s`,
        `**${rate(p).toFixed(0)} MB/s**`,
        (rate(p) / rate(d)).toFixed(3),
      ]);
    };
    const latencyRow = (label: string, d: number[], p: number[], q: number) => {
      rows.push([
        label,
        `${quantile(d, q).toFixed(0)} µs`,
        `**${quantile(p, q).toFixed(0)} µs**`,
        `× ${(quantile(p, q) / quantile(d, q)).toFixed(1)}`,
      ]);
    };
    throughputRow("Throughput, 1 session", seconds.direct1, seconds.portal1);
    throughputRow(`Throughput, ${SESSIONS} sessions (sum)`, seconds.direct8, seconds.portal8);
    latencyRow("64 B round trip, median", directTrips, portalTrips, 0.5);
    latencyRow("64 B round trip, p99", directTrips, portalTrips, 0.99);
    latencyRow("New connection + 64 B round trip, median", directConnects, portalConnects, 0.5);
    latencyRow("New connection + 64 B round trip, p99", directConnects, portalConnects, 0.99);
    const gb = runs * total / 1e9;
    console.log(`
Portal: edge → relay → gateway → backend, each its own process, against a direct loopback TCP
connection to the same backend. Throughput: ${megabytes} MiB per run, median of ${runs}; latency:
${requests} round trips over one connection and ${connects} new connections.

| Measure | Direct TCP (baseline) | Through the portal | Portal / direct |
| --- | --- | --- | --- |
${rows.map((row) => `| ${row.join(" | ")} |`).join("\n")}

CPU time per GB through the portal (1 session): ${
      Object.entries(cpu).map(([name, s]) => `${name} ${(s / gb).toFixed(2)} s`).join(", ")
    } (${navigator.hardwareConcurrency} cores shared by all four processes).
`);
  } finally {
    await edge?.stop();
    await gateway?.stop();
    await relay?.stop();
    sink.close();
    echo.close();
    await Deno.remove(dir, { recursive: true });
  }
}

await main();
