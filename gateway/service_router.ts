/**
 * The gateway's routing-only half (docs/architecture.md §5.10): edges'
 * inner channels to service agents, forwarded without a key of them.
 *
 * What the gateway still decides, per message, cheapest first:
 *
 * 1. the shape: one address left at the far end, of the kind the message
 *    is for (src/channel/service_routes.ts), and the wire kind (a message
 *    1 only to the agent's listener, message 3 and records only to a
 *    decryptor, message 2 and records only back to an edge's decryptor);
 * 2. where it came from: an edge's message through one of the gateway's
 *    own edge channels, an agent's through the gateway's channel to that
 *    very agent;
 * 3. who the edge is: the service's policy (customer AND the operator's
 *    rule, as for an outlet) over the edge channel's current credential,
 *    on every message, so a revoked or expired credential stops at once;
 * 4. how often: a new inner channel (message 1) takes a token of the
 *    edge's bucket (`handshakes`), so one edge cannot make an agent do
 *    handshake work at any rate.
 *
 * Refusals are counted by reason and dropped: the inner channel's own
 * timeouts tell the ends. The `hook` lets a test play a compromised
 * gateway (tests/e2e_test.ts); nothing else sets it.
 *
 * @module
 */
import { type SecureChannel, WIRE } from "../src/channel/secure_channel.ts";
import {
  DECRYPTOR_PREFIX,
  INNER_LISTENER,
  serviceAddress,
  serviceReturnAddress,
} from "../src/channel/service_routes.ts";
import type { Logger } from "../src/log.ts";
import type { Policy } from "../src/policy/policy.ts";
import { type Rate, TokenBuckets } from "../src/policy/token_bucket.ts";
import type { Node } from "../src/routing/node.ts";
import type { Address, RoutedMessage } from "../src/routing/routed_message.ts";

/** One end-to-end service as the router sees it. */
export interface ServiceRoute {
  /** The service's name (`service.<name>` on the gateway). */
  readonly name: string;
  /** Which edges may reach it: the customer AND the operator's rule (outletRule). */
  readonly policy: Policy;
  /** The gateway's channel to the service's agent now, or null while there is none. */
  channel(): SecureChannel | null;
}

/** What a test's hook sees: the message the gateway is about to route. */
export interface ForwardedFrame {
  readonly direction: "toService" | "toEdge";
  readonly service: string;
  readonly message: RoutedMessage;
}

/** Options of {@link ServiceRouter}. */
export interface ServiceRouterOptions {
  node: Node;
  /** The gateway's edge channels, by their address (the first hop of a return route). */
  edges: { channel(address: Address): SecureChannel | undefined };
  services: readonly ServiceRoute[];
  /** New inner channels per edge identity (default 5/s, bursts of 20). */
  handshakes?: Rate;
  /** Tests only: replaces each forwarded message with what it returns. */
  hook?: (frame: ForwardedFrame) => RoutedMessage[] | Promise<RoutedMessage[]>;
  logger: Logger;
}

/** Why the router dropped a message. */
export type RouteRefusal =
  | "bad_route"
  | "not_an_edge"
  | "not_the_agent"
  | "denied"
  | "rate"
  | "no_path";

/** Counters per service. */
export interface ServiceRouteStats {
  toService: number;
  toEdge: number;
  bytes: number;
  refused: Map<RouteRefusal, number>;
}

/**
 * Registers `service.<name>` and `svcret.<name>` for every service.
 *
 * @example
 * ```ts ignore
 * const router = new ServiceRouter({
 *   node, edges: listener, logger,
 *   services: [{ name: "orchestrator", policy, channel: () => path.current?.channel ?? null }],
 * });
 * router.stats.get("orchestrator")!.toService; // inner messages forwarded to the agent
 * ```
 */
export class ServiceRouter {
  /** Counters, by service name. */
  readonly stats: ReadonlyMap<string, ServiceRouteStats>;
  #o: ServiceRouterOptions;
  #buckets: TokenBuckets;
  #registered: Address[] = [];

  constructor(options: ServiceRouterOptions) {
    this.#o = options;
    this.#buckets = new TokenBuckets(options.handshakes ?? { perSecond: 5, burst: 20 });
    const stats = new Map<string, ServiceRouteStats>();
    for (const service of options.services) {
      const counters: ServiceRouteStats = { toService: 0, toEdge: 0, bytes: 0, refused: new Map() };
      stats.set(service.name, counters);
      const toService = serviceAddress(service.name);
      const toEdge = serviceReturnAddress(service.name);
      options.node.register(toService, (m) => this.#fromEdge(service, counters, m));
      options.node.register(toEdge, (m) => this.#fromAgent(service, counters, m));
      this.#registered.push(toService, toEdge);
    }
    this.stats = stats;
  }

  /** Unregisters the workers. */
  close(): void {
    for (const address of this.#registered) this.#o.node.unregister(address);
  }

  #refuse(stats: ServiceRouteStats, reason: RouteRefusal, service: string): void {
    stats.refused.set(reason, (stats.refused.get(reason) ?? 0) + 1);
    this.#o.logger.debug("inner message dropped", { service, reason });
  }

  /** [service.<name>, target] from [edge channel, scd.<edge>]. */
  async #fromEdge(service: ServiceRoute, stats: ServiceRouteStats, message: RoutedMessage) {
    const { onward, payload } = message;
    const back = message.return;
    const kind = payload[0];
    const target = onward[1];
    if (
      onward.length !== 2 || back.length !== 2 || !back[1].startsWith(DECRYPTOR_PREFIX) ||
      !(target === INNER_LISTENER
        ? kind === WIRE.message1
        : target.startsWith(DECRYPTOR_PREFIX) && (kind === WIRE.message3 || kind === WIRE.record))
    ) {
      return this.#refuse(stats, "bad_route", service.name);
    }
    const info = message.local?.secureChannel;
    const edge = this.#o.edges.channel(back[0]);
    if (info === undefined || edge === undefined || info.address !== edge.decryptorAddress) {
      return this.#refuse(stats, "not_an_edge", service.name);
    }
    if (!service.policy.admits(info)) return this.#refuse(stats, "denied", service.name);
    if (kind === WIRE.message1 && !this.#buckets.take(info.peer)) {
      return this.#refuse(stats, "rate", service.name);
    }
    const path = service.channel();
    if (path === null || path.isClosed) return this.#refuse(stats, "no_path", service.name);
    stats.toService++;
    stats.bytes += payload.length;
    await this.#send("toService", service.name, {
      onward: [path.address, target],
      return: [serviceReturnAddress(service.name), back[0], back[1]],
      payload,
    });
  }

  /** [svcret.<name>, edge channel, scd.<edge>] from [path, scd.<agent>]. */
  async #fromAgent(service: ServiceRoute, stats: ServiceRouteStats, message: RoutedMessage) {
    const { onward, payload } = message;
    const back = message.return;
    const kind = payload[0];
    if (
      onward.length !== 3 || !onward[2].startsWith(DECRYPTOR_PREFIX) || back.length !== 2 ||
      !back[1].startsWith(DECRYPTOR_PREFIX) || (kind !== WIRE.message2 && kind !== WIRE.record)
    ) {
      return this.#refuse(stats, "bad_route", service.name);
    }
    const path = service.channel();
    const info = message.local?.secureChannel;
    if (path === null || info === undefined || info.address !== path.decryptorAddress) {
      return this.#refuse(stats, "not_the_agent", service.name);
    }
    const edge = this.#o.edges.channel(onward[1]);
    if (edge === undefined || edge.isClosed) return this.#refuse(stats, "no_path", service.name);
    stats.toEdge++;
    stats.bytes += payload.length;
    await this.#send("toEdge", service.name, {
      onward: [onward[1], onward[2]],
      return: [serviceAddress(service.name), back[1]],
      payload,
    });
  }

  async #send(direction: ForwardedFrame["direction"], service: string, message: RoutedMessage) {
    const hook = this.#o.hook;
    if (hook === undefined) {
      await this.#o.node.route(message);
      return;
    }
    for (const out of await hook({ direction, service, message })) await this.#o.node.route(out);
  }
}
