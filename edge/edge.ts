/**
 * The edge agent (docs/design.md §1): what a customer site runs. Its
 * identity lives in its state directory; the member runtime
 * (src/member/) enrolls it at the authority (ticket or license key), keeps
 * its credential fresh and on disk, follows revocations and renews its
 * channel attestation. The edge connects **out** to one of several relays,
 * opens a secure channel to its customer's gateway through the relay's
 * alias, and serves inlets whose connections become portal sessions to the
 * gateway's outlets. An HTTP inlet adds the license's public id (never
 * the key) to every request, for the backend to know the customer's license.
 *
 * The path (relay connection + secure channel) is kept by one loop:
 * relays are tried in order starting with the last one that worked; a full
 * round without a path waits with the shared backoff and jitter (never a
 * tight loop). A new inlet connection while there is no path wakes the loop
 * early (at most once a second) and waits for its outcome, so it succeeds
 * as soon as a path is back and is refused promptly when there is none.
 * Loss is noticed at once when a relay closes its connection and within
 * the channel's idle timeout (keepalives every third of it) when the
 * network silently drops; sessions in flight end with the channel.
 *
 * @module
 */
import { chooseRecordCipher } from "../src/channel/cipher_choice.ts";
import { licenseId } from "../src/authority_client/license_id.ts";
import { formatHostPort, parseHostPort } from "../src/config/host_port.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { readIdentityFile } from "../src/identity/identity_file.ts";
import { loadOrCreateIdentity } from "../src/identity/identity_store.ts";
import { type Logger, silentLogger } from "../src/log.ts";
import { whenAborted } from "../src/member/backoff.ts";
import { type Member, startMember, untilStartedOr } from "../src/member/member.ts";
import { Metrics } from "../src/ops/metrics.ts";
import { type OpsServer, startOpsServer } from "../src/ops/ops_server.ts";
import { gatewayRule } from "../src/policy/rules.ts";
import type { TrustPolicy } from "../src/channel/trust_policy.ts";
import { injectHeader } from "../src/portal/http_header_injector.ts";
import { createInlet, type Inlet } from "../src/portal/portal.ts";
import { Node } from "../src/routing/node.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import {
  type CheckedEdgeConfig,
  checkEdgeConfig,
  type EdgeConfig,
  readEdgeSecrets,
} from "./config.ts";
import { AliasPath } from "../src/member/alias_path.ts";
import { ServiceChannels } from "./service_channels.ts";

/** Where the edge's credential is kept between runs (public data; 0600 anyway). */
const CREDENTIAL_FILE = "edge.credential";

/** What `nexus-edge status` shows (GET /status). */
export interface EdgeStatus {
  /** The edge's identifier. */
  identifier: string;
  /** "enrolling" | "up" | "connecting" | "revoked" | "stopped" */
  state: string;
  /** The current credential's id, expiry (Unix seconds) and attributes; null before the first. */
  credential: { id: string; expiresAt: number; attributes: Record<string, unknown> } | null;
  /** Whether the channel to the authority is open, and its last error. */
  authority: { connected: boolean; lastError: string | null };
  /** When the edge's channel attestation expires, Unix seconds (renewed at two thirds). */
  attestationExpiresAt: number;
  /** The relay ("host:port") the current path goes through, or null when there is none. */
  relay: string | null;
  /** The gateway's identifier on the current path, or null when there is none. */
  gateway: string | null;
  /** Milliseconds since the path came up, or null. */
  upForMs: number | null;
  /** Why the last path attempt failed or the last path was lost; null while a path is up. */
  lastError: string | null;
  /** Paths to the gateway established since start. */
  pathChanges: number;
  /** Each inlet: its bound address, outlet (and service, end to end), mode, and session counters since start. */
  inlets: {
    listen: string;
    outlet: string;
    service?: string;
    mode: string;
    sessions: number;
    open: number;
    refused: number;
  }[];
}

/** A running edge. */
export interface RunningEdge {
  /** The edge's identifier. */
  readonly identifier: string;
  /** The inlets' bound addresses, in config order. */
  readonly inletAddrs: Deno.NetAddr[];
  /** The operations endpoint's bound address, or null when `ops` is "off". */
  readonly opsAddr: Deno.NetAddr | null;
  /** True while a secure channel to the gateway is open. */
  ready(): boolean;
  /** Resolves with the gateway's identifier and the relay once a path is first up. */
  readonly firstPath: Promise<{ gateway: string; relay: string }>;
  /** A snapshot of the edge's state, as GET /status serves it. */
  status(): EdgeStatus;
  /** Stops the inlets, the path, the ops endpoint and the member runtime. */
  close(): Promise<void>;
}

/**
 * Whom the edge takes as its gateway: an identity with a credential from
 * `trust`, role `gateway` of the edge's own customer (docs/security.md,
 * "Cross-customer access": an alias at a relay is only a name, and another
 * customer's gateway could hold it), and the pinned identifier when the
 * configuration names one.
 *
 * @example
 * ```ts ignore
 * const policy = gatewayPolicy({ alias: "gw-cust-001", customerId: "cust_001" }, trust);
 * ```
 */
export function gatewayPolicy(
  gateway: CheckedEdgeConfig["gateway"],
  trust: TrustStore,
): Omit<TrustPolicy, "revocations"> {
  return {
    trust,
    admit: gatewayRule(gateway.customerId),
    pinned: gateway.identifier === undefined ? undefined : [gateway.identifier],
  };
}

/**
 * Starts the edge. Fails (without starting) on a bad config, an unreadable
 * trust anchor, an inlet address that cannot be bound, or an authority
 * that refuses enrollment when there is no credential yet.
 *
 * @example
 * ```ts ignore
 * import { startEdge } from "./edge.ts";
 *
 * // The fields of deploy/edge.example.json.
 * const edge = await startEdge({
 *   stateDir: "/var/lib/nexus-edge",
 *   authority: {
 *     identityFile: "/etc/nexus/authority.identity.json",
 *     address: "authority.example.net:4100",
 *   },
 *   relays: ["relay-1.example.net:4000", "relay-2.example.net:4000"],
 *   gateway: { alias: "gw-cust-001", customerId: "cust_001" },
 *   licenseFile: "/etc/nexus/edge.license",
 *   inlets: [
 *     { listen: "127.0.0.1:8151", outlet: "context" },
 *     { listen: "127.0.0.1:8152", outlet: "orchestrator", mode: "http" },
 *   ],
 * });
 * const { gateway, relay } = await edge.firstPath; // once a path to the gateway is up
 * // … at shutdown:
 * await edge.close();
 * ```
 */
export async function startEdge(
  input: EdgeConfig,
  options: {
    logger?: Logger;
    /** Gives up the start (before the first credential) when it aborts. */
    signal?: AbortSignal;
  } = {},
): Promise<RunningEdge> {
  const config: CheckedEdgeConfig = await readEdgeSecrets(checkEdgeConfig(input));
  const logger = options.logger ?? silentLogger;
  // Before any channel exists: every record cipher takes the process's backend.
  chooseRecordCipher(config.cipher, logger);
  const identity = await loadOrCreateIdentity(config.stateDir, "edge");
  const trust = new TrustStore([await readIdentityFile(config.authority.identityFile)]);
  const node = new Node({ name: "edge", logger: logger.child("node") });
  const transport = new TcpTransport(node, { logger: logger.child("transport") });
  let stopped = false;
  let member = null as Member | null;
  let services = null as ServiceChannels | null;
  const path = new AliasPath({
    node,
    transport,
    relays: config.relays,
    alias: config.gateway.alias,
    peer: "the gateway",
    policy: gatewayPolicy(config.gateway, trust),
    connectWaitMs: config.connectWaitMs,
    idleTimeoutMs: config.idleTimeoutMs,
    logger,
  });

  // Inlets first: an address that cannot be bound (taken, or outside the
  // permission set) stops the start before anything connects out. A
  // connection that comes before the first path waits for it.
  const inlets: Inlet[] = [];
  // HTTP inlets send the license's id, computed once here: the key is an
  // enrollment secret, and every backend (and its request log) would see it.
  // The config check makes sure a license is there when an inlet is "http".
  const licenseHeaderValue = config.license === undefined ? undefined : licenseId(config.license);
  const abandon = async (error: unknown): Promise<never> => {
    stopped = true;
    for (const inlet of inlets) inlet.close();
    await member?.close();
    await transport.close();
    throw error;
  };
  try {
    for (const inlet of config.inlets) {
      inlets.push(createInlet({
        node,
        listen: parseHostPort(inlet.listen, "inlet"),
        // End to end: through the service's inner channel (opened on first
        // use, once the member runtime runs); else to the gateway's outlet.
        route: inlet.service === undefined
          ? async () => {
            const channel = await path.channel();
            return { route: [channel.address, `outlet.${inlet.outlet}`], closed: channel.closed };
          }
          : () => {
            if (services === null) throw new Error("the edge is starting");
            return services.routeTo(inlet.service!, inlet.outlet);
          },
        reader: inlet.mode === "http"
          ? (conn) =>
            injectHeader(conn, {
              name: config.licenseHeader,
              value: licenseHeaderValue!,
              tunnels: inlet.tunnels === true,
            })
          : undefined,
        logger: logger.child(`inlet.${inlet.outlet}`),
      }));
      logger.info("inlet listening", {
        listen: inlet.listen,
        outlet: inlet.outlet,
        ...(inlet.service === undefined ? {} : { service: inlet.service }),
      });
    }
  } catch (error) {
    await abandon(error);
  }

  // ── The member runtime: enrollment, refresh, revocations, attestation ──
  try {
    member = await startMember({
      role: "edge",
      identity,
      trust,
      node,
      transport,
      authorities: config.authority.address.map((a) => parseHostPort(a, "authority.address")),
      enrollment: () =>
        config.ticket !== undefined
          ? { ticket: config.ticket }
          : config.license !== undefined
          ? { license: config.license }
          : undefined,
      enrollWith: "a ticket or a license key",
      credentialFile: `${config.stateDir}/${CREDENTIAL_FILE}`,
      attestationTtlSeconds: config.attestationTtlSeconds,
      logger,
    });
    await untilStartedOr(member, options.signal);
  } catch (error) {
    await abandon(error);
  }
  const runtime = member!;
  path.start(runtime);
  services = new ServiceChannels({
    node,
    path,
    member: runtime,
    trust,
    customerId: config.gateway.customerId,
    idleTimeoutMs: config.idleTimeoutMs,
    logger,
  });

  const state = () =>
    stopped
      ? "stopped"
      : runtime.state === "revoked"
      ? "revoked"
      : path.current !== null
      ? "up"
      : runtime.credential === null
      ? "enrolling"
      : "connecting";
  const edgeStatus = (): EdgeStatus => {
    const held = runtime.status();
    return {
      identifier: identity.identifier,
      state: state(),
      credential: held.credential === null
        ? null
        : { ...held.credential, attributes: { ...held.credential.attributes } },
      authority: { connected: held.authority.connected, lastError: held.authority.lastError },
      attestationExpiresAt: held.attestationExpiresAt,
      relay: path.current?.relay ?? null,
      gateway: path.current?.channel.peer.identifier ?? null,
      upForMs: path.upForMs,
      lastError: path.stats.lastError,
      pathChanges: path.stats.pathChanges,
      inlets: config.inlets.map((inlet, i) => ({
        listen: formatHostPort(inlets[i].addr),
        outlet: inlet.outlet,
        ...(inlet.service === undefined ? {} : { service: inlet.service }),
        mode: inlet.mode ?? "tcp",
        ...inlets[i].stats,
      })),
    };
  };

  const metrics = edgeMetrics(path, config, inlets);
  runtime.registerMetrics(metrics, "nexus_edge");
  let ops: OpsServer | null = null;
  if (config.ops !== "off") {
    ops = startOpsServer({
      ...parseHostPort(config.ops, "ops"),
      metrics,
      ready: () => path.current !== null,
      status: edgeStatus,
      logger,
    });
  }

  return {
    identifier: identity.identifier,
    inletAddrs: inlets.map((i) => i.addr),
    opsAddr: ops?.addr ?? null,
    ready: () => path.current !== null,
    firstPath: path.firstPath.then(({ peer, relay }) => ({ gateway: peer, relay })),
    status: edgeStatus,
    async close() {
      stopped = true;
      for (const inlet of inlets) inlet.close();
      await services?.close();
      await path.close();
      await ops?.close();
      await runtime.close();
      await transport.close();
    },
  };
}

/** The edge's own metrics (the member runtime adds its credential and attestation gauges). */
function edgeMetrics(path: AliasPath, config: CheckedEdgeConfig, inlets: Inlet[]): Metrics {
  const metrics = new Metrics();
  metrics.register(
    "nexus_edge_path_up",
    "gauge",
    "1 while a channel to the gateway is open.",
    () => path.current === null ? 0 : 1,
  );
  metrics.register(
    "nexus_edge_path_changes_total",
    "counter",
    "Paths to the gateway established.",
    () => path.stats.pathChanges,
  );
  metrics.register(
    "nexus_edge_path_failures_total",
    "counter",
    "Failed attempts to reach the gateway through a relay.",
    () => path.stats.connectFailures,
  );
  metrics.register(
    "nexus_edge_relay_connected",
    "gauge",
    "1 for the relay in use.",
    () => config.relays.map((relay) => [{ relay }, path.current?.relay === relay ? 1 : 0]),
  );
  const perInlet = (pick: (i: Inlet) => number) => () =>
    inlets.map((inlet, i) =>
      [{ outlet: config.inlets[i].outlet }, pick(inlet)] as [
        { outlet: string },
        number,
      ]
    );
  metrics.register(
    "nexus_edge_sessions",
    "gauge",
    "Open portal sessions.",
    perInlet((i) => i.stats.open),
  );
  metrics.register(
    "nexus_edge_sessions_total",
    "counter",
    "Portal sessions opened.",
    perInlet((i) => i.stats.sessions),
  );
  metrics.register(
    "nexus_edge_sessions_refused_total",
    "counter",
    "Inlet connections refused (no path, or the outlet refused).",
    perInlet((i) => i.stats.refused),
  );
  return metrics;
}

/** Options of {@link run}. */
export interface RunOptions {
  /** Stops the edge when it aborts. */
  signal: AbortSignal;
  /** Where the edge logs (default: silent). */
  logger?: Logger;
  /** Called once with the READY line, when the first channel to the gateway is up. */
  announce?: (line: string) => void;
}

/**
 * Runs the edge until `signal` aborts: starts it, announces
 * `READY <identifier> gateway=… relay=… inlets=… metrics=…` once the first
 * path is up, then stops it cleanly.
 */
export async function run(config: EdgeConfig, options: RunOptions): Promise<void> {
  const logger = options.logger ?? silentLogger;
  let edge: RunningEdge;
  try {
    edge = await startEdge(config, { logger, signal: options.signal });
  } catch (error) {
    if (options.signal.aborted) return logger.info("stopped before it started");
    throw error;
  }
  const stopped = whenAborted(options.signal).then(() => null);
  logger.info("edge started; connecting to the gateway", {
    identifier: edge.identifier,
    relays: checkEdgeConfig(config).relays.join(","),
  });
  const first = await Promise.race([edge.firstPath, stopped]);
  if (first !== null) {
    const inlets = edge.inletAddrs.map(formatHostPort).join(",");
    const ops = edge.opsAddr ? ` metrics=${formatHostPort(edge.opsAddr)}` : "";
    options.announce?.(
      `READY ${edge.identifier} gateway=${first.gateway} relay=${first.relay} inlets=${inlets}${ops}`,
    );
    await stopped;
  }
  logger.info("shutting down");
  await edge.close();
}
