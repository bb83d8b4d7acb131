/**
 * End-to-end benchmark: what routing-only costs against terminating at the
 * gateway, in the same run, with the real executables.
 *
 * Deployment (as tests/e2e_test.ts sets it up; scripts/support/deployment.ts),
 * each piece its own process
 * under its own permission set: the authority (`authority/main.ts serve`,
 * a fresh SoftHSM2 token: tests/support/authority_process.ts), a relay
 * (`relay/main.ts`, enrolled with a ticket, its per-identity rate raised so
 * that it is not what is measured), a service agent (`agent/main.ts run`,
 * outlets `sink` and `echo`), a gateway (`gateway/main.ts run`: its own
 * Phase 2 outlets `sink` and `echo` to the same backends, and the service
 * `bench` routed to the agent) and an edge (`edge/main.ts run`, `-P=edge`
 * plus the flags its config needs), with four inlets:
 *
 * - **Phase 2**: edge → relay → gateway → backend. The gateway terminates
 *   the edge's channel and connects to the backend itself (it sees the
 *   plaintext).
 * - **End to end**: edge → relay → gateway → relay → agent → backend. The
 *   edge's inner channel to the agent is nested in its channel to the
 *   gateway, so each byte is encrypted twice on the edge → gateway hop;
 *   the gateway decrypts the outer layer, routes the inner ciphertext to
 *   the agent over its own channel (encrypting it again), and never holds
 *   a key of the inner channel. The relay carries every byte twice.
 * - **Direct**: a loopback TCP connection to the same backend (the
 *   baseline).
 *
 * The backends and the clients run in this process, so the endpoints cost
 * the same on every path; the edge, relay, gateway and agent share the
 * machine's cores with it.
 *
 * 1. Throughput: `--megabytes` MiB written in 256 KiB writes to the sink
 *    backend (it reads and discards, and closes at end of stream), over one
 *    connection, then over 8 at once (each an eighth). Timed from the first
 *    write until every client has seen the backend's close, so every byte
 *    has reached the backend (the sink counts them). Median of `--runs`
 *    runs, the three modes interleaved (Phase 2 and end to end take turns
 *    going first). CPU time per GB (utime + stime from /proc/<pid>/stat,
 *    read with `cat`) of the edge, relay, gateway and agent, and of this
 *    process, over the throughput runs of each mode; and the relay's
 *    forwarded bytes per payload byte.
 * 2. Latency: `--requests` round trips of a 64-byte request that the echo
 *    backend sends back, one at a time over one connection per mode, after
 *    10% as many to warm up, the modes taking turns in blocks of a tenth;
 *    median and p99. And a tenth as many new connections per request
 *    (connect, one round trip, close): through the portal that includes
 *    opening a session (OPEN, the outlet connecting to the backend,
 *    OPENED), not a handshake: the edge's channel to the gateway and its
 *    inner channel to the agent are opened once, at warm-up.
 *
 * `--profile DIR` runs the relay, agent, gateway and edge under V8's CPU
 * profiler (`--cpu-prof-dir`, with a markdown summary: `--cpu-prof-md`),
 * which writes `<name>.cpuprofile` and `<name>.md` in DIR (an existing
 * directory) when they stop: where each one's CPU goes, over the whole run
 * (both modes). The profiler costs CPU itself: compare figures without it.
 *
 * Usage: deno task bench:e2e [--megabytes N] [--runs N] [--requests N] [--profile DIR]
 *
 * @module
 */
import { median, quantile, readFull, tabulate, throughput } from "./support/load.ts";
import { parseArgs } from "node:util";
import { authorityFixture } from "./support/authority_process.ts";
import { deadline } from "./support/deadline.ts";
import { checkHealth, type Cleanup, deploy, metric, PORTAL_MODES } from "./support/deployment.ts";
import { cpuSeconds } from "./support/process_usage.ts";
import { ROOT } from "./support/service_process.ts";

const MiB = 1024 * 1024;
const WRITE_BYTES = 256 * 1024;
const REQUEST_BYTES = 64;
const SESSIONS = 8;

type Mode = "direct" | "phase2" | "e2e";
const PORTALS = PORTAL_MODES;
const MODES: readonly Mode[] = ["direct", ...PORTALS];
const LABEL: Record<Mode, string> = {
  direct: "Direct TCP",
  phase2: "Phase 2 outlet",
  e2e: "End to end",
};
const PROCESSES = ["edge", "relay", "gateway", "agent", "bench"] as const;
type ProcessName = typeof PROCESSES[number];

function progress(line: string): void {
  console.error(`[bench:e2e] ${line}`);
}

/** A backend that reads and discards until end of stream, then closes; counts what it read. */
function sinkBackend() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen = { bytes: 0 };
  (async () => {
    for await (const conn of listener) {
      (async () => {
        const buffer = new Uint8Array(MiB);
        try {
          for (;;) {
            const n = await conn.read(buffer);
            if (n === null) break;
            seen.bytes += n;
          }
        } finally {
          conn.close();
        }
      })().catch(() => {});
    }
  })().catch(() => {});
  return { port: (listener.addr as Deno.NetAddr).port, seen, close: () => listener.close() };
}

/** A backend that writes back what it reads, until end of stream. */
function echoBackend() {
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
  return { port: (listener.addr as Deno.NetAddr).port, close: () => listener.close() };
}

/** Round-trip times, µs, of `count` requests over `conn`, appended to `times`. */
async function roundTrips(conn: Deno.Conn, count: number, times: number[] = []) {
  const request = crypto.getRandomValues(new Uint8Array(REQUEST_BYTES));
  const answer = new Uint8Array(REQUEST_BYTES);
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    for (let w = 0; w < request.length;) w += await conn.write(request.subarray(w));
    await readFull(conn, answer);
    times.push((performance.now() - started) * 1000);
  }
  return times;
}

/** Times, µs, of `count` × (connect, one round trip, close) to `port`, appended to `times`. */
async function connectTrips(port: number, count: number, times: number[] = []) {
  const request = crypto.getRandomValues(new Uint8Array(REQUEST_BYTES));
  const answer = new Uint8Array(REQUEST_BYTES);
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

/** CPU seconds of each process now. */
async function cpuNow(pids: Record<ProcessName, number>): Promise<Record<ProcessName, number>> {
  const seconds = await Promise.all(PROCESSES.map((name) => cpuSeconds(pids[name])));
  return tabulate(PROCESSES, (name) => seconds[PROCESSES.indexOf(name)]);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      megabytes: { type: "string", default: "128" },
      runs: { type: "string", default: "5" },
      requests: { type: "string", default: "2000" },
      profile: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(
      "Usage: deno task bench:e2e [--megabytes N] [--runs N] [--requests N] [--profile DIR]",
    );
    return;
  }
  const megabytes = Number(values.megabytes);
  const runs = Number(values.runs);
  const requests = Number(values.requests);
  if (![megabytes, runs, requests].every((n) => Number.isInteger(n) && n > 0)) {
    throw new Error("--megabytes, --runs and --requests want positive integers");
  }
  const total = megabytes * MiB;

  const sink = sinkBackend();
  const echo = echoBackend();
  const fixture = await authorityFixture();
  const dir = `.state/bench-e2e-${crypto.randomUUID()}`;
  await Deno.mkdir(`${ROOT}${dir}`, { recursive: true, mode: 0o700 });
  const cleanup: Cleanup[] = [];
  try {
    const deployment = await deploy({
      fixture,
      dir,
      backends: { sink: sink.port, echo: echo.port },
      probe: { outlet: "echo", check: (port) => connectTrips(port, 1) },
      cleanup,
      progress,
      profile: values.profile === undefined ? undefined : Deno.realPathSync(values.profile),
    });
    const { inlets } = deployment;
    const pids: Record<ProcessName, number> = { ...deployment.pids, bench: Deno.pid };
    const sinkPort: Record<Mode, number> = {
      direct: sink.port,
      phase2: inlets.phase2.sink,
      e2e: inlets.e2e.sink,
    };
    const echoPort: Record<Mode, number> = {
      direct: echo.port,
      phase2: inlets.phase2.echo,
      e2e: inlets.e2e.echo,
    };

    /** Seconds to push `bytes` over `sessions` in `mode`, checked at the sink: every byte arrived. */
    const push = async (mode: Mode, bytes: number, sessions: number) => {
      const before = sink.seen.bytes;
      const seconds = await deadline(
        throughput(sinkPort[mode], bytes, sessions, WRITE_BYTES),
        60_000 + bytes / 1000, // 1 MB/s at least
        `${LABEL[mode]}: ${bytes} bytes over ${sessions} connections`,
      );
      if (sink.seen.bytes - before !== bytes) {
        throw new Error(`${LABEL[mode]}: the sink got ${sink.seen.bytes - before} of ${bytes}`);
      }
      return seconds;
    };
    // What each process spent over the measured runs of each mode, and what the relay carried.
    const cpu = { phase2: tabulate(PROCESSES, () => 0), e2e: tabulate(PROCESSES, () => 0) };
    const relayBytes = { phase2: 0, e2e: 0 };
    const carried = { phase2: 0, e2e: 0 };
    const forwarded = () => metric(deployment.relayMetrics, "nexus_relay_bytes_forwarded_total");
    /** {@link push}, with the CPU time and relay bytes it took added up for a portal mode. */
    const measure = async (mode: Mode, sessions: number) => {
      if (mode === "direct") return await push(mode, total, sessions);
      const relayBefore = await forwarded();
      const cpuBefore = await cpuNow(pids);
      const seconds = await push(mode, total, sessions);
      const cpuAfter = await cpuNow(pids);
      for (const name of PROCESSES) cpu[mode][name] += cpuAfter[name] - cpuBefore[name];
      relayBytes[mode] += await forwarded() - relayBefore;
      carried[mode] += total;
      return seconds;
    };

    // 1. Throughput. Warm-up: every path compiled, every buffer pool filled.
    progress("warm-up");
    for (const sessions of [1, SESSIONS]) {
      for (const mode of MODES) await push(mode, 32 * MiB, sessions);
    }
    const seconds = tabulate(
      [1, SESSIONS].map(String),
      () => tabulate(MODES, () => [] as number[]),
    );
    for (let i = 0; i < runs; i++) {
      progress(`run ${i + 1}/${runs}: ${megabytes} MiB over 1 and over ${SESSIONS} connections`);
      // Direct first; the two portals take turns going first.
      const order: Mode[] = i % 2 === 0 ? ["direct", "phase2", "e2e"] : ["direct", "e2e", "phase2"];
      for (const sessions of [1, SESSIONS]) {
        for (const mode of order) {
          seconds[sessions][mode].push(await measure(mode, sessions));
        }
      }
    }
    const rate = (list: number[]) => total / 1e6 / median(list);

    // 2. Latency, the modes taking turns in blocks.
    const BLOCKS = 10;
    progress(`${requests} round trips over one connection per mode`);
    const opened = await Promise.all(
      MODES.map((mode) => Deno.connect({ hostname: "127.0.0.1", port: echoPort[mode] })),
    );
    for (const conn of opened) conn.setNoDelay(true);
    const conns = tabulate(MODES, (mode) => opened[MODES.indexOf(mode)]);
    const trips = tabulate(MODES, () => [] as number[]);
    try {
      const warm = Math.max(1, Math.floor(requests / 10));
      for (const mode of MODES) await roundTrips(conns[mode], warm);
      for (let block = 0; block < BLOCKS; block++) {
        const count = Math.floor(requests * (block + 1) / BLOCKS) -
          Math.floor(requests * block / BLOCKS);
        for (const mode of MODES) await roundTrips(conns[mode], count, trips[mode]);
      }
    } finally {
      for (const conn of opened) conn.close();
    }
    const connects = Math.max(1, Math.floor(requests / 10));
    progress(`${connects} new connections per mode, one round trip each`);
    const opens = tabulate(MODES, () => [] as number[]);
    for (const mode of MODES) await connectTrips(echoPort[mode], Math.ceil(connects / 10));
    for (let block = 0; block < BLOCKS; block++) {
      const count = Math.floor(connects * (block + 1) / BLOCKS) -
        Math.floor(connects * block / BLOCKS);
      for (const mode of MODES) await connectTrips(echoPort[mode], count, opens[mode]);
    }

    // Nothing dropped or refused on the way.
    const { routed, agentSessions } = await checkHealth(deployment);

    // The tables.
    const cells = (values: Record<Mode, number>, unit: string) =>
      MODES.map((mode) => `${values[mode].toFixed(0)} ${unit}`);
    const rows: string[][] = [];
    const throughputRow = (label: string, sessions: number) => {
      const r = tabulate(MODES, (m) => rate(seconds[sessions][m]));
      rows.push([
        label,
        ...cells(r, "MB/s"),
        (r.phase2 / r.direct).toFixed(3),
        (r.e2e / r.direct).toFixed(3),
        `**${(r.e2e / r.phase2).toFixed(2)}**`,
      ]);
    };
    const latencyRow = (label: string, times: Record<Mode, number[]>, q: number) => {
      const t = tabulate(MODES, (m) => quantile(times[m], q));
      rows.push([
        label,
        ...cells(t, "µs"),
        `× ${(t.phase2 / t.direct).toFixed(1)}`,
        `× ${(t.e2e / t.direct).toFixed(1)}`,
        `**× ${(t.e2e / t.phase2).toFixed(2)}**`,
      ]);
    };
    throughputRow("Throughput, 1 connection", 1);
    throughputRow(`Throughput, ${SESSIONS} connections (sum)`, SESSIONS);
    latencyRow("64 B round trip, median", trips, 0.5);
    latencyRow("64 B round trip, p99", trips, 0.99);
    latencyRow("New connection + 64 B round trip, median", opens, 0.5);
    latencyRow("New connection + 64 B round trip, p99", opens, 0.99);

    const perGb = (mode: "phase2" | "e2e", name: ProcessName) =>
      cpu[mode][name] / (carried[mode] / 1e9);
    const cpuRow = (label: string, names: readonly ProcessName[]) => {
      const [p, e] = PORTALS.map((mode) => names.reduce((sum, name) => sum + perGb(mode, name), 0));
      // The agent has nothing to do in Phase 2: its ratio says nothing.
      const ratio = names.length === 1 && names[0] === "agent"
        ? "(idle in Phase 2)"
        : `× ${(e / p).toFixed(2)}`;
      return `| ${label} | ${p.toFixed(2)} s | ${e.toFixed(2)} s | ${ratio} |`;
    };
    const services = ["edge", "relay", "gateway", "agent"] as const;
    const gb = (runs * 2 * total / 1e9).toFixed(2);
    console.log(`
Phase 2 (edge → relay → gateway → backend: the gateway terminates and sees the plaintext) against
end to end (edge → relay → gateway → relay → agent → backend: the gateway routes the edge's inner
channel and sees ciphertext only), each service its own process under its permission set, and a
direct loopback TCP connection to the same backends. Throughput: ${megabytes} MiB per run, median of
${runs}; latency: ${requests} round trips over one connection and ${connects} new connections.

| Measure | ${
      MODES.map((m) => LABEL[m]).join(" | ")
    } | Phase 2 / direct | E2E / direct | E2E / Phase 2 |
| --- | --- | --- | --- | --- | --- | --- |
${rows.map((row) => `| ${row.join(" | ")} |`).join("\n")}

CPU time per GB carried, over the throughput runs of each mode (1 and ${SESSIONS} connections,
${gb} GB per mode; ${navigator.hardwareConcurrency} cores shared by all the processes):

| Process | Phase 2 | End to end | E2E / Phase 2 |
| --- | --- | --- | --- |
${services.map((name) => cpuRow(name === "gateway" ? "**gateway**" : name, [name])).join("\n")}
${cpuRow("edge + relay + gateway + agent", services)}
${cpuRow("this process (clients, backends)", ["bench"])}

Relay bytes forwarded per payload byte: Phase 2 ${
      (relayBytes.phase2 / carried.phase2).toFixed(3)
    }, end to end ${(relayBytes.e2e / carried.e2e).toFixed(3)}. Gateway: ${
      (routed / 1e9).toFixed(2)
    } GB of inner ciphertext routed in all; agent: ${agentSessions} sessions; nothing dropped or refused.
`);
  } finally {
    for (const undo of cleanup.reverse()) await undo();
    sink.close();
    echo.close();
    await Deno.remove(`${ROOT}${dir}`, { recursive: true }).catch(() => {});
    await fixture.remove();
  }
}

await main();
