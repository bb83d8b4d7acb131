/**
 * The edge's end-to-end channels (docs/architecture.md §5.10): for each
 * service an inlet names, one inner secure channel to the service's agent,
 * nested in the edge's channel to the gateway and reused by every session
 * of that service. The gateway routes the inner channel's records and
 * holds no key of it; whom it reaches is the edge's decision, by
 * `serviceRule`: role `service`, the edge's customer, the service's name,
 * from the trusted authority, not revoked.
 *
 * An inner channel lives inside one outer channel: when the path to the
 * gateway changes (failover, the gateway restarting) the inner channels
 * of the old path are closed and the next session opens a new one.
 *
 * @module
 */
import { connectSecureChannel } from "../src/channel/handshake.ts";
import type { SecureChannel } from "../src/channel/secure_channel.ts";
import { INNER_LISTENER, serviceAddress } from "../src/channel/service_routes.ts";
import type { TrustStore } from "../src/credential/trust_store.ts";
import type { Logger } from "../src/log.ts";
import type { AliasPath } from "../src/member/alias_path.ts";
import type { Member } from "../src/member/member.ts";
import { serviceRule } from "../src/policy/rules.ts";
import type { InletTarget } from "../src/portal/portal.ts";
import type { Node } from "../src/routing/node.ts";

/** Options of {@link ServiceChannels}. */
export interface ServiceChannelsOptions {
  node: Node;
  /** The path to the gateway: the outer channel. */
  path: AliasPath;
  member: Member;
  trust: TrustStore;
  /** The edge's customer: the agents must be of it. */
  customerId: string;
  /** The inner channel's idle timeout, ms. */
  idleTimeoutMs: number;
  logger: Logger;
}

/** One service's inner channel, and the outer channel it lives in. */
interface Held {
  readonly outer: SecureChannel;
  readonly inner: Promise<SecureChannel>;
}

/**
 * The inner channels, one per service, opened on first use.
 *
 * @example
 * ```ts ignore
 * const services = new ServiceChannels({ node, path, member, trust, customerId, idleTimeoutMs, logger });
 * const target = await services.routeTo("orchestrator", "orchestrator"); // an inlet's route
 * ```
 */
export class ServiceChannels {
  #o: ServiceChannelsOptions;
  #held = new Map<string, Held>();

  constructor(options: ServiceChannelsOptions) {
    this.#o = options;
    // A new credential goes inside every inner channel too (the agent
    // judges the edge by it); a revocation list revalidates them (an agent
    // revoked since is dropped); a revoked edge closes them.
    options.member.onCredential(async (credential) => {
      for (const channel of await this.#open()) {
        await channel.refreshCredential(credential.encoded).catch(() => {});
      }
    });
    options.member.onRevocations(async () => {
      for (const channel of await this.#open()) await channel.revalidate();
    });
    options.member.onRevoked(async () => {
      for (const channel of await this.#open()) await channel.close("revoked");
    });
  }

  /** The open inner channels, by service. */
  async channels(): Promise<Map<string, SecureChannel>> {
    const out = new Map<string, SecureChannel>();
    for (const [service, held] of this.#held) {
      const channel = await held.inner.catch(() => null);
      if (channel !== null && !channel.isClosed) out.set(service, channel);
    }
    return out;
  }

  /**
   * The route to `outlet` at `service`'s agent, through the inner channel
   * (opened or reused). Carries the inner channel's `closed`, so an OPEN
   * unanswered when the channel dies fails at once.
   * @throws {Error | HandshakeError} when there is no path to the gateway,
   *   or the agent cannot be reached or is not the service's.
   */
  async routeTo(service: string, outlet: string): Promise<InletTarget> {
    const outer = await this.#o.path.channel();
    let held = this.#held.get(service);
    if (held !== undefined) {
      const stale = held.outer !== outer || held.outer.isClosed;
      const inner = await held.inner.catch(() => null);
      if (stale || inner === null || inner.isClosed) {
        if (inner !== null && !inner.isClosed) inner.close("the path to the gateway changed");
        held = undefined;
      }
    }
    if (held === undefined) {
      held = { outer, inner: this.#connect(service, outer) };
      this.#held.set(service, held);
      // A failed handshake is not kept: the next session tries again.
      held.inner.catch(() => {
        if (this.#held.get(service) === held) this.#held.delete(service);
      });
    }
    const inner = await held.inner;
    return { route: [inner.address, `outlet.${outlet}`], closed: inner.closed };
  }

  /** Closes every inner channel. */
  async close(): Promise<void> {
    for (const channel of await this.#open()) await channel.close("edge stopping");
    this.#held.clear();
  }

  async #open(): Promise<SecureChannel[]> {
    return [...(await this.channels()).values()];
  }

  async #connect(service: string, outer: SecureChannel): Promise<SecureChannel> {
    const o = this.#o;
    const inner = await connectSecureChannel({
      node: o.node,
      route: [outer.address, serviceAddress(service), INNER_LISTENER],
      local: o.member.local,
      policy: {
        trust: o.trust,
        revocations: o.member.revocations,
        admit: serviceRule(o.customerId, service),
      },
      handshakeTimeoutMs: 5000,
      idleTimeoutMs: o.idleTimeoutMs,
      logger: o.logger.child("inner"),
    });
    // It lives inside the outer channel: when that one goes, so does it.
    outer.closed.then(() => inner.close("the path to the gateway closed"));
    o.logger.info("end-to-end channel up", { service, agent: inner.peer.identifier });
    return inner;
  }
}
