/**
 * The backend service agent (docs/design.md §1, §9 "gateway compromise";
 * docs/architecture.md §5.10): what runs next to a backend service so that
 * the customer's traffic is decrypted there and nowhere on the way.
 *
 * - The member runtime enrolls it (a ticket with role `service`, the
 *   customer, the service's name and its alias), keeps its credential
 *   fresh, follows revocations and renews its attestation.
 * - It connects **out** to the relays and holds its alias there, like a
 *   gateway: it needs no inbound port.
 * - **Outer** channels: it accepts secure channels from its customer's
 *   gateways only (`gatewayRule`, optionally pinned identifiers), at `api`.
 * - **Inner** channels: it accepts edges' channels at `inner`, and only
 *   through one of those outer channels (a message 1 that came any other
 *   way does no work here); the peer must be an edge of its customer
 *   (`edgeRule`: not the gateway that routes it, nor any other member).
 * - **Outlets** to its local backends, with their policies evaluated here
 *   over the edge's own credential, and sessions taken only through inner
 *   channels (never from a gateway, whatever a policy says).
 *
 * A revocation list revalidates every channel (a revoked edge's inner
 * channel closes, and its sessions with it); a new credential is presented
 * in every channel and at every relay.
 *
 * @module
 */
import { chooseRecordCipher } from "../src/channel/cipher_choice.ts";
import type { SecureChannelInfo } from "../src/channel/channel_info.ts";
import { listenSecureChannels } from "../src/channel/handshake.ts";
import { INNER_LISTENER } from "../src/channel/service_routes.ts";
import { formatHostPort, parseHostPort } from "../src/config/host_port.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { ConfigError } from "../src/errors.ts";
import { readIdentityFile } from "../src/identity/identity_file.ts";
import { loadOrCreateIdentity } from "../src/identity/identity_store.ts";
import { type Logger, silentLogger } from "../src/log.ts";
import { sleep, whenAborted } from "../src/member/backoff.ts";
import { type Member, startMember, untilStartedOr } from "../src/member/member.ts";
import { RelayPresence } from "../src/member/relay_presence.ts";
import { Metrics } from "../src/ops/metrics.ts";
import { type OpsServer, startOpsServer } from "../src/ops/ops_server.ts";
import { aliasRule, edgeRule, gatewayRule, outletRule, serviceRule } from "../src/policy/rules.ts";
import { registerOutletMetrics } from "../src/portal/outlet_metrics.ts";
import { createOutlet, type Outlet } from "../src/portal/portal.ts";
import { Node } from "../src/routing/node.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import {
  type AgentConfig,
  checkAgentConfig,
  type CheckedAgentConfig,
  readAgentSecrets,
} from "./config.ts";

export type { AgentConfig };

/** A running agent. */
export interface RunningAgent {
  readonly identifier: string;
  /** True while the alias is registered at one relay or more. */
  ready(): boolean;
  readonly opsAddr: Deno.NetAddr | null;
  close(): Promise<void>;
}

/**
 * Starts the agent. Fails (without starting) on a bad configuration or
 * policy, an unreadable trust anchor, an authority that refuses
 * enrollment, or a credential that is not this customer's agent of this
 * service (a ticket made for something else).
 *
 * @example
 * ```ts ignore
 * const agent = await startAgent({
 *   stateDir: "/var/lib/nexus-agent",
 *   authority: { identityFile: "/etc/nexus/authority.json", address: "authority.internal:4100" },
 *   relays: ["relay1.example.net:4000"],
 *   alias: "svc-orchestrator-cust-001",
 *   customerId: "cust_001",
 *   service: "orchestrator",
 *   ticketFile: "/etc/nexus/agent.ticket",
 *   outlets: [{ name: "orchestrator", backend: "127.0.0.1:8000", policy: 'subject.role == "edge"' }],
 * });
 * ```
 */
export async function startAgent(
  input: AgentConfig,
  options: {
    logger?: Logger;
    /** Gives up the start (before the first credential) when it aborts. */
    signal?: AbortSignal;
  } = {},
): Promise<RunningAgent> {
  const config: CheckedAgentConfig = await readAgentSecrets(checkAgentConfig(input));
  const logger = options.logger ?? silentLogger;
  // Before any channel exists: every record cipher takes the process's backend.
  chooseRecordCipher(config.cipher, logger);
  // Policies first: a mistake stops the start, with its position.
  const outletRules = config.outlets.map((o) => outletRule(config.customerId, o.name, o.policy));
  const identity = await loadOrCreateIdentity(config.stateDir, "agent");
  const trust = new TrustStore([await readIdentityFile(config.authority.identityFile)]);
  const node = new Node({ name: "agent", logger });
  const transport = new TcpTransport(node, { logger: logger.child("transport") });

  let started: Member | undefined;
  try {
    started = await startMember({
      role: "service",
      identity,
      trust,
      node,
      transport,
      authorities: config.authority.address.map((a) => parseHostPort(a, "authority address")),
      enrollment: () => config.ticket === undefined ? undefined : { ticket: config.ticket },
      attestationTtlSeconds: config.attestationTtlSeconds,
      logger,
    });
    const credential = await untilStartedOr(started, options.signal);
    // Edges will hold this agent to serviceRule: fail here, with the reason,
    // rather than be refused by every one of them.
    const self = { identifier: identity.identifier, attributes: credential.attributes };
    if (!serviceRule(config.customerId, config.service).allows(self)) {
      throw new ConfigError(
        "invalid",
        `this agent's credential is not that of ${config.customerId}'s agent of ` +
          `${config.service} (role=service, customer_id, service): ` +
          JSON.stringify(credential.attributes),
      );
    }
    if (!aliasRule(config.alias).allows(self)) {
      throw new ConfigError(
        "invalid",
        `this agent's credential does not allow the alias ${config.alias} (its "relay" attribute)`,
      );
    }
  } catch (error) {
    await started?.close().catch(() => {});
    await transport.close();
    throw error;
  }
  const member = started;

  const outer = listenSecureChannels({
    node,
    address: "api",
    local: member.local,
    policy: {
      trust,
      revocations: member.revocations,
      admit: gatewayRule(config.customerId),
      pinned: config.gateways,
    },
    logger: logger.child("gateways"),
  });
  /** Decryptor addresses of the open inner channels: only they may open sessions. */
  const innerChannels = new Set<string>();
  const inner = listenSecureChannels({
    node,
    address: INNER_LISTENER,
    local: member.local,
    policy: { trust, revocations: member.revocations, admit: edgeRule(config.customerId) },
    // Only through a gateway's channel: the message 1 came out of one of
    // the outer channels (its decryptor delivered it, its encryptor leads
    // back). Anyone reaching this address any other way gets no work done.
    acceptFrom: (message) => {
      const via = outer.channel(message.return[0]);
      return via !== undefined && message.local?.secureChannel?.address === via.decryptorAddress;
    },
    onChannel: (channel) => {
      innerChannels.add(channel.decryptorAddress);
      channel.closed.then(() => innerChannels.delete(channel.decryptorAddress));
    },
    logger: logger.child("edges"),
  });
  const throughInner = (info: SecureChannelInfo) => innerChannels.has(info.address);
  member.onCredential(async (credential) => {
    for (const channel of [...outer.channels(), ...inner.channels()]) {
      await channel.refreshCredential(credential.encoded).catch(() => {});
    }
  });
  member.onRevocations(async () => {
    for (const channel of [...outer.channels(), ...inner.channels()]) await channel.revalidate();
  });

  const outlets: Outlet[] = config.outlets.map((outlet, i) =>
    createOutlet({
      node,
      name: outlet.name,
      backend: parseHostPort(outlet.backend, `outlet ${outlet.name} backend`),
      policy: outletRules[i],
      channels: throughInner,
      logger: logger.child(`outlet.${outlet.name}`),
    })
  );

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

  const metrics = new Metrics();
  metrics.register(
    "nexus_agent_gateway_channels",
    "gauge",
    "Open secure channels from gateways (outer).",
    () => outer.channels().length,
  );
  metrics.register(
    "nexus_agent_edge_channels",
    "gauge",
    "Open end-to-end channels from edges (inner).",
    () => inner.channels().length,
  );
  metrics.register(
    "nexus_agent_handshake_failures_total",
    "counter",
    "Handshakes refused or failed, by listener and code (not_accepted: not through a gateway).",
    () => [
      ...[...outer.failures].map(([code, n]) =>
        [{ listener: "gateways", code }, n] as [Record<string, string>, number]
      ),
      ...[...inner.failures].map(([code, n]) =>
        [{ listener: "edges", code }, n] as [Record<string, string>, number]
      ),
    ],
  );
  metrics.register(
    "nexus_agent_relays_registered",
    "gauge",
    "Relays with the alias registered.",
    () => presence.registered.size,
  );
  registerOutletMetrics(
    metrics,
    "nexus_agent",
    outlets.map((outlet, i) => ({ name: config.outlets[i].name, outlet })),
  );
  member.registerMetrics(metrics, "nexus_agent");
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
    opsAddr: ops?.addr ?? null,
    async close() {
      for (const outlet of outlets) outlet.close();
      const deadline = Date.now() + config.shutdownGraceMs;
      while (outlets.some((o) => o.stats.open > 0) && Date.now() < deadline) await sleep(50);
      const channels = [...inner.channels(), ...outer.channels()];
      inner.close();
      outer.close();
      await Promise.race([
        Promise.allSettled(channels.map((channel) => channel.close("agent stopping"))),
        sleep(1000),
      ]);
      await ops?.close();
      await presence.close();
      await member.close();
      await transport.close();
    },
  };
}

/** Options of {@link run}. */
export interface RunOptions {
  /** Stops the agent when it aborts (open sessions get `shutdownGraceMs`). */
  signal: AbortSignal;
  logger?: Logger;
  /** Called once with the READY line, when the alias is first registered at a relay. */
  announce?: (line: string) => void;
}

/**
 * Runs the agent until `signal` aborts: starts it, announces
 * `READY <identifier> [metrics=HOST:PORT]` once its alias is registered at
 * a relay, then stops it gracefully.
 */
export async function run(config: AgentConfig, options: RunOptions): Promise<void> {
  const logger = options.logger ?? silentLogger;
  let agent: RunningAgent;
  try {
    agent = await startAgent(config, { logger, signal: options.signal });
  } catch (error) {
    if (options.signal.aborted) return logger.info("stopped before it started");
    throw error;
  }
  while (!agent.ready() && !options.signal.aborted) {
    await sleep(50, { signal: options.signal });
  }
  if (!options.signal.aborted) {
    options.announce?.(
      `READY ${agent.identifier}` +
        (agent.opsAddr ? ` metrics=${formatHostPort(agent.opsAddr)}` : ""),
    );
    await whenAborted(options.signal);
  }
  logger.info("shutting down; letting open sessions finish");
  await agent.close();
}
