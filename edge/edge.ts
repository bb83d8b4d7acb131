/**
 * The edge agent (docs/design.md §1): what a customer site runs. Its
 * identity lives in its state directory; the member runtime
 * (src/member/) enrolls it at the authority (ticket or license key), keeps
 * its credential fresh and on disk, follows revocations and renews its
 * channel attestation. The edge connects **out** to one of several relays,
 * opens a secure channel to its customer's gateway through the relay's
 * alias, and serves inlets whose connections become portal sessions to the
 * gateway's outlets.
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
import { connectSecureChannel } from "../src/channel/handshake.ts";
import type { SecureChannel } from "../src/channel/secure_channel.ts";
import { formatHostPort, parseHostPort } from "../src/config/host_port.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { encodeCbor } from "../src/encoding/cbor.ts";
import { HandshakeError, RelayError } from "../src/errors.ts";
import { readIdentityFile } from "../src/identity/identity_file.ts";
import { loadOrCreateIdentity } from "../src/identity/identity_store.ts";
import { type Logger, silentLogger } from "../src/log.ts";
import { backoffMs, sleep, whenAborted } from "../src/member/backoff.ts";
import { type Member, startMember } from "../src/member/member.ts";
import { Metrics } from "../src/ops/metrics.ts";
import { type OpsServer, startOpsServer } from "../src/ops/ops_server.ts";
import { gatewayRule } from "../src/policy/rules.ts";
import { injectHeader } from "../src/portal/http_header_injector.ts";
import { createInlet, type Inlet } from "../src/portal/portal.ts";
import {
  connectRelay,
  lookupAlias,
  refreshAtRelay,
  type RelayConnection,
} from "../src/relay_client/relay_client.ts";
import { Node } from "../src/routing/node.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import {
  type CheckedEdgeConfig,
  checkEdgeConfig,
  type EdgeConfig,
  readEdgeSecrets,
} from "./config.ts";

/** Where the edge's credential is kept between runs (public data; 0600 anyway). */
const CREDENTIAL_FILE = "edge.credential";
/** Shortest time between two path attempts, however often clients knock. */
const MIN_RETRY_MS = 1000;

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
  /** Each inlet: its bound address, outlet, mode, and session counters since start. */
  inlets: {
    listen: string;
    outlet: string;
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

/** A relay connection and the secure channel to the gateway through it. */
interface Path {
  relay: string;
  connection: RelayConnection;
  channel: SecureChannel;
}

const message = (error: unknown) => error instanceof Error ? error.message : String(error);

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
  options: { logger?: Logger } = {},
): Promise<RunningEdge> {
  const config: CheckedEdgeConfig = await readEdgeSecrets(checkEdgeConfig(input));
  const logger = options.logger ?? silentLogger;
  const identity = await loadOrCreateIdentity(config.stateDir, "edge");
  const trust = new TrustStore([await readIdentityFile(config.authority.identityFile)]);
  const node = new Node({ name: "edge", logger: logger.child("node") });
  const transport = new TcpTransport(node, { logger: logger.child("transport") });
  let stopped = false;
  const status = {
    lastError: null as string | null,
    pathChanges: 0,
    connectFailures: 0,
    upSince: 0,
  };
  /** The current path, while up. */
  let path = null as Path | null;
  let member = null as Member | null;
  const firstPath = Promise.withResolvers<{ gateway: string; relay: string }>();
  firstPath.promise.catch(() => {});

  // ── The path: relay connection + secure channel to the gateway ────────
  let preferred = 0;
  let wake = Promise.withResolvers<void>();
  let lastRoundStart = 0;
  /** Settles after each round of attempts (true: a path is up). */
  let roundDone = Promise.withResolvers<boolean>();

  /** The route to an outlet, waiting for a path when there is none. */
  const routeTo = async (outlet: string) => {
    if (path === null && !stopped) {
      if (member?.state === "revoked") throw new Error("this edge is revoked");
      const outcome = roundDone.promise;
      wake.resolve();
      // The timer goes with the outcome: no 10 s timer left per knock.
      const up = await Promise.race([
        outcome,
        sleep(config.connectWaitMs, { wake: outcome }).then(() => false),
      ]);
      if (!up && path === null) {
        throw new Error(`no path to the gateway (${status.lastError ?? "connecting"})`);
      }
    }
    const current = path;
    if (current === null) throw new Error("no path to the gateway");
    return { route: [current.channel.address, `outlet.${outlet}`], closed: current.channel.closed };
  };

  // Inlets first: an address that cannot be bound (taken, or outside the
  // permission set) stops the start before anything connects out.
  const inlets: Inlet[] = [];
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
        route: () => routeTo(inlet.outlet),
        reader: inlet.mode === "http"
          ? (conn) =>
            injectHeader(conn, {
              name: config.licenseHeader,
              value: config.license!,
              tunnels: inlet.tunnels === true,
            })
          : undefined,
        logger: logger.child(`inlet.${inlet.outlet}`),
      }));
      logger.info("inlet listening", { listen: inlet.listen, outlet: inlet.outlet });
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
      authorities: [parseHostPort(config.authority.address, "authority.address")],
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
    await member.firstCredential;
  } catch (error) {
    await abandon(error);
  }
  const runtime = member!;
  // A new credential is presented inside the open channel and at the relay
  // on the same connection, so neither the gateway's expiry timer nor the
  // relay's sweep cuts the path.
  runtime.onCredential(async (credential) => {
    const now = path;
    if (now === null) return;
    await now.channel.refreshCredential(credential.encoded).catch(() => {});
    await refreshAtRelay(node, now.connection.address, credential.encoded).catch((error) =>
      logger.warn("credential refresh at relay failed", { relay: now.relay, error: message(error) })
    );
  });
  runtime.onRevocations(async () => void await path?.channel.revalidate());
  runtime.onRevoked(async () => await path?.channel.close("revoked"));
  const policy = {
    trust,
    revocations: runtime.revocations,
    admit: gatewayRule(config.gateway.customerId),
    pinned: config.gateway.identifier === undefined ? undefined : [config.gateway.identifier],
  };

  const tryRelay = async (relay: string): Promise<Path> => {
    const connection = await connectRelay({
      transport,
      ...parseHostPort(relay, "relay"),
      identity,
      credential: runtime.credential!.encoded,
      timeoutMs: 5000,
    });
    try {
      // A relay where the gateway is not registered (yet) would drop the
      // handshake: ask first and move on at once.
      const present = await lookupAlias(node, connection.address, config.gateway.alias)
        .catch((error) => {
          if (error instanceof RelayError && error.code === "timeout") return true; // try anyway
          throw error;
        });
      if (!present) {
        throw new RelayError(
          "protocol",
          `the gateway ${config.gateway.alias} is not at this relay`,
        );
      }
      const channel = await connectSecureChannel({
        node,
        route: [connection.address, `forward.${config.gateway.alias}`, "api"],
        local: runtime.local,
        policy,
        handshakeTimeoutMs: 5000,
        idleTimeoutMs: config.idleTimeoutMs,
        logger: logger.child("channel"),
      });
      return { relay, connection, channel };
    } catch (error) {
      connection.connection.close("no channel to the gateway");
      throw error;
    }
  };

  /** Holds one path until it is lost; returns why. */
  const hold = async (found: Path): Promise<string> => {
    // Keep the relay connection's idle timer from firing on a quiet
    // site: the channel's keepalives pass through it, but say so anyway.
    const ping = setInterval(() => {
      node.route({
        onward: [found.connection.address, "relay"],
        return: [],
        payload: encodeCbor([1, "ping"]),
      }).catch(() => {});
    }, 60_000);
    try {
      return await Promise.race([
        found.channel.closed.then((info) => `channel closed: ${info.reason}`),
        found.connection.connection.closed.then(() => "relay connection lost"),
      ]);
    } finally {
      clearInterval(ping);
    }
  };

  const pathLoop = (async () => {
    for (let round = 0; !stopped;) {
      lastRoundStart = Date.now();
      let found: Path | null = null;
      for (let i = 0; i < config.relays.length && !stopped && found === null; i++) {
        const index = (preferred + i) % config.relays.length;
        const relay = config.relays[index];
        try {
          found = await tryRelay(relay);
          preferred = index;
        } catch (error) {
          status.connectFailures++;
          status.lastError = `${relay}: ${message(error)}`;
          const refused = error instanceof HandshakeError && error.code === "refused";
          logger.warn(refused ? "the gateway refused this edge" : "no path through relay", {
            relay,
            error: message(error),
          });
        }
      }
      if (stopped) {
        found?.channel.close("edge stopping");
        break;
      }
      if (found !== null) {
        path = found;
        round = 0;
        status.pathChanges++;
        status.upSince = Date.now();
        status.lastError = null;
        logger.info("path to the gateway is up", {
          relay: found.relay,
          gateway: found.channel.peer.identifier,
        });
        firstPath.resolve({ gateway: found.channel.peer.identifier, relay: found.relay });
        roundDone.resolve(true);
        roundDone = Promise.withResolvers<boolean>();
        const why = await hold(found);
        path = null;
        // Start the next round with the next relay: if this one froze,
        // its admission would take the whole timeout to fail.
        preferred = (preferred + 1) % config.relays.length;
        status.upSince = 0;
        status.lastError = why;
        await found.channel.close(why);
        found.connection.connection.close(why);
        if (!stopped) logger.warn("path to the gateway lost; reconnecting", { reason: why });
        continue; // straight to the next round: the loss may be one relay's
      }
      roundDone.resolve(false);
      roundDone = Promise.withResolvers<boolean>();
      // Backoff with jitter; a waiting inlet connection may cut it short,
      // but never below MIN_RETRY_MS from the last round's start.
      await sleep(backoffMs(round++), { wake: wake.promise });
      const since = Date.now() - lastRoundStart;
      if (since < MIN_RETRY_MS) await sleep(MIN_RETRY_MS - since);
      wake = Promise.withResolvers<void>();
    }
  })();

  const state = () =>
    stopped
      ? "stopped"
      : runtime.state === "revoked"
      ? "revoked"
      : path !== null
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
      relay: path?.relay ?? null,
      gateway: path?.channel.peer.identifier ?? null,
      upForMs: path === null ? null : Date.now() - status.upSince,
      lastError: status.lastError,
      pathChanges: status.pathChanges,
      inlets: config.inlets.map((inlet, i) => ({
        listen: formatHostPort(inlets[i].addr),
        outlet: inlet.outlet,
        mode: inlet.mode ?? "tcp",
        ...inlets[i].stats,
      })),
    };
  };

  const metrics = edgeMetrics(() => path, status, config, inlets);
  runtime.registerMetrics(metrics, "nexus_edge");
  let ops: OpsServer | null = null;
  if (config.ops !== "off") {
    ops = startOpsServer({
      ...parseHostPort(config.ops, "ops"),
      metrics,
      ready: () => path !== null,
      status: edgeStatus,
      logger,
    });
  }

  return {
    identifier: identity.identifier,
    inletAddrs: inlets.map((i) => i.addr),
    opsAddr: ops?.addr ?? null,
    ready: () => path !== null,
    firstPath: firstPath.promise,
    status: edgeStatus,
    async close() {
      stopped = true;
      wake.resolve();
      for (const inlet of inlets) inlet.close();
      await path?.channel.close("edge stopping");
      await ops?.close();
      await runtime.close();
      await transport.close();
      firstPath.reject(new Error("the edge stopped"));
      await Promise.race([pathLoop, sleep(1000)]);
    },
  };
}

/** The edge's own metrics (the member runtime adds its credential and attestation gauges). */
function edgeMetrics(
  path: () => Path | null,
  status: { pathChanges: number; connectFailures: number },
  config: CheckedEdgeConfig,
  inlets: Inlet[],
): Metrics {
  const metrics = new Metrics();
  metrics.register(
    "nexus_edge_path_up",
    "gauge",
    "1 while a channel to the gateway is open.",
    () => path() === null ? 0 : 1,
  );
  metrics.register(
    "nexus_edge_path_changes_total",
    "counter",
    "Paths to the gateway established.",
    () => status.pathChanges,
  );
  metrics.register(
    "nexus_edge_path_failures_total",
    "counter",
    "Failed attempts to reach the gateway through a relay.",
    () => status.connectFailures,
  );
  metrics.register(
    "nexus_edge_relay_connected",
    "gauge",
    "1 for the relay in use.",
    () => config.relays.map((relay) => [{ relay }, path()?.relay === relay ? 1 : 0]),
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
  const edge = await startEdge(config, { logger });
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
