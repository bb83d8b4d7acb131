/**
 * A member's presence at its relays under an alias: what a gateway does
 * for its edges and a service agent for its gateway (docs/design.md §5,
 * docs/architecture.md §5.10). One loop per relay: admission with the
 * member's current credential, the alias registered, a ping now and then so
 * an idle member keeps its alias, and on loss a reconnection with the
 * shared backoff (re-registering after a relay restarts). A new credential
 * is presented at every relay on the same connection (return routes name
 * the connection, so reconnecting would break every channel through it).
 *
 * @module
 */
import type { TrustStore } from "../credential/trust_store.ts";
import { parseHostPort } from "../config/host_port.ts";
import type { Identity } from "../identity/identity.ts";
import type { Logger } from "../log.ts";
import {
  connectRelay,
  pingRelay,
  refreshAtRelay,
  registerAlias,
  type RelayConnection,
} from "../relay_client/relay_client.ts";
import type { Node } from "../routing/node.ts";
import type { TcpTransport } from "../transport/tcp_transport.ts";
import { backoffMs, sleep } from "./backoff.ts";
import type { Member } from "./member.ts";

/** How often an idle member pings each relay, ms (relays close idle connections after 5 min). */
export const PING_INTERVAL_MS = 60_000;

/** Options of {@link RelayPresence}. */
export interface RelayPresenceOptions {
  /** The member's node: relay connections become its workers. */
  node: Node;
  /** The TCP transport the relay connections are made with. */
  transport: TcpTransport;
  /** Relays as `host:port`, each one the address its credential must name. */
  relays: readonly string[];
  /** The alias to hold at each relay (the credential's `relay` attribute must allow it). */
  alias: string;
  /** The member's identity, which signs each admission. */
  identity: Identity;
  /** Trust anchors: whom a relay's credential must come from. */
  trust: TrustStore;
  /** The member runtime: its credential admits, its revocations judge the relays. */
  member: Member;
  /** Where registrations, losses and refusals are logged. */
  logger: Logger;
}

const message = (error: unknown) => error instanceof Error ? error.message : String(error);

/**
 * Holds `alias` at every relay until {@link close}.
 *
 * @example
 * ```ts ignore
 * const presence = new RelayPresence({ node, transport, relays, alias: "gw-cust-001",
 *   identity, trust, member, logger });
 * presence.ready(); // true once one relay has the alias registered
 * await presence.close();
 * ```
 */
export class RelayPresence {
  /** Relays where the alias is registered now. */
  readonly registered: ReadonlySet<string>;
  #registered = new Set<string>();
  #connections = new Map<string, RelayConnection>();
  #stopping = new AbortController();
  #loops: Promise<void>[];
  #o: RelayPresenceOptions;

  /** Starts holding the alias at every relay at once. */
  constructor(options: RelayPresenceOptions) {
    this.#o = options;
    this.registered = this.#registered;
    options.member.onCredential(async (credential) => {
      for (const [relay, connection] of this.#connections) {
        await refreshAtRelay(options.node, connection, options.identity, credential.encoded)
          .catch((error) =>
            options.logger.warn("credential refresh at relay failed", {
              relay,
              error: message(error),
            })
          );
      }
    });
    this.#loops = options.relays.map((relay) => this.#hold(relay));
  }

  /** True while the alias is registered at one relay or more. */
  ready(): boolean {
    return this.#registered.size > 0;
  }

  /** Each relay's admitted connection, while connected. */
  connections(): ReadonlyMap<string, RelayConnection> {
    return this.#connections;
  }

  /** Stops the loops; the connections close with the transport. Waits at most 1 s. */
  async close(): Promise<void> {
    this.#stopping.abort();
    for (const connection of this.#connections.values()) connection.connection.close("leaving");
    await Promise.race([Promise.allSettled(this.#loops), sleep(1000)]);
  }

  async #hold(relay: string): Promise<void> {
    const o = this.#o;
    const signal = this.#stopping.signal;
    const address = parseHostPort(relay, "relay address");
    for (let attempt = 0; !signal.aborted; attempt++) {
      try {
        const joined = await connectRelay({
          transport: o.transport,
          ...address,
          address: relay,
          identity: o.identity,
          credential: o.member.credential!.encoded,
          trust: o.trust,
          revocations: o.member.revocations,
        });
        if (signal.aborted) {
          joined.connection.close("leaving");
          return;
        }
        const role = await registerAlias(o.node, joined.address, o.alias);
        this.#registered.add(relay);
        this.#connections.set(relay, joined);
        attempt = 0;
        o.logger.info("alias registered at relay", { relay, alias: o.alias, role });
        const ping = setInterval(
          () => pingRelay(o.node, joined.address).catch(() => {}),
          PING_INTERVAL_MS,
        );
        await joined.connection.closed;
        clearInterval(ping);
      } catch (error) {
        if (signal.aborted) return;
        o.logger.warn("relay unreachable; retrying", { relay, error: message(error) });
      } finally {
        this.#registered.delete(relay);
        this.#connections.delete(relay);
      }
      if (!signal.aborted) await sleep(backoffMs(attempt), { signal });
    }
  }
}
