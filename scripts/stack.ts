/**
 * The README's run command (`npm start` → `deno task stack`): the whole
 * system on one machine, on fixed loopback ports, with its state kept in
 * `.state/stack/`.
 *
 *   1. a SoftHSM2 token of its own (softhsm2.conf, token directory, a 0600
 *      PIN file), created once;
 *   2. the authority's key ceremony (`authority init`), first run only;
 *   3. the authority service on 127.0.0.1:4100 (metrics :9433);
 *   4. a relay on 127.0.0.1:4000 (metrics :9432), trusting the authority and
 *      following its revocations;
 *   5. three demo backends (orchestrator :18000, inference :18801, context
 *      :18151), in this process;
 *   6. the service agent `svc-orchestrator-cust-001` of `orchestrator` for
 *      `cust_001` (ops :9434), next to the orchestrator backend (its outlet
 *      `orchestrator`), enrolled with a one-time ticket on the first run;
 *   7. the gateway `gw-cust-001` for customer `cust_001` (ops :9430),
 *      enrolled with a one-time ticket on the first run: the service
 *      `orchestrator` routed end to end to the agent (the gateway sees
 *      ciphertext only), and Phase 2 outlets of its own to inference and
 *      context;
 *   8. an edge (ops :9431) with a license key for `cust_001`, inlets
 *      127.0.0.1:8151 → context (TCP), :8152 → the service orchestrator end
 *      to end and :8153 → inference (HTTP, the license header added).
 *
 * Every service is its own `deno run -P=<set>` process, as in production.
 * Their stderr goes to `<state>/logs/<name>.log` (`--verbose` streams it
 * here too). SIGINT or SIGTERM stops them in the order edge, gateway,
 * agent, relay, authority (SIGTERM, then SIGKILL after 15 s) and exits 0; a
 * service that dies on its own stops the rest and the command exits 1, after
 * showing the last lines that service logged.
 *
 * @module
 */
import { relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { createSoftHsmToken, SOFTHSM_MODULE } from "../hsm/testing/softhsm.ts";
import { serviceV8Flag } from "../src/config/runtime_flags.ts";
import { findDeno } from "./support/find_deno.ts";
import { DEMO_BACKENDS, type RunningBackends, startDemoBackends } from "./stack_backends.ts";
import { type ServiceProcess, spawnDeno } from "./support/service_process.ts";
import {
  STACK_POSTGRES,
  type StackPostgres,
  stackPostgresDir,
  startStackPostgres,
} from "./stack_postgres.ts";

const HELP = `Usage: npm start [-- options]     (or: deno task stack [options])

Runs the whole Nexus system on this machine: a SoftHSM2 token, the
authority (ceremony on the first run), a relay, three demo backends, a
service agent for the orchestrator, a gateway and an edge, each as its own
process under its permission set. The orchestrator is served end to end
(decrypted only at the agent); inference and context through the gateway's
own outlets. A second run reuses the state: no new ceremony, no new
enrollment.

Options:
  --state DIR   state directory, under ./.state (default .state/stack)
  --replicas N  run N authority replicas (1 to 3) sharing a local PostgreSQL on 127.0.0.1:5433
                instead of one authority on SQLite; an existing SQLite store is moved into it
                once (\`authority store move\`), and later runs stay on PostgreSQL
  --verbose     stream the services' logs here too (they always go to DIR/logs/)
  --reset       delete the state directory first: new token, ceremony, enrollments
  -h, --help    this help

Ports (127.0.0.1): authority 4100 (metrics 9433; replicas 4101, 4102, metrics 9435, 9436), relay 4000 (metrics 9432),
gateway ops 9430, edge ops 9431, agent ops 9434, edge inlets 8151 (context),
8152 (orchestrator, end to end, HTTP), 8153 (inference, HTTP), backends 18000,
18801, 18151.
Ctrl-C stops everything.
`;

const root = new URL("..", import.meta.url).pathname;
const CUSTOMER = "cust_001";
const ALIAS = "gw-cust-001";
/** The end-to-end service, and its agent's alias (as in deploy/agent.example.json). */
const SERVICE = "orchestrator";
const AGENT_ALIAS = "svc-orchestrator-cust-001";
const TOKEN_LABEL = "nexus-authority";
const STEPS = 8;
/** How long a service has to stop after SIGTERM before it is killed. */
const STOP_TIMEOUT_MS = 15_000;
/** How long a service has to print its ready line. */
const START_TIMEOUT_MS = 60_000;
/** Lines of a service's stderr kept to show when it dies. */
const TAIL_LINES = 25;

const AUTHORITY = "127.0.0.1:4100";
const AUTHORITY_METRICS = "127.0.0.1:9433";
/** Every replica's service and metrics address (the first is the one authority of a SQLite stack). */
const REPLICAS: readonly { listen: string; metrics: string }[] = [
  { listen: AUTHORITY, metrics: AUTHORITY_METRICS },
  { listen: "127.0.0.1:4101", metrics: "127.0.0.1:9435" },
  { listen: "127.0.0.1:4102", metrics: "127.0.0.1:9436" },
];
const RELAY = "127.0.0.1:4000";
const RELAY_METRICS = "127.0.0.1:9432";
const GATEWAY_OPS = "127.0.0.1:9430";
const EDGE_OPS = "127.0.0.1:9431";
const AGENT_OPS = "127.0.0.1:9434";
/** 8152 goes end to end to the agent of the service (its outlet of the same name). */
const INLETS: readonly { listen: string; outlet?: string; service?: string; mode: string }[] = [
  { listen: "127.0.0.1:8151", outlet: "context", mode: "tcp" },
  { listen: "127.0.0.1:8152", service: SERVICE, mode: "http" },
  { listen: "127.0.0.1:8153", outlet: "inference", mode: "http" },
];
/** What an inlet reaches, for the output: "orchestrator (end to end, http)". */
function inletTarget(inlet: (typeof INLETS)[number]): string {
  const notes = [
    ...(inlet.service === undefined ? [] : ["end to end"]),
    ...(inlet.mode === "http" ? ["http"] : []),
  ];
  const target = inlet.service === undefined
    ? inlet.outlet!
    : inlet.service + (inlet.outlet === undefined ? "" : `/${inlet.outlet}`);
  return target + (notes.length > 0 ? ` (${notes.join(", ")})` : "");
}
const backendOf = (service: string) =>
  `127.0.0.1:${DEMO_BACKENDS.find((b) => b.service === service)!.port}`;
/** Policies as in deploy/gateway.example.json. */
const ORCHESTRATOR_POLICY = 'subject.role == "edge"';
/** The gateway's own (Phase 2) outlets to the demo backends. */
const OUTLETS = [
  {
    name: "inference",
    policy: 'subject.role == "edge" and subject.tier in ["professional", "enterprise"]',
  },
  { name: "context", policy: 'subject.role == "edge" and "mcp" in subject.capabilities' },
].map((outlet) => ({ ...outlet, backend: backendOf(outlet.name) }));
/**
 * The agent's outlet to the orchestrator backend. The orchestrator's policy
 * is at both ends: the gateway's `services[].policy` decides whether an edge
 * may reach the service at all, the agent's whether it may use the backend.
 */
const AGENT_OUTLETS = [
  { name: SERVICE, backend: backendOf(SERVICE), policy: ORCHESTRATOR_POLICY },
];

/** Every fixed port, checked before anything starts. */
const FIXED_PORTS: [string, string][] = [
  [AUTHORITY, "authority"],
  [AUTHORITY_METRICS, "authority metrics"],
  [RELAY, "relay"],
  [RELAY_METRICS, "relay metrics"],
  ...DEMO_BACKENDS.map((b): [string, string] => [`127.0.0.1:${b.port}`, `${b.service} backend`]),
  [AGENT_OPS, "agent ops"],
  [GATEWAY_OPS, "gateway ops"],
  [EDGE_OPS, "edge ops"],
  ...INLETS.map((i): [string, string] => [i.listen, `edge inlet for ${i.service ?? i.outlet}`]),
];

// ---------------------------------------------------------------------------
// Arguments and paths

function parseArguments() {
  try {
    return parseArgs({
      options: {
        state: { type: "string", default: ".state/stack" },
        verbose: { type: "boolean", short: "v", default: false },
        reset: { type: "boolean", default: false },
        replicas: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (error) {
    console.error(`nexus stack: ${(error as Error).message}\n\n${HELP}`);
    Deno.exit(2);
  }
}
const values = parseArguments();
if (values.help) {
  console.log(HELP);
  Deno.exit(0);
}
const verbose = values.verbose;
const replicasFlag = values.replicas === undefined ? undefined : Number(values.replicas);
if (
  replicasFlag !== undefined &&
  !(Number.isInteger(replicasFlag) && replicasFlag >= 1 && replicasFlag <= 3)
) {
  console.error(`nexus stack: --replicas wants 1, 2 or 3, got ${values.replicas}`);
  Deno.exit(2);
}
// The services' permission sets allow ./.state only, so the state must be there.
const state = relative(root, resolve(root, values.state));
if (!state.startsWith(".state/") || state.split("/").includes("..")) {
  console.error(
    `nexus stack: --state must be a directory under ./.state (the services' permission sets ` +
      `allow nothing else), got ${values.state}`,
  );
  Deno.exit(2);
}

/** Paths relative to the project root: the services run there. */
const paths = {
  softhsm: `${state}/softhsm`,
  pinFile: `${state}/softhsm/user.pin`,
  softhsmConf: `${state}/softhsm/softhsm2.conf`,
  authority: `${state}/authority`,
  identity: `${state}/authority/authority.identity.json`,
  /** Present once the store is on PostgreSQL: later runs stay there. */
  database: `${state}/authority/database-url`,
  relay: `${state}/relay`,
  relayTicket: `${state}/relay.ticket`,
  agent: `${state}/agent`,
  agentConfig: `${state}/agent.json`,
  agentEnrolled: `${state}/agent/enrolled-by-stack`,
  gateway: `${state}/gateway`,
  gatewayConfig: `${state}/gateway.json`,
  gatewayEnrolled: `${state}/gateway/enrolled-by-stack`,
  edge: `${state}/edge`,
  edgeConfig: `${state}/edge.json`,
  logs: `${state}/logs`,
};
/** Absolute path of a project-relative one (for this process's own file access). */
const abs = (path: string) => `${root}${path}`;

// ---------------------------------------------------------------------------
// Output

const encoder = new TextEncoder();
const started = performance.now();
let openLine = false;

function seconds(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
}

/** Starts a progress line: "[n/7] title ... " (finished by {@link done}). */
function begin(step: number, title: string): number {
  Deno.stdout.writeSync(encoder.encode(`[${step}/${STEPS}] ${title} ... `));
  openLine = true;
  return performance.now();
}

function done(text: string, since: number): void {
  console.log(`${text} (${seconds(since)})`);
  openLine = false;
}

function closeLine(): void {
  if (openLine) console.log("");
  openLine = false;
}

function printError(text: string): void {
  closeLine();
  console.error(text);
}

// ---------------------------------------------------------------------------
// Services

/** Appends text to a file in order, never blocking the caller. */
class LogFile {
  #file: Deno.FsFile;
  #chain: Promise<void> = Promise.resolve();
  private constructor(file: Deno.FsFile) {
    this.#file = file;
  }
  static async open(path: string): Promise<LogFile> {
    const file = await Deno.open(path, { create: true, append: true, mode: 0o600 });
    return new LogFile(file);
  }
  write(text: string): void {
    const bytes = encoder.encode(text);
    this.#chain = this.#chain.then(async () => {
      for (let at = 0; at < bytes.length;) at += await this.#file.write(bytes.subarray(at));
    }).catch(() => {});
  }
  async close(): Promise<void> {
    await this.#chain;
    this.#file.close();
  }
}

function describeStatus(status: Deno.CommandStatus): string {
  return status.signal !== null ? `killed by ${status.signal}` : `exit code ${status.code}`;
}

/** A service: one `deno run -P=<set>` child process, its output logged. */
class Service {
  readonly process: ServiceProcess;
  /** Resolves when it has exited (its exit logged). */
  readonly status: Promise<Deno.CommandStatus>;

  constructor(
    readonly name: string,
    readonly logPath: string,
    log: LogFile,
    args: string[],
    env: Record<string, string> = {},
  ) {
    this.process = spawnDeno(name, args, {
      deno,
      cwd: root,
      env,
      stdout: { onLine: (line) => log.write(`${line}\n`) },
      stderr: {
        keep: TAIL_LINES,
        onLine: (line) => {
          log.write(`${line}\n`);
          if (verbose) {
            closeLine();
            console.error(`[${name}] ${line}`);
          }
        },
      },
    });
    log.write(`--- ${new Date().toISOString()} stack: started ${name} (pid ${this.process.pid})\n`);
    this.status = this.process.status.then((status) => {
      log.write(`--- ${new Date().toISOString()} stack: ${name} ${describeStatus(status)}\n`);
      return status;
    });
  }

  /** The last lines of its stderr. */
  get tail(): readonly string[] {
    return this.process.stderr.lines;
  }

  /** Resolves once its stdout and stderr have ended. */
  get drained(): Promise<void> {
    return this.process.drained;
  }

  /**
   * The first stdout line matching `pattern`.
   * @throws {ServiceFailure} when the process exits first, `ms` pass, or it
   * logs a line matching `hopeless` (a state it will not leave by itself).
   */
  async waitForLine(
    pattern: RegExp,
    ms: number,
    hopeless?: { pattern: RegExp; message: string },
  ): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const line = this.process.stdout.lines.find((l) => pattern.test(l));
      if (line !== undefined) return line;
      if (hopeless !== undefined && this.tail.some((l) => hopeless.pattern.test(l))) {
        throw new ServiceFailure(this, hopeless.message);
      }
      const exited = this.process.exited;
      if (exited !== null) {
        await Promise.race([this.drained, delay(1000)]);
        throw new ServiceFailure(
          this,
          `the ${this.name} exited (${describeStatus(exited)}) before it was ready`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new ServiceFailure(this, `the ${this.name} was not ready within ${ms / 1000} s`);
      }
      await this.process.changed(left);
    }
  }

  /** SIGTERM, then SIGKILL after `ms`; resolves once it exited. */
  async stop(ms: number): Promise<string> {
    const since = performance.now();
    await this.process.stop(ms, {
      drainMs: 1000,
      onKill: () =>
        printError(`nexus stack: the ${this.name} did not stop within ${ms / 1000} s; killing it`),
    });
    const final = await this.status;
    return `${this.name} (${describeStatus(final)}, ${seconds(since)})`;
  }

  kill(): void {
    this.process.kill();
  }
}

/** A service failed: the message, and the service whose log tail explains it. */
class ServiceFailure extends Error {
  constructor(readonly service: Service | null, message: string) {
    super(message);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------
// Lifecycle: one shutdown, in order, whatever starts it

const services: Service[] = [];
const logs: LogFile[] = [];
let backends: RunningBackends | null = null;
let stopping = false;
let shutdownStarted: Promise<never> | null = null;

function shutdown(code: number): Promise<never> {
  shutdownStarted ??= (async () => {
    stopping = true;
    closeLine();
    const since = performance.now();
    // The reverse of the start: the edge first (nothing new enters, and its
    // clients' sessions end at their source), then the gateway (with the
    // edges' channels gone, nothing is routed to the agent any more), then
    // the agent (no inner channel or session left, so no grace to wait out),
    // the relay and the authority last (the others close their relay links
    // and authority channels while those still answer).
    const stopped: string[] = [];
    for (const service of [...services].reverse()) {
      stopped.push(await service.stop(STOP_TIMEOUT_MS));
    }
    await backends?.close();
    if (postgres !== null) {
      await postgres.stop().catch(() => {});
      stopped.push("postgresql");
    }
    for (const log of logs) await log.close().catch(() => {});
    if (stopped.length > 0) {
      console.log(`stopped: ${stopped.join(", ")}`);
      console.log(
        `${code === 0 ? "all stopped" : "stopped after a failure"} in ${seconds(since)}; ` +
          `state kept in ${state}/, logs in ${paths.logs}/`,
      );
    }
    Deno.exit(code);
  })();
  return shutdownStarted;
}

/** Reports a failure once (with the service's last log lines) and stops everything. */
function fatal(error: unknown): Promise<never> {
  if (shutdownStarted !== null) return shutdownStarted;
  const message = error instanceof Error ? error.message : String(error);
  printError(`\nnexus stack: ${message}`);
  if (error instanceof ServiceFailure && error.service !== null) {
    const { service } = error;
    if (service.tail.length > 0) {
      console.error(`last lines of ${service.logPath}:`);
      for (const line of service.tail) console.error(`  ${line}`);
    } else {
      console.error(`(nothing on its stderr; see ${service.logPath})`);
    }
  }
  return shutdown(1);
}

let firstSignalAt: number | null = null;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    if (firstSignalAt === null) {
      firstSignalAt = performance.now();
      closeLine();
      console.log(`${signal}: stopping edge, gateway, agent, relay, authority ...`);
      void shutdown(0);
    } else if (performance.now() - firstSignalAt > 1000) {
      // Ctrl-C again: do not wait any longer. (One Ctrl-C under `deno task`
      // arrives twice, from the terminal and forwarded by the task runner.)
      console.log(`${signal} again: killing what is left`);
      for (const service of services) service.kill();
    }
  });
}

/**
 * Starts a member that enrolls with a one-time ticket: on the first run
 * (no `enrolled` marker) a ticket with `attrs` is made and put in the 0600
 * config (never on a command line), and once the member is READY the
 * config is written again without it and the marker records its
 * identifier. Returns the service, its identifier and whether a ticket was
 * used.
 */
async function startEnrolled(o: {
  name: string;
  set: string;
  main: string;
  configPath: string;
  enrolled: string;
  attrs: string[];
  config: Record<string, unknown>;
  hopeless?: { pattern: RegExp; message: string };
}): Promise<{ service: Service; id: string; ticketUsed: boolean }> {
  let ticket: string | undefined;
  if (!await exists(o.enrolled)) {
    const result = await authorityCommand([
      "ticket",
      "create",
      "--ttl",
      "10m",
      ...o.attrs.flatMap((attr) => ["--attr", attr]),
    ]);
    ticket = String(result.ticket);
  }
  await writePrivate(
    o.configPath,
    JSON.stringify(ticket === undefined ? o.config : { ...o.config, ticket }, null, 2),
  );
  const service = await startService(o.name, [
    `-P=${o.set}`,
    o.main,
    "run",
    "--config",
    o.configPath,
  ]);
  const id = identifierOf(await service.waitForLine(/^READY /, START_TIMEOUT_MS, o.hopeless));
  if (ticket !== undefined) {
    await writePrivate(o.configPath, JSON.stringify(o.config, null, 2));
    await Deno.writeTextFile(abs(o.enrolled), `${id}\n`);
  }
  return { service, id, ticketUsed: ticket !== undefined };
}

/** Starts a service and watches it: an exit nobody asked for stops everything. */
async function startService(
  name: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<Service> {
  const logPath = `${paths.logs}/${name}.log`;
  const log = await LogFile.open(abs(logPath));
  logs.push(log);
  // Stopping already (Ctrl-C during the start): start nothing more. From
  // here to services.push() nothing awaits, so shutdown() sees every child.
  if (stopping) return await shutdownStarted!;
  // Every service under the same V8 flags as its deno.json task and systemd unit.
  const service = new Service(
    name,
    logPath,
    log,
    [args[0], serviceV8Flag(), ...args.slice(1)],
    env,
  );
  services.push(service);
  void service.status.then(async (status) => {
    // On a terminal, Ctrl-C reaches the services too: give our own signal
    // handler the chance to run first before calling this a failure.
    await delay(300);
    if (stopping) return;
    await Promise.race([service.drained, delay(1000)]);
    await fatal(
      new ServiceFailure(service, `the ${name} exited unexpectedly (${describeStatus(status)})`),
    );
  });
  return service;
}

// ---------------------------------------------------------------------------
// Helpers

/** The Deno binary for the services: the project's pinned one, else `deno` on PATH. */
async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(abs(path));
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

async function remove(path: string): Promise<void> {
  await Deno.remove(abs(path), { recursive: true }).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
}

/**
 * Whether the stack runs as root: the owner of a directory it just made says
 * (as tests/support/postgres.ts asks; Deno.uid() needs the sys permission).
 */
async function isRoot(): Promise<boolean> {
  await Deno.mkdir(abs(state), { recursive: true, mode: 0o700 });
  return (await Deno.stat(abs(state))).uid === 0;
}

/** Writes a file only its owner may read (configs that hold a ticket or a license key). */
async function writePrivate(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(abs(path), text, { mode: 0o600 });
  await Deno.chmod(abs(path), 0o600);
}

/**
 * Fails early, naming every fixed port that something else holds. A port
 * the `stack` set in deno.json does not list cannot be tried from here: the
 * service that binds it then fails with its own message (its log's tail).
 */
function checkPorts(): void {
  const taken: string[] = [];
  for (const [address, what] of FIXED_PORTS) {
    const [hostname, port] = address.split(":");
    if (Deno.permissions.querySync({ name: "net", host: address }).state !== "granted") continue;
    try {
      Deno.listen({ hostname, port: Number(port) }).close();
    } catch (error) {
      if (!(error instanceof Deno.errors.AddrInUse)) throw error;
      taken.push(`  ${address} (${what})`);
    }
  }
  if (taken.length > 0) {
    throw new Error(
      `these fixed ports are in use, so the stack cannot start:\n${taken.join("\n")}\n` +
        `Is another stack running? Stop it with Ctrl-C, or find the process with ` +
        `\`ss -ltnp 'sport = :${taken[0].split(":")[1].split(" ")[0]}'\`.`,
    );
  }
}

const hsmArgs = () => [
  "--state",
  paths.authority,
  "--hsm-module",
  SOFTHSM_MODULE,
  "--hsm-token",
  TOKEN_LABEL,
  "--pin-file",
  paths.pinFile,
];
const hsmEnv = () => ({ SOFTHSM2_CONF: abs(paths.softhsmConf) });
/** The store's PostgreSQL URL, once the stack runs replicas (else SQLite, in the state). */
let databaseUrl: string | null = null;
const databaseArgs = () => databaseUrl === null ? [] : ["--database", databaseUrl];
let postgres: StackPostgres | null = null;

/** Runs one authority CLI command (`init`, `ticket create`, …) with `--json`. */
async function authorityCommand(args: string[]): Promise<Record<string, unknown>> {
  const out = await new Deno.Command(deno, {
    args: [
      "run",
      "-q",
      "--no-prompt",
      "-P=authority",
      "authority/main.ts",
      ...args,
      ...hsmArgs(),
      ...databaseArgs(),
      "--json",
    ],
    cwd: root,
    env: hsmEnv(),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  await Deno.writeTextFile(
    abs(`${paths.logs}/authority.log`),
    `--- ${new Date().toISOString()} stack: authority ${args.slice(0, 2).join(" ")} ` +
      `(${out.success ? "ok" : `exit code ${out.code}`})\n${stderr}`,
    { append: true, mode: 0o600 },
  );
  if (!out.success) {
    throw new Error(
      `authority ${args.slice(0, 2).join(" ")} failed (exit code ${out.code}):\n${stderr.trim()}`,
    );
  }
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

const identifierOf = (line: string) => line.match(/\bI[0-9a-f]{64}\b/)?.[0] ?? "?";
const short = (identifier: string) => `${identifier.slice(0, 13)}…`;

/**
 * Waits until the gateway's path to the service's agent is up (its metric
 * `nexus_gateway_service_path_up{service=…}` is 1).
 * @throws {ServiceFailure} when the gateway exits first or `ms` pass.
 */
async function waitForServicePath(gateway: Service, service: string, ms: number): Promise<void> {
  const up = new RegExp(`^nexus_gateway_service_path_up\\{service="${service}"\\} 1$`, "m");
  const deadline = Date.now() + ms;
  for (;;) {
    if (gateway.process.exited !== null) {
      await Promise.race([gateway.drained, delay(1000)]);
      throw new ServiceFailure(
        gateway,
        `the gateway exited (${describeStatus(gateway.process.exited)}) before its path to ` +
          `the agent of ${service} was up`,
      );
    }
    try {
      const response = await fetch(`http://${GATEWAY_OPS}/metrics`, {
        signal: AbortSignal.timeout(2000),
      });
      if (up.test(await response.text())) return;
    } catch {
      // Not answering yet: try again.
    }
    if (Date.now() >= deadline) {
      throw new ServiceFailure(
        gateway,
        `the gateway found no path to the agent of ${service} within ${ms / 1000} s`,
      );
    }
    await delay(100);
  }
}

// ---------------------------------------------------------------------------
// The stack

let deno = "deno";

async function main(): Promise<void> {
  for (const { listen, metrics } of REPLICAS.slice(1, replicasFlag ?? 1)) {
    FIXED_PORTS.push([listen, "authority replica"], [metrics, "authority replica metrics"]);
  }
  if ((replicasFlag ?? 1) > 1) FIXED_PORTS.push([STACK_POSTGRES, "PostgreSQL"]);
  checkPorts();
  deno = await findDeno();
  if (values.reset) {
    await remove(state);
    await Deno.remove(stackPostgresDir(abs(state), await isRoot()), { recursive: true }).catch(
      () => {},
    );
    console.log(`reset: removed ${state}/`);
  }
  await Deno.mkdir(abs(paths.logs), { recursive: true, mode: 0o700 });
  await Deno.chmod(abs(state), 0o700);
  console.log(
    `Nexus local stack; state in ${state}/, service logs in ${paths.logs}/` +
      (verbose ? " (and here)" : " (--verbose streams them here)"),
  );

  // 1. The token. The authority's state and its HSM key go together: without
  // an authority, start both afresh (and the members enrolled at the old one).
  let since = begin(1, "SoftHSM token");
  const haveAuthority = await exists(paths.identity);
  const haveToken = await exists(paths.softhsmConf) && await exists(paths.pinFile);
  if (haveAuthority && !haveToken) {
    throw new Error(
      `${paths.authority} exists but its SoftHSM token in ${paths.softhsm} does not; ` +
        `start afresh with --reset`,
    );
  }
  if (haveAuthority) {
    done(`reused (${paths.softhsm})`, since);
  } else {
    for (
      const path of [
        "softhsm",
        "authority",
        "relay",
        "relayTicket",
        "agent",
        "agentConfig",
        "gateway",
        "gatewayConfig",
        "edge",
        "edgeConfig",
      ]
    ) {
      await remove(paths[path as keyof typeof paths]);
    }
    try {
      await createSoftHsmToken({ dir: abs(paths.softhsm), label: TOKEN_LABEL });
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new Error("softhsm2-util not found: install softhsm2 (`npm start` does)");
      }
      throw error;
    }
    await Deno.chmod(abs(paths.pinFile), 0o600);
    done(`created (${paths.softhsm}; PIN in ${paths.pinFile}, mode 0600)`, since);
  }

  // Replicas: the store on the stack's PostgreSQL (moved there from SQLite once).
  const onPostgres = await exists(paths.database);
  const replicas = replicasFlag ?? (onPostgres ? 3 : 1);
  if (replicas > 1 || onPostgres) {
    const pgSince = performance.now();
    Deno.stdout.writeSync(encoder.encode(`      PostgreSQL on ${STACK_POSTGRES} ... `));
    openLine = true;
    postgres = await startStackPostgres(abs(state), await isRoot());
    databaseUrl = postgres.url;
    let note = `up (${postgres.dir})`;
    if (!onPostgres && await exists(`${paths.authority}/authority.db`)) {
      // The SQLite store of earlier runs, with its chain, into the new database.
      databaseUrl = null;
      await authorityCommand(["store", "move", "--to", postgres.url]);
      databaseUrl = postgres.url;
      note += "; the SQLite store moved into it, audit chain verified";
    }
    await Deno.mkdir(abs(paths.authority), { recursive: true, mode: 0o700 });
    await writePrivate(paths.database, `${postgres.url}\n`);
    done(note, pgSince);
  }

  // 2. The ceremony, once.
  since = begin(2, "authority key ceremony");
  let authorityId: string;
  if (haveAuthority) {
    authorityId = JSON.parse(await Deno.readTextFile(abs(paths.identity))).identifier;
    done(`skipped: already held (${short(authorityId)} in ${paths.authority})`, since);
  } else {
    const result = await authorityCommand(["init"]);
    authorityId = String(result.identifier);
    done(
      `done: key generated in the HSM, identity ${authorityId} (fingerprint ${result.fingerprint})`,
      since,
    );
  }

  // 3. The authority service: one, or the replicas sharing the database.
  const endpoints = REPLICAS.slice(0, replicas);
  since = begin(
    3,
    replicas === 1
      ? `authority service on ${AUTHORITY}`
      : `${replicas} authority replicas on ${endpoints.map((e) => e.listen).join(", ")}`,
  );
  for (const [i, endpoint] of endpoints.entries()) {
    const authority = await startService(i === 0 ? "authority" : `authority-${i + 1}`, [
      "-P=authority",
      "authority/main.ts",
      "serve",
      "--listen",
      endpoint.listen,
      "--metrics",
      endpoint.metrics,
      ...hsmArgs(),
      ...databaseArgs(),
    ], hsmEnv());
    await authority.waitForLine(/^LISTENING /, START_TIMEOUT_MS);
  }
  done(
    replicas === 1 && databaseUrl === null
      ? `listening (metrics ${AUTHORITY_METRICS})`
      : `listening (metrics ${endpoints.map((e) => e.metrics).join(", ")}; store ${databaseUrl})`,
    since,
  );
  /** What members are given: every replica, tried in order. */
  const authorityAddress = endpoints.length === 1 ? AUTHORITY : endpoints.map((e) => e.listen);

  // 4. The relay: a member too, enrolled with a ticket on the first run
  // (role=relay, relay_addresses naming the address members dial).
  since = begin(4, `relay on ${RELAY}`);
  const relayEnrolled = await exists(`${paths.relay}/relay.credential`);
  if (!relayEnrolled) {
    const result = await authorityCommand([
      "ticket",
      "create",
      "--ttl",
      "10m",
      "--attr",
      "role=relay",
      "--attr",
      `relay_addresses=[${RELAY}]`,
    ]);
    await writePrivate(paths.relayTicket, `${result.ticket}\n`);
  }
  const relay = await startService("relay", [
    "-P=relay",
    "relay/main.ts",
    "--state",
    paths.relay,
    ...(relayEnrolled ? [] : ["--ticket-file", paths.relayTicket]),
    "--listen",
    RELAY,
    "--metrics",
    RELAY_METRICS,
    "--trust",
    paths.identity,
    "--authority",
    endpoints.map((e) => e.listen).join(","),
  ]);
  await relay.waitForLine(/^LISTENING /, START_TIMEOUT_MS);
  if (!relayEnrolled) await remove(paths.relayTicket);
  done(
    `listening (metrics ${RELAY_METRICS}; ` +
      (relayEnrolled ? "already a member" : "enrolled with a one-time ticket (role=relay)") +
      "; follows the authority's revocations)",
    since,
  );

  // 5. The demo backends, in this process.
  since = begin(5, "demo backends");
  backends = startDemoBackends();
  done(DEMO_BACKENDS.map((b) => `${b.service} 127.0.0.1:${b.port}`).join(", "), since);

  // 6. The service agent, next to the orchestrator backend; a ticket on the
  // first run only (role=service for this customer and service; relay=<alias>
  // lets it register its own alias at the relay).
  since = begin(6, `service agent ${AGENT_ALIAS} (${SERVICE}, ${CUSTOMER})`);
  const agentConfig = {
    stateDir: paths.agent,
    authority: { identityFile: paths.identity, address: authorityAddress },
    relays: [RELAY],
    alias: AGENT_ALIAS,
    customerId: CUSTOMER,
    service: SERVICE,
    outlets: AGENT_OUTLETS,
    ops: AGENT_OPS,
    shutdownGraceMs: 3000,
  };
  const { id: agentId, ticketUsed: agentTicketUsed } = await startEnrolled({
    name: "agent",
    set: "agent",
    main: "agent/main.ts",
    configPath: paths.agentConfig,
    enrolled: paths.agentEnrolled,
    attrs: [
      "role=service",
      `customer_id=${CUSTOMER}`,
      `service=${SERVICE}`,
      `relay=${AGENT_ALIAS}`,
    ],
    config: agentConfig,
    hopeless: {
      pattern: /has been revoked/,
      message: "the service agent has been revoked at the authority " +
        "(`deno task authority revoke`); start afresh with `npm start -- --reset` " +
        "(new token, ceremony and enrollments)",
    },
  });
  done(
    `READY as ${short(agentId)}, ` +
      (!agentTicketUsed
        ? "already a member"
        : `enrolled with a one-time ticket (role=service, customer_id=${CUSTOMER}, ` +
          `service=${SERVICE}, relay=${AGENT_ALIAS})`) +
      `; outlet ${SERVICE} -> ${backendOf(SERVICE)}; alias registered at ${RELAY} ` +
      `(metrics ${AGENT_OPS})`,
    since,
  );

  // 7. The gateway; a ticket on the first run only.
  since = begin(7, `gateway ${ALIAS} (${CUSTOMER})`);
  const gatewayConfig = {
    stateDir: paths.gateway,
    authority: { identityFile: paths.identity, address: authorityAddress },
    relays: [RELAY],
    alias: ALIAS,
    customerId: CUSTOMER,
    // End to end: edges' inner channels routed to the agent (pinned: the
    // identifier it just printed), ciphertext only here.
    services: [
      { name: SERVICE, alias: AGENT_ALIAS, policy: ORCHESTRATOR_POLICY, identifier: agentId },
    ],
    outlets: OUTLETS,
    ops: GATEWAY_OPS,
    shutdownGraceMs: 3000,
  };
  const { service: gateway, id: gatewayId, ticketUsed } = await startEnrolled({
    name: "gateway",
    set: "gateway",
    main: "gateway/main.ts",
    configPath: paths.gatewayConfig,
    enrolled: paths.gatewayEnrolled,
    // relay=<alias> lets it register its alias at the relay.
    attrs: ["role=gateway", `customer_id=${CUSTOMER}`, `relay=${ALIAS}`],
    config: gatewayConfig,
  });
  // READY means its own alias is registered; the path to the agent comes
  // up on its own, and the edge's first session through 8152 needs it.
  await waitForServicePath(gateway, SERVICE, START_TIMEOUT_MS);
  done(
    `READY as ${short(gatewayId)}, ` +
      (!ticketUsed
        ? "already a member"
        : "enrolled with a one-time ticket (role=gateway, customer_id=cust_001, relay=gw-cust-001)") +
      `; alias registered at ${RELAY}; path to the agent of ${SERVICE} up; ` +
      `outlets ${OUTLETS.map((o) => o.name).join(", ")}`,
    since,
  );

  // 8. The edge; a license key on the first run only.
  since = begin(8, "edge");
  let license: string | undefined;
  try {
    license = JSON.parse(await Deno.readTextFile(abs(paths.edgeConfig))).license;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const newLicense = license === undefined;
  if (license === undefined) {
    const result = await authorityCommand([
      "license",
      "create",
      "--customer",
      CUSTOMER,
      "--tier",
      "professional",
      "--attr",
      "capabilities=[search,ingest,query,mcp]",
      "--attr",
      "rate_limit_rpm=2000",
    ]);
    license = String(result.license);
  }
  await writePrivate(
    paths.edgeConfig,
    JSON.stringify(
      {
        stateDir: paths.edge,
        authority: { identityFile: paths.identity, address: authorityAddress },
        relays: [RELAY],
        gateway: { alias: ALIAS, customerId: CUSTOMER, identifier: gatewayId },
        license,
        inlets: INLETS,
        ops: EDGE_OPS,
      },
      null,
      2,
    ),
  );
  const edge = await startService("edge", [
    "-P=edge",
    "edge/main.ts",
    "run",
    "--config",
    paths.edgeConfig,
  ]);
  const edgeId = identifierOf(
    await edge.waitForLine(/^READY /, START_TIMEOUT_MS, {
      pattern: /has been revoked/,
      message: "the edge has been revoked at the authority (`deno task authority revoke`); " +
        "start afresh with `npm start -- --reset` (new token, ceremony and enrollments)",
    }),
  );
  done(
    `READY as ${short(edgeId)}, ` +
      (newLicense
        ? `license key created for ${CUSTOMER} (tier professional, capabilities ` +
          `search,ingest,query,mcp; kept in ${paths.edgeConfig}, mode 0600)`
        : "license reused") +
      `; secure channel to the gateway through the relay`,
    since,
  );

  console.log(`
Nexus is up in ${seconds(started)}.
  authority  ${endpoints.map((e) => e.listen).join(", ")}  ${authorityId}${
    databaseUrl === null ? "" : ` (store ${databaseUrl})`
  }
  relay      ${RELAY}
  agent      ${AGENT_ALIAS} (${SERVICE}) for ${CUSTOMER}  ${agentId}
  gateway    ${ALIAS} for ${CUSTOMER}  ${gatewayId}
  edge       ${edgeId}
  inlets     ${INLETS.map((i) => `${i.listen} -> ${inletTarget(i)}`).join(", ")}
  backends   ${DEMO_BACKENDS.map((b) => `${b.service} 127.0.0.1:${b.port}`).join(", ")}

Try:
  curl http://127.0.0.1:8151/             # context, through edge -> relay -> gateway (TCP portal)
  curl http://127.0.0.1:8152/             # orchestrator end to end: decrypted only at the agent; the edge adds X-License-Id
  curl http://127.0.0.1:8153/             # inference (the policy wants tier professional)
  curl http://${AGENT_OPS}/metrics      # the agent: its inner channels and sessions (nexus_agent_*)
  deno task edge status                   # the edge's channel, credential and inlets
  curl http://${EDGE_OPS}/metrics      # metrics: edge; gateway ${GATEWAY_OPS}, relay ${RELAY_METRICS}, authority ${AUTHORITY_METRICS}
  deno task authority members --state ${paths.authority}${
    databaseUrl === null ? "" : ` --database ${databaseUrl}`
  }
Logs: ${paths.logs}/<service>.log. Ctrl-C stops everything.`);
}

try {
  await main();
} catch (error) {
  await fatal(error);
}
