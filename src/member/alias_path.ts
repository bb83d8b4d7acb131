/**
 * A member's path to a peer that holds an alias at the relays: one relay
 * connection and the secure channel through it, kept up by one loop
 * (docs/architecture.md §5.7). The edge's path to its gateway, and the
 * gateway's to each service agent of the end-to-end mode (§5.10).
 *
 * ```
 * round:   for each relay, in order, starting with the last one that worked:
 *            admission (connectRelay, 5 s)
 *            lookup of the gateway's alias: absent → the next relay at once;
 *              no answer within 5 s → the handshake is tried anyway
 *            handshake to [relay connection, forward.<alias>, api] (5 s)
 * path up: hold it until the channel closes or the relay connection ends,
 *          then the next round at once, starting with the next relay
 * no path: the shared backoff (500 ms doubling to 30 s, ±50 %); an inlet
 *          connection cuts the wait short, but a round never starts less
 *          than MIN_RETRY_MS after the previous one started
 * ```
 *
 * @module
 */
import { connectSecureChannel } from "../channel/handshake.ts";
import type { SecureChannel } from "../channel/secure_channel.ts";
import type { TrustPolicy } from "../channel/trust_policy.ts";
import { parseHostPort } from "../config/host_port.ts";
import { HandshakeError, RelayError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { backoffMs, sleep } from "./backoff.ts";
import type { Member } from "./member.ts";
import {
  connectRelay,
  lookupAlias,
  pingRelay,
  refreshAtRelay,
  type RelayConnection,
} from "../relay_client/relay_client.ts";
import type { Node } from "../routing/node.ts";
import type { TcpTransport } from "../transport/tcp_transport.ts";

/** Shortest time between two path attempts, however often clients knock. */
export const MIN_RETRY_MS = 1000;

/** A relay connection and the secure channel to the peer through it. */
export interface Path {
  /** The relay, as the configuration names it (`host:port`). */
  readonly relay: string;
  /** The admitted connection to that relay. */
  readonly connection: RelayConnection;
  /** The secure channel to the peer, through that relay. */
  readonly channel: SecureChannel;
}

/** Options of {@link AliasPath}. */
export interface AliasPathOptions {
  /** The member's node: the relay connection and the channel become its workers. */
  node: Node;
  /** The TCP transport relays are reached with. */
  transport: TcpTransport;
  /** Relays (`host:port`), tried in order. */
  relays: readonly string[];
  /** The peer's alias at the relays. */
  alias: string;
  /** What logs and errors call the peer (default "the gateway"). */
  peer?: string;
  /** Whom the member accepts as that peer. */
  policy: Omit<TrustPolicy, "revocations">;
  /** Milliseconds a caller of {@link AliasPath.channel} may wait for a path. */
  connectWaitMs: number;
  /** The channel's idle timeout, ms. */
  idleTimeoutMs: number;
  /** Where path changes and failures are logged. */
  logger: Logger;
}

const message = (error: unknown) => error instanceof Error ? error.message : String(error);

/**
 * The path loop and what it reports.
 *
 * @example
 * ```ts ignore
 * const path = new AliasPath({ node, transport, relays, alias: "gw-cust-001",
 *   policy: { trust, admit: gatewayRule("cust_001") }, connectWaitMs: 10_000,
 *   idleTimeoutMs: 300_000, logger });
 * path.start(member);
 * const channel = await path.channel(); // waits for a path, at most connectWaitMs
 * ```
 */
export class AliasPath {
  /** Counters for status and metrics. */
  readonly stats: { lastError: string | null; pathChanges: number; connectFailures: number } = {
    lastError: null,
    pathChanges: 0,
    connectFailures: 0,
  };
  /** Resolves with the peer's identifier and the relay once a path is first up. */
  readonly firstPath: Promise<{ peer: string; relay: string }>;
  #o: AliasPathOptions;
  #member: Member | null = null;
  #path: Path | null = null;
  #upSince = 0;
  #stopped = false;
  #first = Promise.withResolvers<{ peer: string; relay: string }>();
  #preferred = 0;
  #wake = Promise.withResolvers<void>();
  /** Settles after each round of attempts (true: a path is up). */
  #roundDone = Promise.withResolvers<boolean>();
  #loop: Promise<void> = Promise.resolve();

  /** A path loop, not started yet ({@link AliasPath.start}). */
  constructor(options: AliasPathOptions) {
    this.#o = options;
    this.firstPath = this.#first.promise;
    this.#first.promise.catch(() => {});
  }

  /** The path while it is up. */
  get current(): Path | null {
    return this.#path;
  }

  /** Milliseconds since the path came up, or null. */
  get upForMs(): number | null {
    return this.#path === null ? null : Date.now() - this.#upSince;
  }

  /**
   * Starts the loop with `member`'s credential and channel identity, and
   * follows it: a new credential is presented inside the open channel and
   * at the relay on the same connection (so neither the gateway's expiry
   * timer nor the relay's sweep cuts the path), a revocation list
   * revalidates the channel, and the member's own revocation closes it.
   */
  start(member: Member): void {
    this.#member = member;
    member.onCredential(async (credential) => {
      const now = this.#path;
      if (now === null) return;
      await now.channel.refreshCredential(credential.encoded).catch(() => {});
      await refreshAtRelay(this.#o.node, now.connection, member.identity, credential.encoded).catch(
        (
          error,
        ) =>
          this.#o.logger.warn("credential refresh at relay failed", {
            relay: now.relay,
            error: message(error),
          }),
      );
    });
    member.onRevocations(async () => void await this.#path?.channel.revalidate());
    member.onRevoked(async () => await this.#path?.channel.close("revoked"));
    this.#loop = this.#run();
  }

  /** What logs and errors call the peer. */
  get #peer(): string {
    return this.#o.peer ?? "the gateway";
  }

  /**
   * The current channel, waiting for a path (at most `connectWaitMs`) when
   * there is none.
   * @throws {Error} when the member is revoked or no path comes up in time.
   */
  async channel(): Promise<SecureChannel> {
    if (this.#path === null && !this.#stopped) {
      if (this.#member?.state === "revoked") throw new Error("this member is revoked");
      const outcome = this.#roundDone.promise;
      this.#wake.resolve();
      // The timer goes with the outcome: no 10 s timer left per knock.
      const up = await Promise.race([
        outcome,
        sleep(this.#o.connectWaitMs, { wake: outcome }).then(() => false),
      ]);
      if (!up && this.#path === null) {
        throw new Error(`no path to ${this.#peer} (${this.stats.lastError ?? "connecting"})`);
      }
    }
    const current = this.#path;
    if (current === null) throw new Error(`no path to ${this.#peer}`);
    return current.channel;
  }

  /** Stops the loop and closes the channel (the member is stopping). */
  async close(): Promise<void> {
    this.#stopped = true;
    this.#wake.resolve();
    await this.#path?.channel.close("stopping");
    this.#first.reject(new Error("stopped"));
    await Promise.race([this.#loop, sleep(1000)]);
  }

  async #tryRelay(relay: string): Promise<Path> {
    const { node, transport, alias } = this.#o;
    const member = this.#member!;
    const connection = await connectRelay({
      transport,
      ...parseHostPort(relay, "relay"),
      address: relay,
      identity: member.identity,
      credential: member.credential!.encoded,
      trust: this.#o.policy.trust,
      revocations: member.revocations,
      timeoutMs: 5000,
    });
    try {
      // A relay where the peer is not registered (yet) would drop the
      // handshake: ask first and move on at once.
      const present = await lookupAlias(node, connection.address, alias).catch((error) => {
        if (error instanceof RelayError && error.code === "timeout") return true; // try anyway
        throw error;
      });
      if (!present) throw new RelayError("protocol", `${alias} is not at this relay`);
      const channel = await connectSecureChannel({
        node,
        route: [connection.address, `forward.${alias}`, "api"],
        local: member.local,
        policy: { ...this.#o.policy, revocations: member.revocations },
        handshakeTimeoutMs: 5000,
        idleTimeoutMs: this.#o.idleTimeoutMs,
        logger: this.#o.logger.child("channel"),
      });
      return { relay, connection, channel };
    } catch (error) {
      connection.connection.close("no channel to the peer");
      throw error;
    }
  }

  /** Holds one path until it is lost; returns why. */
  async #hold(found: Path): Promise<string> {
    // Keep the relay connection's idle timer from firing on a quiet path:
    // the channel's keepalives pass through it, but say so anyway.
    const ping = setInterval(
      () => pingRelay(this.#o.node, found.connection.address).catch(() => {}),
      60_000,
    );
    try {
      return await Promise.race([
        found.channel.closed.then((info) => `channel closed: ${info.reason}`),
        found.connection.connection.closed.then(() => "relay connection lost"),
      ]);
    } finally {
      clearInterval(ping);
    }
  }

  async #run(): Promise<void> {
    const { relays, logger } = this.#o;
    for (let round = 0; !this.#stopped;) {
      const roundStart = Date.now();
      let found: Path | null = null;
      for (let i = 0; i < relays.length && !this.#stopped && found === null; i++) {
        const index = (this.#preferred + i) % relays.length;
        const relay = relays[index];
        try {
          found = await this.#tryRelay(relay);
          this.#preferred = index;
        } catch (error) {
          this.stats.connectFailures++;
          this.stats.lastError = `${relay}: ${message(error)}`;
          const refused = error instanceof HandshakeError && error.code === "refused";
          logger.warn(refused ? `${this.#peer} refused this member` : "no path through relay", {
            relay,
            error: message(error),
          });
        }
      }
      if (this.#stopped) {
        found?.channel.close("stopping");
        break;
      }
      if (found !== null) {
        this.#path = found;
        round = 0;
        this.stats.pathChanges++;
        this.#upSince = Date.now();
        this.stats.lastError = null;
        const peer = found.channel.peer.identifier;
        logger.info(`path to ${this.#peer} is up`, { relay: found.relay, peer });
        this.#first.resolve({ peer, relay: found.relay });
        this.#roundDone.resolve(true);
        this.#roundDone = Promise.withResolvers<boolean>();
        const why = await this.#hold(found);
        this.#path = null;
        // Start the next round with the next relay: if this one froze,
        // its admission would take the whole timeout to fail.
        this.#preferred = (this.#preferred + 1) % relays.length;
        this.#upSince = 0;
        this.stats.lastError = why;
        await found.channel.close(why);
        found.connection.connection.close(why);
        if (!this.#stopped) {
          logger.warn(`path to ${this.#peer} lost; reconnecting`, { reason: why });
        }
        continue; // straight to the next round: the loss may be one relay's
      }
      this.#roundDone.resolve(false);
      this.#roundDone = Promise.withResolvers<boolean>();
      // Backoff with jitter; a waiting inlet connection may cut it short,
      // but never below MIN_RETRY_MS from the last round's start.
      await sleep(backoffMs(round++), { wake: this.#wake.promise });
      const since = Date.now() - roundStart;
      if (since < MIN_RETRY_MS) await sleep(MIN_RETRY_MS - since);
      this.#wake = Promise.withResolvers<void>();
    }
  }
}
