/**
 * Product benchmark: the system against a TLS tunnel with as many hops, on
 * one machine, with the same backends and the same real clients on every
 * path, the paths interleaved.
 *
 * The backends are an `iperf3 -s` and a `redis-server` (`--save ""
 * --appendonly no`), each on a free loopback port; the clients are
 * `iperf3 -c` and `redis-benchmark`. Five paths lead to the same two
 * backends:
 *
 * - **direct**: client → backend (the baseline: what the loopback, the
 *   clients and the backends cost by themselves);
 * - **stunnel chain**: client → stunnel client (TLS 1.3 only,
 *   TLS_AES_256_GCM_SHA384, each side verifying the other's self-signed
 *   certificate, made with `openssl req` for the run) → socat
 *   (`TCP-LISTEN:…,fork,reuseaddr,backlog=1024` → `TCP:…`: a plain
 *   forwarder, as the relay is one; its default backlog of 5 would drop the
 *   SYNs of redis-benchmark's 50 connections) → stunnel server → backend.
 *   Three processes, as many as Phase 2 has hops;
 * - **Deno forwarders (no crypto)**: client → forwarder 1 → forwarder 2 →
 *   forwarder 3 → backend, each a `deno run` process of
 *   scripts/support/plain_forwarder.ts (one listener per backend in each;
 *   `--allow-net=127.0.0.1` alone, and the services' V8 flag): bytes read
 *   from one socket and written to the other through one 64 KiB buffer per
 *   direction, each write awaited before the next read, no encryption and
 *   no framing. What the runtime itself costs for three hops, in the same
 *   run, to read the nexus paths' ratios against;
 * - **nexus (Phase 2)**: client → edge inlet → relay → gateway → backend;
 * - **nexus (end to end)**: client → edge inlet → relay → gateway → relay →
 *   service agent → backend.
 *
 * The system is deployed as an operator would (scripts/support/deployment.ts,
 * as `deno task bench:e2e` deploys it): the authority on a fresh SoftHSM2
 * token, a relay, a service agent, a gateway and an edge, each its own
 * `deno run -P=<set> <service>/main.ts` process under its own permission
 * set. stunnel and socat run as their own processes too, in the
 * foreground, each with its own configuration. TCP_NODELAY is set on both
 * sides of every hop (the system's portals set it, and the forwarders).
 *
 * Workloads, each run going through every path before the next run starts
 * (the paths' order rotating from run to run), median of `--runs`:
 *
 * 1. iperf3 TCP for `--seconds`, 1 stream and 8 streams (`-P 8`), client
 *    to server and back (`-R`): the receiver's bits per second
 *    (`end.sum_received` of `--json`).
 * 2. redis-benchmark SET and GET (`-t set,get --csv`) with one connection
 *    (`-c 1`, `--requests`) and with 50 (`-c 50`, `--requests-c50`):
 *    requests per second, and the median latency (p50) with one
 *    connection.
 * 3. The CPU time (utime + stime, and cutime + cstime for socat's forked
 *    children, from /proc/<pid>/stat, read with `cat`) of each hop's
 *    process over all the iperf3 runs of its path, per GB the receivers
 *    got; and each hop's resident memory (VmRSS, its forked children's
 *    added), sampled near the end of each 8-stream run, the largest kept.
 *
 * Before the runs, every path carries one second of 8-stream iperf3 and a
 * short redis-benchmark (warm-up: compiled code, buffer pools, sessions).
 * After each workload on a nexus path every portal session must have
 * closed, none ended by a failure but for the resets of an iperf3 test's
 * end (its receiver closes its streams with data still in flight: one a
 * stream at most; socat sees them too); after the runs the relay must
 * have dropped no frame (`nexus_relay_frames_dropped_total`) and the
 * gateway refused no inner message.
 *
 * What it needs is installed first when missing: the Debian packages
 * stunnel4, socat, iperf3, redis-server and redis-tools (`apt-get update`
 * once, then `apt-get install -y --no-install-recommends`; as root, else it
 * says what to install). `--write-docs` also writes docs/benchmarks.md
 * (the method, the command, the machine and the tables) and
 * docs/benchmarks.svg (the charts); `--docs-dir DIR` writes them to DIR
 * instead.
 *
 * Usage: deno task bench:compare [--runs N] [--seconds N] [--requests N]
 *   [--requests-c50 N] [--paths direct,stunnel,deno,phase2,e2e]
 *   [--write-docs] [--docs-dir DIR]
 *
 * @module
 */
import { tabulate } from "./support/load.ts";
import { parseArgs } from "node:util";
import { authorityFixture } from "./support/authority_process.ts";
import {
  checkRunning,
  type Cleanup,
  deploy,
  type Deployment,
  type DeploymentHealth,
  deploymentHealth,
  sessionsClosed,
  untilWorks,
} from "./support/deployment.ts";
import { freePort } from "./support/free_port.ts";
import { Lines } from "./support/lines.ts";
import { commandOutput, memoryOf } from "./support/process_usage.ts";
import { ROOT, type ServiceProcess, spawnDeno } from "./support/service_process.ts";
import { serviceV8Flag } from "../src/config/mod.ts";

const USAGE = `Usage: deno task bench:compare [options]

  --runs N           runs of every workload on every path, the median kept (default 3)
  --seconds N        seconds of each iperf3 run (default 5)
  --requests N       redis-benchmark requests with one connection, -c 1 (default 20000)
  --requests-c50 N   redis-benchmark requests with 50 connections, -c 50 (default 5 × --requests)
  --paths LIST       a subset of direct,stunnel,deno,phase2,e2e (default: all five)
  --write-docs       also write docs/benchmarks.md and docs/benchmarks.svg
  --docs-dir DIR     write those two files to DIR instead of docs/
  --help             this text`;

/** The ways from the clients to the backends. */
type Path = "direct" | "stunnel" | "deno" | "phase2" | "e2e";
const PATHS: readonly Path[] = ["direct", "stunnel", "deno", "phase2", "e2e"];
const LABEL: Record<Path, string> = {
  direct: "direct",
  stunnel: "stunnel chain",
  deno: "Deno forwarders (no crypto)",
  phase2: "nexus (Phase 2)",
  e2e: "nexus (end to end)",
};
/** Bar colours of the charts, one per path. */
const COLOUR: Record<Path, string> = {
  direct: "#8c8c8c",
  stunnel: "#3465a4",
  deno: "#75507b",
  phase2: "#f57900",
  e2e: "#4e9a06",
};
/** The paths with hops (every one but direct). */
type Tunnel = Exclude<Path, "direct">;
/**
 * What a hop is on every path: stunnel client / forwarder 1 / edge, socat / forwarder 2 / relay,
 * stunnel server / forwarder 3 / gateway.
 */
type Role = "entry" | "middle" | "exit" | "agent";
const ROLES: readonly Role[] = ["entry", "middle", "exit", "agent"];
const ROLE_LABEL: Record<Role, string> = {
  entry: "entry: stunnel client · forwarder 1 · edge",
  middle: "middle: socat · forwarder 2 · relay",
  exit: "exit: stunnel server · forwarder 3 · gateway",
  agent: "service agent (end to end only)",
};

/** What to install, and from which Debian package, when it is not on PATH. */
const TOOLS = [
  { command: "stunnel4", pkg: "stunnel4" },
  { command: "socat", pkg: "socat" },
  { command: "iperf3", pkg: "iperf3" },
  { command: "redis-server", pkg: "redis-server" },
  { command: "redis-benchmark", pkg: "redis-tools" },
  { command: "openssl", pkg: "openssl" },
] as const;

/** The TLS of the stunnel chain: TLS 1.3 only, one cipher suite. */
const TLS_VERSION = "TLSv1.3";
const CIPHERSUITE = "TLS_AES_256_GCM_SHA384";
const STREAMS = 8;
const MANY_CLIENTS = 50;
/** Lines of a tool's output kept for error messages. */
const KEPT = 60;
/** How long a tool has to exit once asked to, before it is killed. */
const GRACE_MS = 5000;
/** The plain forwarder of the `deno` path. */
const FORWARDER = new URL("./support/plain_forwarder.ts", import.meta.url).pathname;

function progress(line: string): void {
  console.error(`[bench:compare] ${line}`);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------
// The tools: installed when missing, run as processes of their own.

/** True when `command` is an executable file in a directory of PATH (or an sbin). */
async function onPath(command: string): Promise<boolean> {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin"];
  for (const dir of dirs.filter((dir) => dir !== "")) {
    try {
      const info = await Deno.stat(`${dir}/${command}`);
      if (info.isFile && ((info.mode ?? 0) & 0o111) !== 0) return true;
    } catch { /* not there */ }
  }
  return false;
}

/** Installs the Debian packages of the tools that are missing (as root), else says which. */
async function ensureTools(): Promise<void> {
  const missing: string[] = [];
  for (const tool of TOOLS) {
    if (!await onPath(tool.command) && !missing.includes(tool.pkg)) missing.push(tool.pkg);
  }
  if (missing.length === 0) return;
  const uid = (await commandOutput("id", ["-u"])).trim();
  const command = `apt-get install -y --no-install-recommends ${missing.join(" ")}`;
  if (uid !== "0") {
    throw new Error(
      `missing Debian packages: ${missing.join(", ")}; install them as root ` +
        `(sudo apt-get update && sudo ${command}) and run again`,
    );
  }
  if (!await onPath("apt-get")) {
    throw new Error(`missing: ${missing.join(", ")}, and no apt-get to install them with`);
  }
  progress(`installing Debian packages: ${missing.join(" ")} (apt-get update, then install)`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  for (
    const args of [["update", "-qq"], [
      "install",
      "-y",
      "-qq",
      "--no-install-recommends",
      ...missing,
    ]]
  ) {
    const out = await new Deno.Command("apt-get", { args, env, stdout: "piped", stderr: "piped" })
      .output();
    if (!out.success) {
      const text = new TextDecoder().decode(out.stderr).trim();
      throw new Error(`apt-get ${args.join(" ")} failed (${out.code}):\n${text}`);
    }
  }
  for (const tool of TOOLS) {
    if (!await onPath(tool.command)) {
      throw new Error(`${tool.command} still missing after installing ${tool.pkg}`);
    }
  }
  progress("Debian packages installed");
}

/** A long-running tool (a backend, stunnel, socat) in its own process. */
class Tool {
  readonly name: string;
  readonly pid: number;
  readonly stdout: Lines;
  readonly stderr: Lines;
  exited: Deno.CommandStatus | null = null;
  readonly #child: Deno.ChildProcess;
  readonly #status: Promise<Deno.CommandStatus>;

  constructor(name: string, command: string, args: string[], onLine?: (line: string) => void) {
    this.name = name;
    this.#child = new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#child.pid;
    this.stdout = new Lines(this.#child.stdout, { keep: KEPT, onLine });
    this.stderr = new Lines(this.#child.stderr, { keep: KEPT, onLine });
    this.#status = this.#child.status.then((status) => this.exited = status);
  }

  /** Its last lines of output. */
  output(): string {
    return [this.stdout.text(20), this.stderr.text(20)].filter((text) => text !== "").join("\n");
  }

  /** Throws when it has exited. */
  check(): void {
    if (this.exited !== null) {
      throw new Error(`${this.name} exited (${this.exited.code}):\n${this.output()}`);
    }
  }

  /** SIGTERM, then SIGKILL after a grace period; resolves once it has exited. */
  async stop(): Promise<void> {
    if (this.exited === null) {
      try {
        this.#child.kill("SIGTERM");
      } catch { /* it just exited */ }
    }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* gone */ }
    }, GRACE_MS);
    await this.#status;
    clearTimeout(timer);
    await Promise.all([this.stdout.done, this.stderr.done]);
  }
}

/**
 * Runs a client to the end, killed after `ms`; `during` is called once,
 * `at` ms after it started, while it runs.
 */
async function runClient(
  command: string,
  args: string[],
  ms: number,
  during?: { at: number; call: () => Promise<void> },
): Promise<{ code: number; stdout: string; stderr: string }> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ms);
  let sampler: ReturnType<typeof setTimeout> | undefined;
  let sampled: Promise<void> = Promise.resolve();
  try {
    const child = new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: controller.signal,
    }).spawn();
    if (during !== undefined) {
      sampler = setTimeout(() => sampled = during.call(), during.at);
    }
    const out = await child.output();
    clearTimeout(sampler);
    await sampled;
    if (controller.signal.aborted) {
      throw new Error(`${command} ${args.join(" ")}: no result after ${ms} ms`);
    }
    const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
  } finally {
    clearTimeout(timer);
    clearTimeout(sampler);
  }
}

/** The first line of what `command args` prints (stdout or stderr), whatever its exit code. */
async function versionLine(command: string, args: string[], pattern?: RegExp): Promise<string> {
  try {
    const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" })
      .output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    const lines = text.split("\n").map((line) => line.trim()).filter((line) => line !== "");
    return (pattern === undefined ? lines[0] : lines.find((line) => pattern.test(line))) ??
      "unknown";
  } catch {
    return "unknown";
  }
}

// ---------------------------------------------------------------------------
// What a process uses.

/** CPU seconds of each pid: its own (utime + stime) and its reaped children's (cutime + cstime). */
async function cpuOf(pids: number[]): Promise<number[]> {
  const text = await commandOutput("cat", pids.map((pid) => `/proc/${pid}/stat`));
  const lines = text.split("\n").filter((line) => line !== "");
  if (lines.length !== pids.length) throw new Error(`cat /proc/<pid>/stat: ${lines.length} lines`);
  return lines.map((stat) => {
    // Fields after the command name (which may hold spaces) start at state.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
    return (fields[11] + fields[12] + fields[13] + fields[14]) / 100; // USER_HZ
  });
}

/** The pids of `pid`'s children now (socat forks one per connection). */
async function childrenOf(pid: number): Promise<number[]> {
  const out = await new Deno.Command("cat", {
    args: [`/proc/${pid}/task/${pid}/children`],
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(out.stdout).split(/\s+/).filter((s) => s !== "").map(Number);
}

/** Waits (at most 5 s) until none of `pids` has a child left: their CPU time is then counted. */
async function childrenReaped(pids: number[]): Promise<void> {
  const until = Date.now() + 5000;
  while (Date.now() < until) {
    const left = (await Promise.all(pids.map(childrenOf))).flat();
    if (left.length === 0) return;
    await sleep(50);
  }
}

/** Resident memory, KiB, of `pids` and their children, summed. */
async function residentKiB(pids: number[]): Promise<number> {
  const memory = await memoryOf(pids);
  let total = pids.reduce((sum, pid) => sum + (memory.get(pid)?.rss ?? 0), 0);
  for (const child of (await Promise.all(pids.map(childrenOf))).flat()) {
    // A child may end before it is read (a zombie has no VmRSS).
    const rss = await memoryOf([child]).then((m) => m.get(child)?.rss ?? 0, () => 0);
    if (Number.isFinite(rss)) total += rss;
  }
  return total;
}

// ---------------------------------------------------------------------------
// Backends, the stunnel chain, and probes.

/** One PING answered by +PONG through `port`. */
async function redisPing(port: number): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode("PING\r\n"));
    const buffer = new Uint8Array(64);
    let text = "";
    while (!text.includes("\r\n")) {
      const n = await conn.read(buffer);
      if (n === null) throw new Error("closed before answering PING");
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    if (!text.startsWith("+PONG")) throw new Error(`PING answered ${JSON.stringify(text)}`);
  } finally {
    conn.close();
  }
}

/** A TCP connection to `port` that opens (and is closed at once). */
async function connects(port: number): Promise<void> {
  (await Deno.connect({ hostname: "127.0.0.1", port })).close();
}

/** The backends, each on a free port. */
async function startBackends(cleanup: Cleanup[]): Promise<{ iperf: number; redis: number }> {
  const iperf = freePort();
  // --forceflush: its stdout is a pipe, and "Server listening" must come at once.
  const iperfServer = new Tool("iperf3 -s", "iperf3", [
    "-s",
    "--forceflush",
    "-B",
    "127.0.0.1",
    "-p",
    String(iperf),
  ]);
  cleanup.push(() => iperfServer.stop());
  const redis = freePort();
  const redisServer = new Tool("redis-server", "redis-server", [
    "--bind",
    "127.0.0.1",
    "--port",
    String(redis),
    "--save",
    "",
    "--appendonly",
    "no",
    "--daemonize",
    "no",
    "--loglevel",
    "warning",
  ]);
  cleanup.push(() => redisServer.stop());
  if (await iperfServer.stdout.waitFor(/Server listening/, 10_000) === null) iperfServer.check();
  await untilWorks(() => redisPing(redis), "redis-server", 10_000);
  iperfServer.check();
  redisServer.check();
  return { iperf, redis };
}

/** The stunnel chain's processes and entry ports. */
interface StunnelChain {
  ports: { iperf: number; redis: number };
  tools: Tool[];
  client: Tool;
  socat: Tool[];
  server: Tool;
  /** The protocols and cipher suites stunnel's log says it negotiated, e.g. `TLSv1.3 TLS_…`. */
  negotiated: Set<string>;
}

/**
 * A throwaway self-signed certificate (P-256) and key in `dir`, for
 * `name`.
 */
async function selfSigned(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const cert = `${dir}/${name}.crt`;
  const key = `${dir}/${name}.key`;
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "2",
      "-subj",
      `/CN=${name}`,
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`openssl req failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  await Deno.chmod(key, 0o600);
  return { cert, key };
}

/** A stunnel configuration: global options, then one section per service. */
function stunnelConfig(
  global: Record<string, string>,
  services: Record<string, Record<string, string>>,
): string {
  const lines = (options: Record<string, string>) =>
    Object.entries(options).map(([key, value]) =>
      key.startsWith("socket") ? `socket = ${value}` : `${key} = ${value}`
    );
  return [
    ...lines(global),
    ...Object.entries(services).flatMap(([name, options]) => ["", `[${name}]`, ...lines(options)]),
    "",
  ].join("\n");
}

/**
 * stunnel client → socat → stunnel server → the backends, one service per
 * backend in each stunnel and one socat per backend.
 */
async function startStunnelChain(
  dir: string,
  backends: { iperf: number; redis: number },
  cleanup: Cleanup[],
): Promise<StunnelChain> {
  const server = await selfSigned(dir, "stunnel-server");
  const client = await selfSigned(dir, "stunnel-client");
  const names = ["iperf", "redis"] as const;
  const port = () => tabulate(names, () => freePort());
  const entry = port(); // the stunnel client accepts here
  const middle = port(); // socat
  const exit = port(); // the stunnel server
  const common = {
    foreground: "yes",
    pid: "",
    syslog: "no",
    debug: "info", // a line per connection, with the protocol and cipher suite negotiated
    sslVersionMin: TLS_VERSION,
    sslVersionMax: TLS_VERSION,
    ciphersuites: CIPHERSUITE,
    verifyPeer: "yes",
    socket1: "l:TCP_NODELAY=1",
    socket2: "r:TCP_NODELAY=1",
    TIMEOUTclose: "0",
  };
  await Deno.writeTextFile(
    `${dir}/stunnel-server.conf`,
    stunnelConfig(
      { ...common, cert: server.cert, key: server.key, CAfile: client.cert },
      tabulate(names, (name) => ({
        accept: `127.0.0.1:${exit[name]}`,
        connect: `127.0.0.1:${backends[name]}`,
      })),
    ),
  );
  await Deno.writeTextFile(
    `${dir}/stunnel-client.conf`,
    stunnelConfig(
      { ...common, cert: client.cert, key: client.key, CAfile: server.cert },
      tabulate(names, (name) => ({
        client: "yes",
        accept: `127.0.0.1:${entry[name]}`,
        connect: `127.0.0.1:${middle[name]}`,
      })),
    ),
  );
  const negotiated = new Set<string>();
  const watch = (line: string) => {
    const found = /(TLSv[\d.]+) ciphersuite: (\S+)/.exec(line);
    if (found !== null) negotiated.add(`${found[1]} ${found[2]}`);
  };
  const tools: Tool[] = [];
  const start = (name: string, command: string, args: string[], onLine?: (l: string) => void) => {
    const tool = new Tool(name, command, args, onLine);
    tools.push(tool);
    cleanup.push(() => tool.stop());
    return tool;
  };
  const stunnelServer = start("stunnel server", "stunnel4", [`${dir}/stunnel-server.conf`]);
  const socat = names.map((name) =>
    start(`socat (${name})`, "socat", [
      `TCP-LISTEN:${middle[name]},bind=127.0.0.1,fork,reuseaddr,nodelay,backlog=1024`,
      `TCP:127.0.0.1:${exit[name]},nodelay`,
    ])
  );
  const stunnelClient = start(
    "stunnel client",
    "stunnel4",
    [`${dir}/stunnel-client.conf`],
    watch,
  );
  try {
    await untilWorks(() => redisPing(entry.redis), "stunnel chain redis", 15_000);
    await untilWorks(() => connects(middle.iperf), "socat (iperf)", 15_000);
  } catch (error) {
    for (const tool of tools) tool.check();
    throw error;
  }
  return {
    ports: entry,
    tools,
    client: stunnelClient,
    socat,
    server: stunnelServer,
    negotiated,
  };
}

/** The Deno forwarders' chain: its entry ports and its three processes, client side first. */
interface ForwarderChain {
  ports: { iperf: number; redis: number };
  forwarders: ServiceProcess[];
}

/**
 * forwarder 1 → forwarder 2 → forwarder 3 → the backends: three `deno run`
 * processes of scripts/support/plain_forwarder.ts, each with one listener
 * per backend (a free port, printed), started from the backends' side.
 * Only `--allow-net=127.0.0.1`, and the services' V8 flag.
 */
async function startForwarderChain(
  backends: { iperf: number; redis: number },
  cleanup: Cleanup[],
): Promise<ForwarderChain> {
  const names = ["iperf", "redis"] as const;
  const forwarders: ServiceProcess[] = [];
  let next: { iperf: number; redis: number } = backends;
  for (let hop = 3; hop >= 1; hop--) {
    const forwarder = spawnDeno(`forwarder ${hop}`, [
      "--allow-net=127.0.0.1",
      serviceV8Flag(),
      FORWARDER,
      ...names.flatMap((name) => ["--listen", "0", "--target", `127.0.0.1:${next[name]}`]),
    ], { stdout: { keep: KEPT }, stderr: { keep: KEPT } });
    cleanup.push(() => forwarder.stop(GRACE_MS));
    forwarders.unshift(forwarder);
    // One `listening <port>` line per listener, in the order of the arguments.
    const last = await forwarder.stdout.waitFor(/^listening \d+$/, 30_000, names.length - 1)
      .catch(() => null);
    const ports = forwarder.stdout.lines.filter((line) => /^listening \d+$/.test(line))
      .map((line) => Number(line.slice("listening ".length)));
    if (last === null || ports.length !== names.length) {
      throw new Error(
        `forwarder ${hop} did not listen:\n${forwarder.stdout.text(20)}\n${
          forwarder.stderr.text(20)
        }`,
      );
    }
    next = { iperf: ports[0], redis: ports[1] };
  }
  try {
    await untilWorks(() => redisPing(next.redis), "Deno forwarders redis", 15_000);
  } catch (error) {
    forwardersRunning(forwarders);
    throw error;
  }
  return { ports: next, forwarders };
}

/** Throws when one of `forwarders` has exited. */
function forwardersRunning(forwarders: ServiceProcess[]): void {
  for (const forwarder of forwarders) {
    if (forwarder.exited !== null) {
      throw new Error(
        `${forwarder.name} exited (${forwarder.exited.code}):\n${forwarder.stderr.text(20)}`,
      );
    }
  }
}

// ---------------------------------------------------------------------------
// The clients.

/** What an iperf3 run moved: the receiver's bits per second and bytes. */
interface IperfResult {
  bitsPerSecond: number;
  bytes: number;
}

async function iperf(
  port: number,
  seconds: number,
  streams: number,
  reverse: boolean,
  what: string,
  during?: { at: number; call: () => Promise<void> },
): Promise<IperfResult> {
  const args = ["-c", "127.0.0.1", "-p", String(port), "-t", String(seconds)];
  args.push("-P", String(streams), "--json", ...reverse ? ["-R"] : []);
  const out = await runClient("iperf3", args, seconds * 1000 + 60_000, during);
  let report: {
    error?: string;
    end?: { sum_received?: { bits_per_second?: number; bytes?: number } };
  };
  try {
    report = JSON.parse(out.stdout);
  } catch {
    throw new Error(`${what}: iperf3 ${args.join(" ")} (${out.code}): ${out.stdout}${out.stderr}`);
  }
  if (report.error !== undefined || out.code !== 0) {
    throw new Error(`${what}: iperf3 ${args.join(" ")} failed (${out.code}): ${report.error}`);
  }
  const received = report.end?.sum_received;
  if (!received?.bits_per_second || !received.bytes) {
    throw new Error(`${what}: iperf3 reported nothing received`);
  }
  return { bitsPerSecond: received.bits_per_second, bytes: received.bytes };
}

/** Requests per second and p50 latency (ms) of each redis-benchmark test. */
type RedisResult = Record<"SET" | "GET", { rps: number; p50: number }>;

async function redisBenchmark(
  port: number,
  clients: number,
  requests: number,
  what: string,
): Promise<RedisResult> {
  const args = ["-h", "127.0.0.1", "-p", String(port), "-c", String(clients)];
  args.push("-n", String(requests), "-t", "set,get", "--csv");
  // At least 250 requests a second, or it is taken as stuck.
  const out = await runClient("redis-benchmark", args, 60_000 + requests * 8);
  if (out.code !== 0) {
    throw new Error(
      `${what}: redis-benchmark ${args.join(" ")} failed (${out.code}): ${out.stderr}`,
    );
  }
  // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",…
  const rows = out.stdout.split("\n").filter((line) => line.startsWith('"'))
    .map((line) => line.split(",").map((cell) => cell.replace(/^"|"$/g, "")));
  const header = rows[0] ?? [];
  const column = (name: string) => header.indexOf(name);
  const result: Partial<RedisResult> = {};
  for (const row of rows.slice(1)) {
    const test = row[0];
    if (test !== "SET" && test !== "GET") continue;
    result[test] = {
      rps: Number(row[column("rps")]),
      p50: Number(row[column("p50_latency_ms")]),
    };
  }
  for (const test of ["SET", "GET"] as const) {
    const got = result[test];
    if (got === undefined || !(got.rps > 0) || !Number.isFinite(got.p50)) {
      throw new Error(`${what}: no ${test} result from redis-benchmark:\n${out.stdout}`);
    }
  }
  return result as RedisResult;
}

// ---------------------------------------------------------------------------
// The results.

/** A row of the main table. */
interface Row {
  label: string;
  unit: "Gbit/s" | "req/s" | "ms";
  /** Values of every run, by path. */
  values: Record<Path, number[]>;
}

function figure(value: number, unit: Row["unit"]): string {
  if (unit === "Gbit/s") return `${value.toFixed(2)} Gbit/s`;
  if (unit === "req/s") return `${value.toFixed(0)} req/s`;
  return `${value.toFixed(3)} ms`;
}

/** nexus / stunnel: a fraction for what is better higher, `× n` for latencies. */
function ratio(nexus: number, stunnel: number, unit: Row["unit"]): string {
  const r = nexus / stunnel;
  return unit === "ms" ? `× ${r.toFixed(2)}` : r.toFixed(2);
}

/** A markdown table, its columns padded as `deno fmt` pads them. */
function table(header: string[], rows: string[][]): string {
  const length = (text: string) => Array.from(text).length;
  const widths = header.map((_, c) =>
    Math.max(3, ...[header, ...rows].map((row) => length(row[c] ?? "")))
  );
  const line = (cells: string[]) =>
    `| ${cells.map((cell, c) => cell + " ".repeat(widths[c] - length(cell))).join(" | ")} |`;
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/**
 * The ratio columns that make sense for `paths`: the Deno forwarders' floor
 * and each nexus path against stunnel.
 */
function ratioColumns(paths: readonly Path[]): { path: Tunnel; label: string }[] {
  if (!paths.includes("stunnel")) return [];
  return [
    { path: "deno" as const, label: "Deno floor / stunnel" },
    { path: "phase2" as const, label: "Phase 2 / stunnel" },
    { path: "e2e" as const, label: "E2E / stunnel" },
  ].filter(({ path }) => paths.includes(path));
}

function mainTable(paths: readonly Path[], rows: Row[]): string {
  const ratios = ratioColumns(paths);
  return table(
    ["workload", ...paths.map((path) => LABEL[path]), ...ratios.map((r) => r.label)],
    rows.map((row) => {
      const m = tabulate(paths, (path) => median(row.values[path]));
      return [
        row.label,
        ...paths.map((path) => figure(m[path], row.unit)),
        ...ratios.map((r) => ratio(m[r.path], m.stunnel, row.unit)),
      ];
    }),
  );
}

/** A per-hop table (CPU per GB, memory): `value(path, role)` undefined where a path has no such hop. */
function hopTable(
  paths: readonly Tunnel[],
  value: (path: Tunnel, role: Role) => number | undefined,
  format: (value: number) => string,
): string {
  const ratios = ratioColumns(paths);
  const rows = [...ROLES, "all" as const].map((role) => {
    const cell = (path: Tunnel) =>
      role === "all" ? ROLES.reduce((sum, r) => sum + (value(path, r) ?? 0), 0) : value(path, role);
    const cells = tabulate(paths, cell);
    return [
      role === "all" ? "**all hops**" : ROLE_LABEL[role],
      ...paths.map((path) => cells[path] === undefined ? "—" : format(cells[path])),
      ...ratios.map((r) => {
        const [n, s] = [cells[r.path], cells.stunnel];
        return n === undefined || s === undefined || s === 0 ? "—" : `× ${(n / s).toFixed(2)}`;
      }),
    ];
  }).filter((row) => row.slice(1, 1 + paths.length).some((cell) => cell !== "—"));
  return table(["hop", ...paths.map((path) => LABEL[path]), ...ratios.map((r) => r.label)], rows);
}

// ---------------------------------------------------------------------------
// The charts.

const escapeXml = (text: string) =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** A round number at or above `max`, and the step of its ticks. */
function niceScale(max: number): { top: number; step: number } {
  if (!(max > 0)) return { top: 1, step: 0.25 };
  const power = 10 ** Math.floor(Math.log10(max));
  for (const [m, ticks] of [[1, 4], [1.5, 3], [2, 4], [2.5, 5], [3, 3], [4, 4], [5, 5], [6, 3]]) {
    if (m * power >= max) return { top: m * power, step: (m * power) / ticks };
  }
  return { top: 8 * power, step: 2 * power };
}

/** A short label for a value: three significant figures at most. */
function short(value: number): string {
  if (value === 0) return "0";
  if (value >= 1000) return `${Number((value / 1000).toPrecision(3))}k`;
  return value >= 100 ? value.toFixed(0) : value.toPrecision(3);
}

/** A tick's label: the round number without trailing zeros. */
const tickLabel = (value: number) =>
  value >= 1000 ? `${Number((value / 1000).toPrecision(3))}k` : `${Number(value.toPrecision(3))}`;

/** One grouped bar chart at (x, y), `width` × `height`. */
function barChart(
  x: number,
  y: number,
  width: number,
  height: number,
  title: string,
  unit: Row["unit"],
  paths: readonly Path[],
  groups: { label: string; values: Record<Path, number> }[],
): string {
  const left = 48;
  const top = 28;
  const bottom = 36;
  const plotW = width - left - 8;
  const plotH = height - top - bottom;
  const max = Math.max(...groups.flatMap((g) => paths.map((p) => g.values[p])));
  const { top: topValue, step } = niceScale(max);
  const out: string[] = [`<g transform="translate(${x},${y})">`];
  out.push(
    `<text x="${left}" y="16" font-size="13" font-weight="bold">${escapeXml(title)}</text>`,
  );
  for (let tick = 0; tick <= topValue + step / 2; tick += step) {
    const ty = top + plotH - (tick / topValue) * plotH;
    out.push(
      `<line x1="${left}" y1="${ty.toFixed(1)}" x2="${left + plotW}" y2="${
        ty.toFixed(1)
      }" stroke="#dddddd"/>`,
      `<text x="${left - 4}" y="${(ty + 4).toFixed(1)}" font-size="10" text-anchor="end">${
        escapeXml(tickLabel(tick))
      }</text>`,
    );
  }
  const groupW = plotW / groups.length;
  const barW = Math.min(40, (groupW * 0.8) / paths.length);
  groups.forEach((group, g) => {
    const start = left + g * groupW + (groupW - barW * paths.length) / 2;
    paths.forEach((path, p) => {
      const value = group.values[path];
      const h = (value / topValue) * plotH;
      const bx = start + p * barW;
      const by = top + plotH - h;
      out.push(
        `<rect x="${bx.toFixed(1)}" y="${by.toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${
          h.toFixed(1)
        }" fill="${COLOUR[path]}"><title>${
          escapeXml(`${LABEL[path]}: ${figure(value, unit)}`)
        }</title></rect>`,
        `<text x="${(bx + (barW - 2) / 2).toFixed(1)}" y="${
          (by - 3).toFixed(1)
        }" font-size="9" text-anchor="middle">${escapeXml(short(value))}</text>`,
      );
    });
    out.push(
      `<text x="${(left + g * groupW + groupW / 2).toFixed(1)}" y="${
        top + plotH + 16
      }" font-size="11" text-anchor="middle">${escapeXml(group.label)}</text>`,
    );
  });
  out.push(
    `<line x1="${left}" y1="${top + plotH}" x2="${left + plotW}" y2="${
      top + plotH
    }" stroke="#333333"/>`,
    "</g>",
  );
  return out.join("\n");
}

/** The SVG: throughput, then redis with one connection (p50 latency, req/s); a legend. */
function chartsSvg(
  paths: readonly Path[],
  throughput: { label: string; values: Record<Path, number> }[],
  latency: { label: string; values: Record<Path, number> }[],
  rps: { label: string; values: Record<Path, number> }[],
  subtitle: string,
): string {
  const width = 860;
  const height = 700;
  // Each entry as wide as its label (about 6.5 px a character at 12 px), then a gap.
  let at = 20;
  const legend = paths.map((path) => {
    const x = at;
    at += 20 + Math.ceil(LABEL[path].length * 6.5) + 24;
    return `<rect x="${x}" y="44" width="14" height="14" fill="${COLOUR[path]}"/>` +
      `<text x="${x + 20}" y="56" font-size="12">${escapeXml(LABEL[path])}</text>`;
  }).join("\n");
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="20" y="24" font-size="16" font-weight="bold">Nexus against a stunnel chain: same backends, same clients</text>`,
    `<text x="20" y="38" font-size="11" fill="#555555">${escapeXml(subtitle)}</text>`,
    legend,
    barChart(
      10,
      70,
      840,
      300,
      "iperf3 TCP throughput, Gbit/s (higher is better)",
      "Gbit/s",
      paths,
      throughput,
    ),
    barChart(
      10,
      390,
      420,
      300,
      "redis -c 1: p50 latency, ms (lower is better)",
      "ms",
      paths,
      latency,
    ),
    barChart(430, 390, 420, 300, "redis -c 1: requests/s (higher is better)", "req/s", paths, rps),
    `</svg>`,
    "",
  ].join("\n");
}

// ---------------------------------------------------------------------------

/** Positive integer option, else an error naming it. */
function positive(name: string, value: string | undefined): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} wants a positive integer`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: "string", default: "3" },
      seconds: { type: "string", default: "5" },
      requests: { type: "string", default: "20000" },
      "requests-c50": { type: "string" },
      paths: { type: "string", default: PATHS.join(",") },
      "write-docs": { type: "boolean", default: false },
      "docs-dir": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const runs = positive("runs", values.runs);
  const seconds = positive("seconds", values.seconds);
  const requests = positive("requests", values.requests);
  const requestsMany = values["requests-c50"] === undefined
    ? 5 * requests
    : positive("requests-c50", values["requests-c50"]);
  const asked = values.paths.split(",").map((p) => p.trim()).filter((p) => p !== "");
  for (const path of asked) {
    if (!(PATHS as readonly string[]).includes(path)) {
      throw new Error(`--paths: unknown path ${path} (${PATHS.join(", ")})`);
    }
  }
  const paths = PATHS.filter((path) => asked.includes(path));
  if (paths.length === 0) throw new Error("--paths names no path");
  const tunnels = paths.filter((path): path is Tunnel => path !== "direct");
  const docsDir = values["docs-dir"] ?? `${ROOT}docs`;

  await ensureTools();

  const cleanup: Cleanup[] = [];
  const temp = await Deno.makeTempDir({ prefix: "nexus-bench-compare-" });
  const fixture = tunnels.some((path) => path === "phase2" || path === "e2e")
    ? await authorityFixture()
    : null;
  const dir = `.state/bench-compare-${crypto.randomUUID()}`;
  try {
    progress(`backends: iperf3 -s and redis-server`);
    const backends = await startBackends(cleanup);
    const ports: Partial<Record<Path, { iperf: number; redis: number }>> = { direct: backends };
    const hops: Partial<Record<Tunnel, Partial<Record<Role, { name: string; pids: number[] }>>>> =
      {};
    const checks: (() => void)[] = [];

    let chain: StunnelChain | undefined;
    if (paths.includes("stunnel")) {
      progress(`stunnel chain: stunnel client → socat → stunnel server (${TLS_VERSION} only)`);
      chain = await startStunnelChain(temp, backends, cleanup);
      ports.stunnel = chain.ports;
      hops.stunnel = {
        entry: { name: "stunnel client", pids: [chain.client.pid] },
        middle: { name: "socat", pids: chain.socat.map((tool) => tool.pid) },
        exit: { name: "stunnel server", pids: [chain.server.pid] },
      };
      const tools = chain.tools;
      checks.push(() => tools.forEach((tool) => tool.check()));
    }

    if (paths.includes("deno")) {
      progress("Deno forwarders: forwarder 1 → forwarder 2 → forwarder 3 (no crypto)");
      const forwarders = await startForwarderChain(backends, cleanup);
      ports.deno = forwarders.ports;
      const [first, second, third] = forwarders.forwarders;
      hops.deno = {
        entry: { name: "forwarder 1", pids: [first.pid] },
        middle: { name: "forwarder 2", pids: [second.pid] },
        exit: { name: "forwarder 3", pids: [third.pid] },
      };
      checks.push(() => forwardersRunning(forwarders.forwarders));
    }

    let deployment: Deployment | undefined;
    if (fixture !== null) {
      await Deno.mkdir(`${ROOT}${dir}`, { recursive: true, mode: 0o700 });
      deployment = await deploy({
        fixture,
        dir,
        backends: { iperf: backends.iperf, redis: backends.redis },
        probe: { outlet: "redis", check: redisPing },
        cleanup,
        progress,
      });
      const d = deployment;
      checks.push(() => checkRunning(d));
      const { edge, relay, gateway, agent } = d.pids;
      const nexusHops = {
        entry: { name: "edge", pids: [edge] },
        middle: { name: "relay", pids: [relay] },
        exit: { name: "gateway", pids: [gateway] },
      };
      for (const mode of ["phase2", "e2e"] as const) {
        ports[mode] = { iperf: d.inlets[mode].iperf, redis: d.inlets[mode].redis };
      }
      hops.phase2 = nexusHops;
      hops.e2e = { ...nexusHops, agent: { name: "service agent", pids: [agent] } };
    }
    const port = (path: Path) => ports[path]!;
    // Sessions that ended in a failure at the gateway's or the agent's outlets so far, and
    // those of them that an iperf3 test's end explains: its receiver closes its streams with
    // data still in flight, so each stream may end in a reset (socat and stunnel see them too).
    let failedSoFar = deployment === undefined ? 0 : (await deploymentHealth(deployment)).failed;
    let resets = 0;
    /**
     * After a workload on `path`: every hop still runs, socat's children are reaped, the
     * portal sessions are all closed, and at most `allowed` of them ended in a failure.
     */
    const settle = async (path: Path, what: string, allowed: number, pids: number[] = []) => {
      checks.forEach((check) => check());
      await childrenReaped(pids);
      if (deployment === undefined || (path !== "phase2" && path !== "e2e")) return;
      await sessionsClosed(deployment);
      const { failed } = await deploymentHealth(deployment);
      const added = failed - failedSoFar;
      failedSoFar = failed;
      if (added > allowed) {
        throw new Error(`${what}: ${added} portal sessions failed (at most ${allowed} expected)`);
      }
      resets += added;
    };

    // Warm-up: every path carries data once before anything is measured.
    progress("warm-up: 1 s of iperf3 -P 8 and a short redis-benchmark on every path");
    for (const path of paths) {
      const what = `${LABEL[path]}: warm-up`;
      await iperf(port(path).iperf, 1, STREAMS, false, what);
      await settle(path, what, STREAMS);
      await redisBenchmark(port(path).redis, MANY_CLIENTS, Math.min(2000, requestsMany), what);
      await settle(path, what, 0);
    }

    const iperfWorkloads = [1, STREAMS].flatMap((streams) =>
      [false, true].map((reverse) => ({ streams, reverse }))
    );
    const iperfLabel = (streams: number, reverse: boolean) =>
      `iperf3 TCP, ${streams === 1 ? "1 stream" : `${streams} streams`}, ${
        reverse ? "server → client (-R)" : "client → server"
      }`;
    const empty = () => tabulate(PATHS, () => [] as number[]);
    const iperfRows = iperfWorkloads.map(({ streams, reverse }) => ({
      label: iperfLabel(streams, reverse),
      unit: "Gbit/s" as const,
      values: empty(),
    }));
    const redisRow = (label: string, unit: Row["unit"]) => ({ label, unit, values: empty() });
    const redisRows = {
      set1: redisRow("redis-benchmark SET, -c 1", "req/s"),
      get1: redisRow("redis-benchmark GET, -c 1", "req/s"),
      setMany: redisRow(`redis-benchmark SET, -c ${MANY_CLIENTS}`, "req/s"),
      getMany: redisRow(`redis-benchmark GET, -c ${MANY_CLIENTS}`, "req/s"),
      setP50: redisRow("redis-benchmark SET, -c 1, p50 latency", "ms"),
      getP50: redisRow("redis-benchmark GET, -c 1, p50 latency", "ms"),
    };
    // CPU seconds of each hop over the iperf3 runs of its path, what those moved, peak memory.
    const cpu = tabulate(tunnels, () => tabulate(ROLES, () => 0));
    const moved = tabulate(tunnels, () => 0);
    const memory = tabulate(tunnels, () => tabulate(ROLES, () => 0));
    const hopsOf = (path: Tunnel) =>
      ROLES.filter((role) => hops[path]?.[role] !== undefined)
        .map((role) => ({ role, pids: hops[path]![role]!.pids }));

    for (let run = 0; run < runs; run++) {
      // Every path in each run, the order rotating from run to run.
      const order = paths.map((_, i) => paths[(i + run) % paths.length]);
      for (const [w, { streams, reverse }] of iperfWorkloads.entries()) {
        progress(
          `run ${run + 1}/${runs}: ${iperfLabel(streams, reverse)}, ${seconds} s: ${
            order.map((p) => LABEL[p]).join(", ")
          }`,
        );
        for (const path of order) {
          const what = `${LABEL[path]}: ${iperfLabel(streams, reverse)}`;
          if (path === "direct") {
            iperfRows[w].values[path].push(
              (await iperf(port(path).iperf, seconds, streams, reverse, what)).bitsPerSecond / 1e9,
            );
            await settle(path, what, 0);
            continue;
          }
          const measured = hopsOf(path);
          const pids = measured.flatMap((hop) => hop.pids);
          const before = await cpuOf(pids);
          const sample = streams === STREAMS
            ? {
              at: Math.max(500, seconds * 1000 - 500),
              call: async () => {
                for (const hop of measured) {
                  const kib = await residentKiB(hop.pids);
                  memory[path][hop.role] = Math.max(memory[path][hop.role], kib);
                }
              },
            }
            : undefined;
          const result = await iperf(port(path).iperf, seconds, streams, reverse, what, sample);
          // The connections' ends count too: socat's children reaped, the sessions closed.
          await settle(path, what, streams, pids);
          const after = await cpuOf(pids);
          let at = 0;
          for (const hop of measured) {
            for (const _ of hop.pids) {
              cpu[path][hop.role] += after[at] - before[at];
              at++;
            }
          }
          moved[path] += result.bytes;
          iperfRows[w].values[path].push(result.bitsPerSecond / 1e9);
        }
      }
      for (const clients of [1, MANY_CLIENTS]) {
        const n = clients === 1 ? requests : requestsMany;
        progress(
          `run ${run + 1}/${runs}: redis-benchmark SET, GET -c ${clients} -n ${n}: ${
            order.map((p) => LABEL[p]).join(", ")
          }`,
        );
        for (const path of order) {
          const what = `${LABEL[path]}: redis-benchmark -c ${clients}`;
          const result = await redisBenchmark(port(path).redis, clients, n, what);
          await settle(path, what, 0);
          if (clients === 1) {
            redisRows.set1.values[path].push(result.SET.rps);
            redisRows.get1.values[path].push(result.GET.rps);
            redisRows.setP50.values[path].push(result.SET.p50);
            redisRows.getP50.values[path].push(result.GET.p50);
          } else {
            redisRows.setMany.values[path].push(result.SET.rps);
            redisRows.getMany.values[path].push(result.GET.rps);
          }
        }
      }
    }

    // Nothing dropped or failed on the way.
    let health: DeploymentHealth | undefined;
    if (deployment !== undefined) {
      health = await deploymentHealth(deployment);
      if (health.dropped !== 0 || health.refused !== 0 || health.failed !== failedSoFar) {
        throw new Error(
          `the relay dropped ${health.dropped} frames; the gateway refused ${health.refused} ` +
            `inner messages; ${
              health.failed - failedSoFar
            } sessions failed after the last workload`,
        );
      }
    }
    const negotiated = chain === undefined ? undefined : [...chain.negotiated].join(", ");
    if (negotiated !== undefined && negotiated !== `${TLS_VERSION} ${CIPHERSUITE}`) {
      throw new Error(
        `stunnel negotiated ${negotiated || "nothing it logged"}, not ${CIPHERSUITE} alone`,
      );
    }

    // The tables.
    const rows: Row[] = [
      ...iperfRows,
      redisRows.set1,
      redisRows.get1,
      redisRows.setMany,
      redisRows.getMany,
      redisRows.setP50,
      redisRows.getP50,
    ];
    const gb = tabulate(tunnels, (path) => moved[path] / 1e9);
    const cpuTable = hopTable(
      tunnels,
      (path, role) => hops[path]?.[role] === undefined ? undefined : cpu[path][role] / gb[path],
      (value) => `${value.toFixed(2)} s`,
    );
    const memoryTable = hopTable(
      tunnels,
      (path, role) => hops[path]?.[role] === undefined ? undefined : memory[path][role] / 1024,
      (value) => `${value.toFixed(1)} MiB`,
    );
    const cores = navigator.hardwareConcurrency;
    const summary = `Median of ${runs} runs, the paths interleaved; iperf3 ${seconds} s per run; ` +
      `redis-benchmark -n ${requests} with -c 1, -n ${requestsMany} with -c ${MANY_CLIENTS}; ` +
      `${cores} cores shared by the clients, the backends and every hop.`;
    const moves = tunnels.map((path) => `${LABEL[path]} ${gb[path].toFixed(1)} GB`).join(", ");
    const checked = [
      health === undefined
        ? ""
        : `The relay dropped no frame (nexus_relay_frames_dropped_total ${health.dropped}), the ` +
          `gateway refused no inner message, and every portal session closed after each ` +
          `workload; ${resets} ended in a reset, each at the end of an iperf3 test (its ` +
          `receiver closes its streams with data still in flight, at most one a stream), none ` +
          `in the redis-benchmark runs.`,
      negotiated === undefined ? "" : `stunnel negotiated ${negotiated} (its log).`,
    ].filter((text) => text !== "").join(" ");
    const sections = [summary, mainTable(paths, rows)];
    const ratioPaths = ratioColumns(paths).map((r) => r.path);
    if (ratioPaths.length > 0) {
      const deno = ratioPaths.includes("deno");
      const nexus = ratioPaths.some((path) => path !== "deno");
      const subjects = [deno ? "the Deno forwarders" : "", nexus ? "nexus" : ""]
        .filter((text) => text !== "").join(" and ");
      sections.push(
        `Ratios: ${subjects} against the stunnel chain, of the figure in the row (below 1: ` +
          "lower throughput or fewer requests per second; × above 1: a longer latency)." +
          (deno && nexus
            ? " The Deno floor is what three plain hops cost in Deno itself, with no crypto: " +
              "read the nexus paths' ratios against it."
            : ""),
      );
    }
    if (tunnels.length > 0) {
      sections.push(
        `CPU seconds per GB carried, by hop, over the iperf3 runs of each path (${moves}):`,
        cpuTable,
        "Resident memory (VmRSS, with socat's forked children) of each hop, near the end of " +
          "the 8-stream runs, the largest sample:",
        memoryTable,
      );
    }
    if (checked !== "") sections.push(checked);
    const tables = `${sections.join("\n\n")}\n`;
    console.log(`\n${tables}`);

    if (values["write-docs"]) {
      const machine = await machineText();
      const command = ["deno task bench:compare", ...Deno.args].join(" ");
      // docs/ is there: the permission set allows the two files, not the folder.
      if (values["docs-dir"] !== undefined) await Deno.mkdir(docsDir, { recursive: true });
      const docsFile = `${docsDir}/benchmarks.md`;
      await Deno.writeTextFile(docsFile, docsText(command, machine, tables));
      const medianOf = (row: Row) => tabulate(PATHS, (path) => median(row.values[path]));
      const short = (label: string) =>
        label.replace(/^iperf3 TCP, /, "").replace(/^redis-benchmark /, "");
      const svgFile = `${docsDir}/benchmarks.svg`;
      await Deno.writeTextFile(
        svgFile,
        chartsSvg(
          paths,
          iperfRows.map((row) => ({ label: short(row.label), values: medianOf(row) })),
          [redisRows.setP50, redisRows.getP50].map((row) => ({
            label: row.label.includes("SET") ? "SET" : "GET",
            values: medianOf(row),
          })),
          [redisRows.set1, redisRows.get1].map((row) => ({
            label: row.label.includes("SET") ? "SET" : "GET",
            values: medianOf(row),
          })),
          `${summary.slice(0, summary.indexOf(";"))}; ${cores} cores, ${
            new Date().toISOString().slice(0, 10)
          }`,
        ),
      );
      // Both as `deno fmt --check` wants them (the project's settings: deno.json).
      const formatted = await new Deno.Command(Deno.execPath(), {
        args: ["fmt", "-q", "--config", `${ROOT}deno.json`, docsFile, svgFile],
        stdout: "null",
        stderr: "piped",
      }).output();
      if (!formatted.success) {
        throw new Error(
          `deno fmt ${docsFile} ${svgFile}: ${new TextDecoder().decode(formatted.stderr)}`,
        );
      }
      progress(`wrote ${docsDir}/benchmarks.md and ${docsDir}/benchmarks.svg`);
    }
  } finally {
    for (const undo of cleanup.reverse()) await undo();
    await Deno.remove(`${ROOT}${dir}`, { recursive: true }).catch(() => {});
    await Deno.remove(temp, { recursive: true }).catch(() => {});
    await fixture?.remove();
  }
}

/** The machine and the versions, as a markdown list. */
async function machineText(): Promise<string> {
  const cpuinfo = await commandOutput("cat", ["/proc/cpuinfo"]).catch(() => "");
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? "unknown";
  const items = [
    ["cores", `${navigator.hardwareConcurrency} (${model})`],
    ["kernel", await versionLine("uname", ["-r"])],
    ["deno", Deno.version.deno],
    ["stunnel", await versionLine("stunnel4", ["-version"], /^stunnel \d/)],
    ["openssl", await versionLine("openssl", ["version"])],
    ["socat", await versionLine("socat", ["-V"], /^socat version/)],
    ["iperf3", await versionLine("iperf3", ["--version"])],
    ["redis", await versionLine("redis-server", ["--version"])],
    ["date", new Date().toISOString().slice(0, 10)],
  ];
  return items.map(([name, value]) => `- ${name}: ${value}`).join("\n");
}

/** docs/benchmarks.md. */
function docsText(command: string, machine: string, tables: string): string {
  return `# Benchmarks: Nexus against a TLS tunnel

This page is written by \`deno task bench:compare --write-docs\` (\`scripts/bench_compare.ts\`);
run it again to measure your own machine. Compare the ratios of one run rather than figures from
different machines.

![Throughput and redis latency on every path](benchmarks.svg)

## What is compared

The same clients (\`iperf3 -c\`, \`redis-benchmark\`) reach the same backends (\`iperf3 -s\`, and
\`redis-server --save "" --appendonly no\`), each on a loopback port, by five paths:

| path                        | hops                                                                    |
| --------------------------- | ----------------------------------------------------------------------- |
| direct                      | client → backend                                                        |
| stunnel chain               | client → stunnel client → socat → stunnel server → backend              |
| Deno forwarders (no crypto) | client → forwarder 1 → forwarder 2 → forwarder 3 → backend              |
| nexus (Phase 2)             | client → edge inlet → relay → gateway → backend                         |
| nexus (end to end)          | client → edge inlet → relay → gateway → relay → service agent → backend |

- **The stunnel chain** has as many hops as Phase 2: a TLS client, a plain TCP forwarder in the
  relay's place (\`socat TCP-LISTEN:…,fork,reuseaddr,backlog=1024 TCP:…\`: socat's own backlog of 5
  would drop the SYNs of 50 connections opened at once), a TLS server. TLS 1.3 only, cipher
  suite TLS_AES_256_GCM_SHA384, each side verifying the other's self-signed P-256 certificate
  (made with \`openssl req\` for the run); stunnel in the foreground with its own configuration.
- **The Deno forwarders** are the runtime's own floor for three hops: three \`deno run\`
  processes of \`scripts/support/plain_forwarder.ts\` (\`--allow-net=127.0.0.1\` only, the
  services' V8 flags), each reading from one socket and writing to the other through one 64 KiB
  buffer per direction, every write awaited before the next read; no encryption, no framing.
  Phase 2 has as many hops, so what it costs beyond this floor is what the system adds to Deno's
  sockets (its channels, records and routing); read the nexus paths' ratios against its (end to
  end has two hops more).
- **Nexus** is deployed as an operator would: the authority on a fresh SoftHSM2 token, a relay, a
  gateway with Phase 2 outlets to both backends, a service agent with the same backends behind it
  (the gateway's \`services\` entry routes to it), and an edge with an inlet per backend and mode;
  each its own \`deno run -P=<set> <service>/main.ts\` process under its own permission set. In
  Phase 2 the gateway terminates the edge's channel and connects to the backend; end to end, the
  edge's inner channel to the agent is nested in its channel to the gateway, which routes
  ciphertext only, and the relay carries every byte twice.
- **Every hop** sets TCP_NODELAY on both sides. Everything shares the machine's cores: the
  clients, the backends and the hops.

## How

- **Workloads**: iperf3 TCP, 1 stream and 8 streams (\`-P 8\`), client to server and back (\`-R\`),
  the receiver's bits per second (\`--json\`); redis-benchmark SET and GET (\`-t set,get --csv\`)
  with one connection (\`-c 1\`) and with 50, requests per second, and the median latency (p50)
  with one connection.
- **Interleaved**: each run goes through every path before the next run starts, the paths' order
  rotating from run to run; the median of the runs is kept. A warm-up (one second of 8-stream
  iperf3 and a short redis-benchmark on every path) comes first.
- **CPU per GB**: utime + stime of each hop's process (the forwarders' and the services' Deno
  threads included) (and cutime + cstime: socat forks a child
  per connection) from \`/proc/<pid>/stat\`, before and after each iperf3 run of its path, summed
  and divided by the GB the receivers got. **Memory**: VmRSS of each hop (socat's children added),
  sampled near the end of each 8-stream run, the largest sample kept.
- **Checked**: iperf3 and redis-benchmark must succeed on every path and every hop must still run
  after each workload; the relay must have dropped no frame (\`nexus_relay_frames_dropped_total\`)
  and the gateway refused no inner message; every portal session must have closed after each
  workload, none ended by a failure but the resets at the end of an iperf3 test (its receiver
  closes its streams with data still in flight: at most one a stream, and socat sees them too);
  stunnel's log must show TLS 1.3 with TLS_AES_256_GCM_SHA384.

## The run

\`\`\`sh
${command}
\`\`\`

${machine}

${tables}`;
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const cause = error instanceof Error && error.cause instanceof Error
      ? `\n  (${error.cause.message})`
      : "";
    console.error(`[bench:compare] failed: ${message}${cause}`);
    if (error instanceof TypeError && /option/i.test(message)) console.error(USAGE);
    Deno.exitCode = 1;
  }
}
