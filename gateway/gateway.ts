/**
 * The per-customer gateway (DESIGN.md §1, §6): it connects out to the
 * authority (enrollment, credential refresh, revocations) and to every
 * relay (registering its alias there), accepts secure channels from its
 * customer's edges through the relays, and serves outlets to backends
 * behind attribute policies.
 *
 * Per-customer isolation holds twice: the channel listener requires
 * `customer_id` equal to the gateway's customer, and every outlet's policy
 * is the operator's policy AND that same condition.
 *
 * @module
 */
import { AuthorityClient } from "../src/authority_client/authority_client.ts";
import {
  type ChannelIdentity,
  createChannelIdentity,
  listenSecureChannels,
  type SecureChannelListener,
} from "../src/channel/secure_channel.ts";
import type { Credential } from "../src/credential/credential.ts";
import { RevocationRegistry } from "../src/credential/revocation.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { encodeCbor } from "../src/encoding/cbor.ts";
import { AuthorityError, PolicyError } from "../src/errors.ts";
import { readIdentityFile } from "../src/identity/identity_file.ts";
import { loadOrCreateIdentity } from "../src/identity/identity_store.ts";
import { type Logger, silentLogger } from "../src/log.ts";
import { Metrics } from "../src/ops/metrics.ts";
import { type OpsServer, startOpsServer } from "../src/ops/ops_server.ts";
import { parseHostPort } from "../src/config/host_port.ts";
import { parsePolicy } from "../src/policy/mod.ts";
import { createOutlet, type Outlet } from "../src/portal/portal.ts";
import { connectRelay, refreshAtRelay, registerAlias } from "../src/relay_client/relay_client.ts";
import { Node } from "../src/routing/node.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";

/** The gateway's configuration (docs/operations.md; example in deploy/). */
export interface GatewayConfig {
  /** Identity key and history are kept here (created on first start). */
  stateDir: string;
  authority: { identityFile: string; address: string };
  /** Relays ("host:port"); the alias is registered at all of them. */
  relays: string[];
  alias: string;
  /** The one customer this gateway serves. */
  customerId: string;
  /** Enrollment ticket for the first start (when not yet a member). */
  ticket?: string;
  outlets: { name: string; backend: string; policy: string }[];
  /** "host:port" for /metrics, /healthz, /readyz. */
  ops?: string;
  /** How long close() lets open sessions finish, ms (default 10,000). */
  shutdownGraceMs?: number;
}

/** A running gateway. */
export interface RunningGateway {
  readonly identifier: string;
  /** True while the alias is registered at one relay or more. */
  ready(): boolean;
  readonly opsAddr: Deno.NetAddr | null;
  close(): Promise<void>;
}

function backoff(attempt: number): Promise<void> {
  const base = Math.min(30_000, 250 * 2 ** attempt);
  return new Promise((resolve) => setTimeout(resolve, base * (0.5 + Math.random())));
}

/**
 * Starts the gateway. Fails (without starting) on a bad policy, an
 * unreadable trust anchor, or an authority that refuses enrollment.
 */
export async function startGateway(
  config: GatewayConfig,
  options: { logger?: Logger } = {},
): Promise<RunningGateway> {
  const logger = options.logger ?? silentLogger;
  // Policies first: a config mistake stops the start, with its position.
  const customer = JSON.stringify(config.customerId);
  const outletPolicies = config.outlets.map((outlet) => {
    try {
      parsePolicy(outlet.policy); // positions refer to the operator's own text
    } catch (error) {
      if (!(error instanceof PolicyError)) throw error;
      throw new PolicyError(
        error.code,
        `outlet ${JSON.stringify(outlet.name)}: ${error.message}`,
        error.position,
        { cause: error },
      );
    }
    return parsePolicy(`subject.customer_id == ${customer} and (${outlet.policy})`);
  });
  // Addresses too, before anything connects: a typo stops the start here.
  for (const relay of config.relays) parseHostPort(relay, "relays entry");
  parseHostPort(config.authority.address, "authority address");
  for (const outlet of config.outlets) {
    parseHostPort(outlet.backend, `outlet ${outlet.name} backend`);
  }
  const identity = await loadOrCreateIdentity(config.stateDir, "gateway");
  const trust = new TrustStore([await readIdentityFile(config.authority.identityFile)]);
  const revocations = new RevocationRegistry();
  const node = new Node({ name: "gateway", logger });
  const transport = new TcpTransport(node, { logger: logger.child("transport") });
  let credential: Credential | null = null;
  const local: ChannelIdentity = await createChannelIdentity(identity, {
    credentials: () => credential === null ? [] : [credential.encoded],
  });
  let stopped = false;
  let listener = null as SecureChannelListener | null;
  /** Each relay's connection address on this node, while connected. */
  const relayConnections = new Map<string, string>();

  // The authority: credential, refresh, revocations. The first contact
  // must succeed; afterwards the link is kept up with backoff.
  const authority = parseHostPort(config.authority.address, "authority address");
  const firstCredential = Promise.withResolvers<void>();
  const authorityLoop = (async () => {
    for (let attempt = 0; !stopped; attempt++) {
      try {
        const conn = await transport.connect(authority);
        const client = await AuthorityClient.connect({ node, route: [conn.address], local, trust });
        try {
          credential = await client.credential();
        } catch (error) {
          if (!(error instanceof AuthorityError && error.code === "not_member") || !config.ticket) {
            throw error;
          }
          credential = await client.enroll({ ticket: config.ticket });
          logger.info("enrolled at the authority", { identifier: identity.identifier });
        }
        firstCredential.resolve();
        attempt = 0;
        await client.subscribe(async (list) => {
          await revocations.apply(list, trust).catch(() => false);
          for (const channel of listener?.channels() ?? []) await channel.revalidate();
        });
        // Refresh at two thirds of the lifetime, inside open channels too.
        while (!stopped && !client.channel.isClosed) {
          const current: Credential = credential!;
          const wait = Math.max(
            1000,
            (current.expiresAt - current.createdAt) * 1000 * 2 / 3 -
              (Date.now() - current.createdAt * 1000),
          );
          const closed = await Promise.race([
            client.channel.closed.then(() => true),
            new Promise<false>((resolve) => setTimeout(() => resolve(false), wait)),
          ]);
          if (closed || stopped) break;
          credential = await client.credential();
          for (const channel of listener?.channels() ?? []) {
            await channel.refreshCredential(credential.encoded).catch(() => {});
          }
          // And at every relay, on the same connections: routes name them.
          for (const [relay, connection] of relayConnections) {
            await refreshAtRelay(node, connection, credential.encoded).catch((error) =>
              logger.warn("credential refresh at relay failed", {
                relay,
                error: error instanceof Error ? error.message : String(error),
              })
            );
          }
          logger.info("credential refreshed", { expires_at: credential.expiresAt });
        }
      } catch (error) {
        if (credential === null && error instanceof AuthorityError) {
          firstCredential.reject(error);
          return;
        }
        logger.warn("authority unreachable; retrying", {
          error: error instanceof Error ? error.message : String(error),
        });
      }
      if (!stopped) await backoff(attempt);
    }
  })();
  await firstCredential.promise;

  listener = listenSecureChannels({
    node,
    address: "api",
    local,
    policy: { trust, revocations, requiredAttributes: { customer_id: config.customerId } },
    logger: logger.child("channel"),
  });
  const outlets: Outlet[] = config.outlets.map((outlet, i) =>
    createOutlet({
      node,
      name: outlet.name,
      backend: parseHostPort(outlet.backend, `outlet ${outlet.name} backend`),
      policy: outletPolicies[i],
      logger: logger.child(`outlet.${outlet.name}`),
    })
  );

  // Relays: admission with the current credential, the alias registered,
  // a ping now and then so an idle gateway keeps its alias; reconnect with
  // backoff when a relay goes away (and re-register after it restarts).
  const registered = new Set<string>();
  const relayLoops = config.relays.map(async (relay) => {
    const address = parseHostPort(relay, "relay address");
    for (let attempt = 0; !stopped; attempt++) {
      try {
        const joined = await connectRelay({
          transport,
          ...address,
          identity,
          credential: credential!.encoded,
        });
        const role = await registerAlias(node, joined.address, config.alias);
        registered.add(relay);
        relayConnections.set(relay, joined.address);
        attempt = 0;
        logger.info("alias registered at relay", { relay, alias: config.alias, role });
        const ping = setInterval(() => {
          node.route({
            onward: [joined.address, "relay"],
            return: [],
            payload: encodeCbor([1, "ping"]),
          })
            .catch(() => {});
        }, 60_000);
        await joined.connection.closed;
        clearInterval(ping);
      } catch (error) {
        logger.warn("relay unreachable; retrying", {
          relay,
          error: error instanceof Error ? error.message : String(error),
        });
      } finally {
        registered.delete(relay);
        relayConnections.delete(relay);
      }
      if (!stopped) await backoff(attempt);
    }
  });

  const metrics = new Metrics();
  metrics.register(
    "nexus_gateway_channels",
    "gauge",
    "Open secure channels.",
    () => listener!.channels().length,
  );
  metrics.register(
    "nexus_gateway_relays_registered",
    "gauge",
    "Relays with the alias registered.",
    () => registered.size,
  );
  const perOutlet = (pick: (o: Outlet) => number) => () =>
    outlets.map((o, i) =>
      [{ outlet: config.outlets[i].name }, pick(o)] as [{ outlet: string }, number]
    );
  metrics.register(
    "nexus_gateway_sessions",
    "gauge",
    "Open portal sessions.",
    perOutlet((o) => o.stats.open),
  );
  metrics.register(
    "nexus_gateway_sessions_total",
    "counter",
    "Portal sessions opened.",
    perOutlet((o) => o.stats.sessions),
  );
  metrics.register(
    "nexus_gateway_policy_denials_total",
    "counter",
    "Sessions denied by policy.",
    perOutlet((o) => o.stats.denied),
  );
  metrics.register(
    "nexus_gateway_backend_refused_total",
    "counter",
    "Sessions whose backend was unreachable.",
    perOutlet((o) => o.stats.refused),
  );
  metrics.register(
    "nexus_gateway_bytes_in_total",
    "counter",
    "Bytes from edges to backends.",
    perOutlet((o) => o.stats.bytesIn),
  );
  metrics.register(
    "nexus_gateway_bytes_out_total",
    "counter",
    "Bytes from backends to edges.",
    perOutlet((o) => o.stats.bytesOut),
  );
  metrics.register(
    "nexus_gateway_credential_expiry_seconds",
    "gauge",
    "Expiry of the gateway's credential, Unix seconds.",
    () => credential?.expiresAt ?? 0,
  );
  const ops: OpsServer | null = config.ops
    ? startOpsServer({
      ...parseHostPort(config.ops, "ops address"),
      metrics,
      ready: () => registered.size > 0,
      logger,
    })
    : null;

  return {
    identifier: identity.identifier,
    ready: () => registered.size > 0,
    opsAddr: ops?.addr ?? null,
    async close() {
      stopped = true;
      for (const outlet of outlets) outlet.close();
      const deadline = Date.now() + (config.shutdownGraceMs ?? 10_000);
      while (outlets.some((o) => o.stats.open > 0) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      // Close records first, handed to the relays before their connections
      // close: edges then reconnect at once instead of waiting for their
      // idle timeout to notice.
      const channels = listener?.channels() ?? [];
      listener?.close();
      await Promise.race([
        Promise.allSettled(channels.map((channel) => channel.close("gateway stopping"))),
        new Promise((resolve) => setTimeout(resolve, 1000)),
      ]);
      await ops?.close();
      await transport.close();
      await Promise.race([
        Promise.allSettled([authorityLoop, ...relayLoops]),
        new Promise((resolve) => setTimeout(resolve, 1000)),
      ]);
    },
  };
}
