/**
 * The per-customer gateway (docs/design.md §1, §6): the member runtime
 * (src/member/) enrolls it, keeps its credential fresh and follows
 * revocations; the gateway connects out to every relay (registering its
 * alias there), accepts secure channels from its customer's edges through
 * the relays, and serves outlets to backends behind attribute policies.
 *
 * Per-customer isolation holds twice: the channel listener admits only
 * `customerRule` (the gateway's customer), and every outlet's rule is the
 * operator's policy AND that same condition (`outletRule`).
 *
 * @module
 */
import { chooseRecordCipher } from "../src/channel/cipher_choice.ts";
import { listenSecureChannels, type SecureChannelListener } from "../src/channel/handshake.ts";
import { formatHostPort, parseHostPort } from "../src/config/host_port.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { readIdentityFile } from "../src/identity/identity_file.ts";
import { loadOrCreateIdentity } from "../src/identity/identity_store.ts";
import { type Logger, silentLogger } from "../src/log.ts";
import { sleep, whenAborted } from "../src/member/backoff.ts";
import { type Member, startMember, untilStartedOr } from "../src/member/member.ts";
import { Metrics } from "../src/ops/metrics.ts";
import { type OpsServer, startOpsServer } from "../src/ops/ops_server.ts";
import { customerRule, outletRule, serviceRule } from "../src/policy/rules.ts";
import { createOutlet, type Outlet } from "../src/portal/portal.ts";
import { registerOutletMetrics } from "../src/portal/outlet_metrics.ts";
import { RelayPresence } from "../src/member/relay_presence.ts";
import { AliasPath } from "../src/member/alias_path.ts";
import { ServiceRouter, type ServiceRouterOptions } from "./service_router.ts";
import { Node } from "../src/routing/node.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import {
  type CheckedGatewayConfig,
  checkGatewayConfig,
  type GatewayConfig,
  readGatewaySecrets,
} from "./config.ts";

export type { GatewayConfig };

/** A running gateway. */
export interface RunningGateway {
  readonly identifier: string;
  /** True while the alias is registered at one relay or more. */
  ready(): boolean;
  /** End-to-end services whose agent the gateway has a path to now, of how many. */
  services(): { up: number; total: number };
  readonly opsAddr: Deno.NetAddr | null;
  close(): Promise<void>;
}

/**
 * Starts the gateway. Fails (without starting) on a bad configuration or
 * policy, an unreadable trust anchor, or an authority that refuses
 * enrollment.
 */
export async function startGateway(
  input: GatewayConfig,
  options: {
    logger?: Logger;
    /** Tests only: a compromised gateway's hook on forwarded inner messages (service_router.ts). */
    hook?: ServiceRouterOptions["hook"];
    /** Gives up the start (before the first credential) when it aborts. */
    signal?: AbortSignal;
  } = {},
): Promise<RunningGateway> {
  // The ticket file, if named, is read here, so every caller gets its check.
  const config: CheckedGatewayConfig = await readGatewaySecrets(checkGatewayConfig(input));
  const logger = options.logger ?? silentLogger;
  // Before any channel exists: every record cipher takes the process's backend.
  chooseRecordCipher(config.cipher, logger);
  // Policies first: a mistake stops the start, with its position in the
  // operator's own text and the outlet's name.
  const outletRules = config.outlets.map((o) => outletRule(config.customerId, o.name, o.policy));
  const serviceRules = config.services.map((s) =>
    outletRule(config.customerId, `service ${s.name}`, s.policy)
  );
  const identity = await loadOrCreateIdentity(config.stateDir, "gateway");
  const trust = new TrustStore([await readIdentityFile(config.authority.identityFile)]);
  const node = new Node({ name: "gateway", logger });
  const transport = new TcpTransport(node, { logger: logger.child("transport") });
  let listener = null as SecureChannelListener | null;

  // The authority: credential, refresh, revocations. The first contact
  // must succeed; afterwards the link is kept up with backoff.
  let member: Member;
  try {
    member = await startMember({
      role: "gateway",
      identity,
      trust,
      node,
      transport,
      authorities: config.authority.address.map((a) => parseHostPort(a, "authority address")),
      enrollment: () => config.ticket === undefined ? undefined : { ticket: config.ticket },
      attestationTtlSeconds: config.attestationTtlSeconds,
      logger,
    });
    await untilStartedOr(member, options.signal);
  } catch (error) {
    await transport.close();
    throw error;
  }
  // A new credential goes inside every open channel (the relays get it
  // from the presence, below).
  member.onCredential(async (credential) => {
    for (const channel of listener?.channels() ?? []) {
      await channel.refreshCredential(credential.encoded).catch(() => {});
    }
  });
  member.onRevocations(async () => {
    for (const channel of listener?.channels() ?? []) await channel.revalidate();
  });

  listener = listenSecureChannels({
    node,
    address: "api",
    local: member.local,
    policy: { trust, revocations: member.revocations, admit: customerRule(config.customerId) },
    logger: logger.child("channel"),
  });
  const outlets: Outlet[] = config.outlets.map((outlet, i) =>
    createOutlet({
      node,
      name: outlet.name,
      backend: parseHostPort(outlet.backend, `outlet ${outlet.name} backend`),
      policy: outletRules[i],
      logger: logger.child(`outlet.${outlet.name}`),
    })
  );

  // End to end: a path to each service's agent through the relays (it
  // must be the customer's agent of that service), and the router that
  // hands edges' inner channels to it without a key of them.
  const servicePaths = config.services.map((service) =>
    new AliasPath({
      node,
      transport,
      relays: config.relays,
      alias: service.alias,
      peer: `the agent of ${service.name}`,
      policy: {
        trust,
        admit: serviceRule(config.customerId, service.name),
        pinned: service.identifier === undefined ? undefined : [service.identifier],
      },
      connectWaitMs: 10_000,
      idleTimeoutMs: 30_000,
      logger: logger.child(`service.${service.name}`),
    })
  );
  for (const path of servicePaths) path.start(member);
  const router = new ServiceRouter({
    node,
    edges: listener,
    services: config.services.map((service, i) => ({
      name: service.name,
      policy: serviceRules[i],
      channel: () => servicePaths[i].current?.channel ?? null,
    })),
    handshakes: config.serviceHandshakes,
    hook: options.hook,
    logger: logger.child("router"),
  });

  // The alias at every relay, kept with the shared backoff.
  const presence = new RelayPresence({
    node,
    transport,
    relays: config.relays,
    alias: config.alias,
    identity,
    trust,
    member,
    logger,
  });
  const registered = presence.registered;

  const metrics = gatewayMetrics(listener!, registered, config, outlets);
  serviceMetrics(metrics, router, config, servicePaths);
  member.registerMetrics(metrics, "nexus_gateway");
  const ops: OpsServer | null = config.ops
    ? startOpsServer({
      ...parseHostPort(config.ops, "ops address"),
      metrics,
      ready: () => presence.ready(),
      logger,
    })
    : null;

  return {
    identifier: identity.identifier,
    ready: () => presence.ready(),
    services: () => ({
      up: servicePaths.filter((path) => path.current !== null).length,
      total: servicePaths.length,
    }),
    opsAddr: ops?.addr ?? null,
    async close() {
      for (const outlet of outlets) outlet.close();
      const deadline = Date.now() + config.shutdownGraceMs;
      while (outlets.some((o) => o.stats.open > 0) && Date.now() < deadline) {
        await sleep(50);
      }
      // Close records first, handed to the relays before their connections
      // close: edges then reconnect at once instead of waiting for their
      // idle timeout to notice.
      const channels = listener?.channels() ?? [];
      listener?.close();
      await Promise.race([
        Promise.allSettled(channels.map((channel) => channel.close("gateway stopping"))),
        sleep(1000),
      ]);
      await ops?.close();
      router.close();
      await Promise.all(servicePaths.map((path) => path.close()));
      await presence.close();
      await member.close();
      await transport.close();
    },
  };
}

/** The gateway's own metrics (the member runtime adds its credential and attestation gauges). */
function gatewayMetrics(
  listener: SecureChannelListener,
  registered: ReadonlySet<string>,
  config: CheckedGatewayConfig,
  outlets: Outlet[],
): Metrics {
  const metrics = new Metrics();
  metrics.register(
    "nexus_gateway_channels",
    "gauge",
    "Open secure channels.",
    () => listener.channels().length,
  );
  metrics.register(
    "nexus_gateway_handshake_failures_total",
    "counter",
    "Handshakes refused or failed, by code (too_many_pending: a source's cap).",
    () => [...listener.failures].map(([code, n]) => [{ code }, n] as [{ code: string }, number]),
  );
  metrics.register(
    "nexus_gateway_relays_registered",
    "gauge",
    "Relays with the alias registered.",
    () => registered.size,
  );
  registerOutletMetrics(
    metrics,
    "nexus_gateway",
    outlets.map((outlet, i) => ({ name: config.outlets[i].name, outlet })),
  );
  return metrics;
}

/** Options of {@link run}. */
export interface RunOptions {
  /** Stops the gateway when it aborts (open sessions get `shutdownGraceMs`). */
  signal: AbortSignal;
  logger?: Logger;
  /** Called once with the READY line, when the alias is first registered at a relay. */
  announce?: (line: string) => void;
}

/**
 * Runs the gateway until `signal` aborts: starts it, announces
 * `READY <identifier> [metrics=HOST:PORT] [services=UP/TOTAL]` once its
 * alias is registered at a relay (and its paths to the end-to-end
 * services' agents are up, or {@link SERVICE_WAIT_MS} has passed), then
 * stops it gracefully.
 */
export async function run(config: GatewayConfig, options: RunOptions): Promise<void> {
  const logger = options.logger ?? silentLogger;
  let gateway: RunningGateway;
  try {
    gateway = await startGateway(config, { logger, signal: options.signal });
  } catch (error) {
    if (options.signal.aborted) return logger.info("stopped before it started");
    throw error;
  }
  while (!gateway.ready() && !options.signal.aborted) {
    await sleep(50, { signal: options.signal });
  }
  // Its end-to-end services too, for a while: a gateway announced ready
  // whose agents are not reached yet would drop its edges' first sessions.
  // An agent that stays away does not hold up the Phase 2 outlets.
  const until = Date.now() + SERVICE_WAIT_MS;
  while (gateway.services().up < gateway.services().total && Date.now() < until) {
    if (options.signal.aborted) break;
    await sleep(50, { signal: options.signal });
  }
  if (!options.signal.aborted) {
    const { up, total } = gateway.services();
    options.announce?.(
      `READY ${gateway.identifier}` +
        (gateway.opsAddr ? ` metrics=${formatHostPort(gateway.opsAddr)}` : "") +
        (total > 0 ? ` services=${up}/${total}` : ""),
    );
    await whenAborted(options.signal);
  }
  logger.info("shutting down; letting open sessions finish");
  await gateway.close();
}

/** How long `run` waits for the paths to the services' agents before it announces READY anyway, ms. */
export const SERVICE_WAIT_MS = 10_000;

/** The end-to-end services' metrics: forwarded messages and bytes, refusals, paths up. */
function serviceMetrics(
  metrics: Metrics,
  router: ServiceRouter,
  config: CheckedGatewayConfig,
  paths: AliasPath[],
): void {
  type Labelled = [Record<string, string>, number];
  metrics.register(
    "nexus_gateway_service_messages_total",
    "counter",
    "Inner (end-to-end) messages forwarded, by service and direction.",
    () =>
      [...router.stats].flatMap(([service, s]): Labelled[] => [
        [{ service, direction: "to_service" }, s.toService],
        [{ service, direction: "to_edge" }, s.toEdge],
      ]),
  );
  metrics.register(
    "nexus_gateway_service_bytes_total",
    "counter",
    "Bytes of inner messages forwarded (ciphertext), by service.",
    () => [...router.stats].map(([service, s]): Labelled => [{ service }, s.bytes]),
  );
  metrics.register(
    "nexus_gateway_service_refused_total",
    "counter",
    "Inner messages dropped, by service and reason.",
    () =>
      [...router.stats].flatMap(([service, s]) =>
        [...s.refused].map(([reason, n]): Labelled => [{ service, reason }, n])
      ),
  );
  metrics.register(
    "nexus_gateway_service_path_up",
    "gauge",
    "Whether the path to the service's agent is up (1) or not (0).",
    () =>
      config.services.map((service, i): Labelled => [
        { service: service.name },
        paths[i].current === null ? 0 : 1,
      ]),
  );
}
