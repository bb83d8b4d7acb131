/**
 * The whole system deployed as an operator would, for the benchmarks
 * (scripts/bench_e2e.ts, scripts/bench_compare.ts): each service its own
 * `deno run -P=<set> <service>/main.ts` process under its own permission
 * set, on 127.0.0.1, in front of backends that the caller runs.
 *
 * - the authority (`authority/main.ts serve`, after `init`), on a fresh
 *   SoftHSM2 token (scripts/support/authority_process.ts);
 * - a relay (`relay/main.ts`), enrolled with a one-time ticket, its
 *   per-identity rate raised so that it is not what is measured;
 * - a service agent (`agent/main.ts run`, the service {@link SERVICE}),
 *   with an outlet per backend;
 * - a gateway (`gateway/main.ts run`): its own Phase 2 outlets to the same
 *   backends, and the service routed to the agent;
 * - an edge (`edge/main.ts run`, `-P=edge` plus the flags its config
 *   needs), with two inlets per backend: one to the gateway's outlet
 *   (Phase 2: edge → relay → gateway → backend) and one naming the
 *   service (end to end: edge → relay → gateway → relay → agent →
 *   backend).
 *
 * {@link deploy} starts them in that order, each after the previous one's
 * ready line, and waits until a probe works through both kinds of inlet;
 * {@link deploymentHealth} reads back what the relay, gateway and agent
 * counted, to check that nothing was dropped or refused.
 *
 * @module
 */
import { checkEdgeConfig, type EdgeConfig, edgePermissionFlags } from "../../edge/config.ts";
import type { GatewayConfig } from "../../gateway/gateway.ts";
import type { AgentConfig } from "../../agent/config.ts";
import { serviceV8Flag } from "../../src/config/runtime_flags.ts";
import { parseBanner } from "./banner.ts";
import { deadline } from "./deadline.ts";
import { freePort } from "./free_port.ts";
import { ROOT, type ServiceProcess, spawnDeno } from "./service_process.ts";

/** The customer every member of the deployment belongs to. */
export const CUSTOMER = "cust_bench";
/** The gateway's alias at the relay. */
export const GATEWAY_ALIAS = "gw-bench";
/** The service agent's alias at the relay. */
export const AGENT_ALIAS = "svc-bench";
/** The service the agent serves (end to end). */
export const SERVICE = "bench";
/** The policy of every outlet and of the service: any edge. */
export const POLICY = 'subject.role == "edge"';
/** Lines of a child's stderr kept for error messages. */
const STDERR_KEPT = 60;
/** How long a child has to print its ready line. */
const START_MS = 30_000;
/** How long a child has to exit once asked to, before it is killed. */
const GRACE_MS = 5000;

/** The two ways through the deployment. */
export type PortalMode = "phase2" | "e2e";
/** Both, in the order they are set up. */
export const PORTAL_MODES: readonly PortalMode[] = ["phase2", "e2e"];
/** The services of the deployment that carry traffic. */
export type DeployedService = "edge" | "relay" | "gateway" | "agent";

/** A step to undo when the benchmark ends: stop a process, remove a file. */
export type Cleanup = () => Promise<unknown> | unknown;

/**
 * The authority to deploy: what {@link deploy} uses of the fixture of
 * scripts/support/authority_process.ts (`authorityFixture()`), a fresh
 * SoftHSM2 token and a state directory, not yet initialised.
 */
export interface DeploymentAuthority {
  /** Its state directory, relative to the repository root. */
  readonly state: string;
  /** Runs an `authority/main.ts` command against its token and state. */
  run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Starts `authority/main.ts serve` on 127.0.0.1. */
  serve(): Promise<{ port: number; stop(): Promise<void> }>;
  /** The arguments that make a relay on `127.0.0.1:port` a member of it. */
  relayArgs(port: number, authorityPort: number): Promise<string[]>;
}

/** What {@link deploy} needs. */
export interface DeploymentOptions {
  /** The authority (a fresh fixture: `init` is run here). */
  fixture: DeploymentAuthority;
  /** The directory for configs and state, relative to the repository root (under ./.state). */
  dir: string;
  /** The backends: outlet name → port on 127.0.0.1. */
  backends: Record<string, number>;
  /**
   * A check through an inlet to the backend `outlet` (given the inlet's
   * port), retried until it works: the path is up.
   */
  probe: { outlet: string; check: (port: number) => Promise<unknown> };
  /** Where the stops are registered, to be run in reverse order. */
  cleanup: Cleanup[];
  /** Prints a progress line. */
  progress: (line: string) => void;
  /**
   * A directory (absolute) to run the relay, agent, gateway and edge under
   * V8's CPU profiler in (`--cpu-prof-dir`, with `--cpu-prof-md`).
   */
  profile?: string;
}

/** The running deployment. */
export interface Deployment {
  /** Process ids of the services that carry traffic. */
  pids: Record<DeployedService, number>;
  /** Every service started (the authority aside), to check that none has exited. */
  services: ServiceProcess[];
  /** The relay's metrics endpoint, `host:port`. */
  relayMetrics: string;
  /** The gateway's ops endpoint, `host:port`. */
  gatewayMetrics: string;
  /** The agent's ops endpoint, `host:port`. */
  agentMetrics: string;
  /** The edge's inlet ports, by mode and backend (outlet name). */
  inlets: Record<PortalMode, Record<string, number>>;
}

/** What the relay, gateway and agent counted ({@link deploymentHealth}). */
export interface DeploymentHealth {
  /** Frames the relay dropped. */
  dropped: number;
  /** Inner messages the gateway refused. */
  refused: number;
  /** Sessions that failed at the gateway and the agent. */
  failed: number;
  /** Bytes of inner ciphertext the gateway routed. */
  routed: number;
  /** Sessions the agent opened. */
  agentSessions: number;
}

/** The sum of a metric's samples (every label set) at an ops endpoint; 0 when absent. */
export async function metric(at: string, name: string, labels = ""): Promise<number> {
  const text = await (await fetch(`http://${at}/metrics`)).text();
  return text.split("\n")
    .filter((line) => line.startsWith(`${name} `) || line.startsWith(`${name}{`))
    .filter((line) => line.includes(labels))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(" ") + 1)), 0);
}

/** Runs `attempt` until it works (each try at most 10 s), or throws once `ms` have passed. */
export async function untilWorks(
  attempt: () => Promise<unknown>,
  what: string,
  ms = 30_000,
): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      await deadline(attempt(), 10_000, what);
      return;
    } catch (error) {
      if (Date.now() > until) throw new Error(`${what}: no answer`, { cause: error });
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

/** A one-time ticket from the authority with these attributes. */
async function ticket(fixture: DeploymentAuthority, ...attrs: string[]): Promise<string> {
  const out = await fixture.run([
    "ticket",
    "create",
    "--json",
    ...attrs.flatMap((a) => ["--attr", a]),
  ]);
  if (out.code !== 0) throw new Error(`ticket create failed: ${out.stderr}`);
  return JSON.parse(out.stdout).ticket as string;
}

/** Writes `config` to `file` (relative to the root), 0600: it may hold a ticket. */
async function writeConfig(file: string, config: unknown): Promise<void> {
  await Deno.writeTextFile(`${ROOT}${file}`, JSON.stringify(config), { mode: 0o600 });
}

/** Waits for `service`'s `READY <identifier> [metrics=HOST:PORT]`. */
async function ready(service: ServiceProcess): Promise<{ identifier: string; metrics: string }> {
  const line = await service.waitFor(/^READY/, START_MS);
  const metrics = /metrics=(\S+)/.exec(line)?.[1];
  if (metrics === undefined) throw new Error(`${service.name}: no metrics in ${line}`);
  return { identifier: line.split(" ")[1], metrics };
}

/**
 * Starts the authority, relay, agent, gateway and edge, registering their
 * stops in `options.cleanup`, and resolves once the probe works through
 * the Phase 2 and the end-to-end inlet.
 */
export async function deploy(options: DeploymentOptions): Promise<Deployment> {
  const { fixture, dir, backends, cleanup, progress, profile } = options;
  progress("authority: init and serve (SoftHSM2 token)");
  const init = await fixture.run(["init"]);
  if (init.code !== 0) throw new Error(`authority init failed: ${init.stderr}`);
  const authority = await fixture.serve();
  cleanup.push(() => authority.stop());
  const trustFile = `${fixture.state}/authority.identity.json`;
  const authorityAddress = `127.0.0.1:${authority.port}`;
  const started: ServiceProcess[] = [];
  const start = (name: string, args: string[]) => {
    const profiling = profile === undefined
      ? []
      : [`--cpu-prof-dir=${profile}`, `--cpu-prof-name=${name}.cpuprofile`, "--cpu-prof-md"];
    const service = spawnDeno(name, [...profiling, serviceV8Flag(), ...args], {
      stderr: { keep: STDERR_KEPT },
    });
    started.push(service);
    cleanup.push(() => service.stop(GRACE_MS));
    return service;
  };

  progress("relay");
  const relayPort = freePort();
  const relay = start("relay", [
    "-P=relay",
    "relay/main.ts",
    ...await fixture.relayArgs(relayPort, authority.port),
    "--metrics",
    "127.0.0.1:0",
    "--rate",
    String(2 ** 40),
  ]);
  const relayBanner = parseBanner(await relay.waitFor(/^LISTENING/, START_MS));
  if (relayBanner.metrics === undefined) throw new Error("the relay printed no metrics address");
  const relays = [`127.0.0.1:${relayPort}`];

  progress("service agent");
  const outlets = Object.entries(backends).map(([name, port]) => ({
    name,
    backend: `127.0.0.1:${port}`,
    policy: POLICY,
  }));
  const agentConfig: AgentConfig = {
    stateDir: `${dir}/agent`,
    authority: { identityFile: trustFile, address: authorityAddress },
    relays,
    alias: AGENT_ALIAS,
    customerId: CUSTOMER,
    service: SERVICE,
    ticket: await ticket(
      fixture,
      "role=service",
      `customer_id=${CUSTOMER}`,
      `service=${SERVICE}`,
      `relay=${AGENT_ALIAS}`,
    ),
    outlets,
    ops: `127.0.0.1:${freePort()}`,
    shutdownGraceMs: 1000,
  };
  await writeConfig(`${dir}/agent.json`, agentConfig);
  const agent = start("agent", [
    "-P=agent",
    "agent/main.ts",
    "run",
    "--config",
    `${dir}/agent.json`,
  ]);
  const agentReady = await ready(agent);

  progress("gateway");
  const gatewayConfig: GatewayConfig = {
    stateDir: `${dir}/gateway`,
    authority: { identityFile: trustFile, address: authorityAddress },
    relays,
    alias: GATEWAY_ALIAS,
    customerId: CUSTOMER,
    ticket: await ticket(
      fixture,
      "role=gateway",
      `customer_id=${CUSTOMER}`,
      `relay=${GATEWAY_ALIAS}`,
    ),
    services: [{
      name: SERVICE,
      alias: AGENT_ALIAS,
      policy: POLICY,
      identifier: agentReady.identifier,
    }],
    outlets,
    ops: `127.0.0.1:${freePort()}`,
    shutdownGraceMs: 1000,
  };
  await writeConfig(`${dir}/gateway.json`, gatewayConfig);
  const gateway = start("gateway", [
    "-P=gateway",
    "gateway/main.ts",
    "run",
    "--config",
    `${dir}/gateway.json`,
  ]);
  const gatewayReady = await ready(gateway);

  progress("edge");
  const license = await fixture.run([
    "license",
    "create",
    "--json",
    "--customer",
    CUSTOMER,
    "--tier",
    "professional",
  ]);
  if (license.code !== 0) throw new Error(`license create failed: ${license.stderr}`);
  await Deno.writeTextFile(
    `${ROOT}${dir}/edge.license`,
    `${JSON.parse(license.stdout).license}\n`,
    { mode: 0o600 },
  );
  const names = Object.keys(backends);
  const inlets: Record<PortalMode, Record<string, number>> = {
    phase2: Object.fromEntries(names.map((name) => [name, freePort()])),
    e2e: Object.fromEntries(names.map((name) => [name, freePort()])),
  };
  const edgeConfig: EdgeConfig = {
    stateDir: `${dir}/edge`,
    authority: { identityFile: trustFile, address: authorityAddress },
    relays,
    gateway: {
      alias: GATEWAY_ALIAS,
      customerId: CUSTOMER,
      identifier: gatewayReady.identifier,
    },
    licenseFile: `${dir}/edge.license`,
    inlets: [
      ...names.map((name) => ({ listen: `127.0.0.1:${inlets.phase2[name]}`, outlet: name })),
      ...names.map((name) => ({
        listen: `127.0.0.1:${inlets.e2e[name]}`,
        service: SERVICE,
        outlet: name,
      })),
    ],
    ops: `127.0.0.1:${freePort()}`,
  };
  const edgeFile = `${dir}/edge.json`;
  await writeConfig(edgeFile, edgeConfig);
  const edge = start("edge", [
    "-P=edge",
    ...edgePermissionFlags(checkEdgeConfig(edgeConfig), edgeFile),
    "edge/main.ts",
    "run",
    "--config",
    edgeFile,
  ]);
  await edge.waitFor(/^READY/, START_MS);

  // The paths: the edge's channel to the gateway, the gateway's to the
  // agent, and the edge's inner channel to the agent (opened on first use).
  progress("paths: Phase 2 and end to end");
  const label: Record<PortalMode, string> = { phase2: "Phase 2", e2e: "End to end" };
  for (const mode of PORTAL_MODES) {
    const port = inlets[mode][options.probe.outlet];
    await untilWorks(() => options.probe.check(port), `${label[mode]} ${options.probe.outlet}`);
  }
  for (const service of started) {
    if (service.exited !== null) throw new Error(`${service.name} exited: ${service.exited.code}`);
  }
  return {
    pids: { edge: edge.pid, relay: relay.pid, gateway: gateway.pid, agent: agent.pid },
    services: started,
    relayMetrics: relayBanner.metrics,
    gatewayMetrics: gatewayReady.metrics,
    agentMetrics: agentReady.metrics,
    inlets,
  };
}

/** Throws when a service of the deployment has exited, with its last lines of stderr. */
export function checkRunning(deployment: Deployment): void {
  for (const service of deployment.services) {
    if (service.exited !== null) {
      throw new Error(
        `${service.name} exited (${service.exited.code}):\n${service.stderr.text(20)}`,
      );
    }
  }
}

/** What the relay, gateway and agent counted so far. */
export async function deploymentHealth(deployment: Deployment): Promise<DeploymentHealth> {
  const { relayMetrics, gatewayMetrics, agentMetrics } = deployment;
  return {
    dropped: await metric(relayMetrics, "nexus_relay_frames_dropped_total"),
    refused: await metric(gatewayMetrics, "nexus_gateway_service_refused_total"),
    routed: await metric(gatewayMetrics, "nexus_gateway_service_bytes_total"),
    agentSessions: await metric(agentMetrics, "nexus_agent_sessions_total"),
    failed: await metric(gatewayMetrics, "nexus_gateway_session_failures_total") +
      await metric(agentMetrics, "nexus_agent_session_failures_total"),
  };
}

/** Portal sessions open now at the gateway's and the agent's outlets. */
export async function openSessions(deployment: Deployment): Promise<number> {
  return await metric(deployment.gatewayMetrics, "nexus_gateway_sessions") +
    await metric(deployment.agentMetrics, "nexus_agent_sessions");
}

/**
 * Resolves once no portal session is open at the gateway's or the agent's
 * outlets (the clients' connections have all been closed on the way).
 * @throws {Error} when some are still open after `ms`.
 */
export async function sessionsClosed(deployment: Deployment, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const open = await openSessions(deployment);
    if (open === 0) return;
    if (Date.now() > until) throw new Error(`${open} portal sessions still open after ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * {@link deploymentHealth}, throwing when the relay dropped a frame, the
 * gateway refused an inner message, or a session failed.
 */
export async function checkHealth(deployment: Deployment): Promise<DeploymentHealth> {
  const health = await deploymentHealth(deployment);
  const { dropped, refused, failed } = health;
  if (dropped || refused || failed) {
    throw new Error(
      `relay dropped ${dropped} frames; the gateway refused ${refused} inner messages; ` +
        `${failed} sessions failed at the gateway and agent`,
    );
  }
  return health;
}
