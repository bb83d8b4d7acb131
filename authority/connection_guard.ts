/**
 * What the authority's TCP connections may hold before and after they
 * carry a member (docs/security.md, "Unauthenticated clients").
 *
 * Anyone on the network can connect to the authority and open a channel:
 * identities are free to make and members enroll before they hold a
 * credential. So a connection is judged by what it carries:
 *
 * - no established channel `handshakeMs` after it was accepted: closed
 *   (a peer that only connects, or sends half a frame, holds nothing
 *   for long);
 * - channels, but none of an enrolled, unrevoked member, and no request
 *   for `strangerIdleMs`: closed (enrolling takes one request; a stranger
 *   has no reason to stay);
 * - more than `maxChannels` channels at once: closed (one connection, one
 *   member; a few for restarts);
 * - a member's connection stays: subscribers hold theirs open for
 *   revocation pushes, and keepalives keep it alive.
 *
 * The guard only decides: {@link ConnectionGuard.verdict} is pure over
 * what it is told, so its rules are tested without sockets
 * (connection_guard_test.ts); the service sweeps its connections with it.
 *
 * @module
 */

/** What the guard knows of one connection. */
export interface GuardedConnection {
  /** When it was accepted, ms since the epoch. */
  readonly acceptedAt: number;
  /** The time of its last request through any of its channels, ms (0: none). */
  readonly lastRequestAt: number;
  /** Its established channels' peers: whether each is an active member. */
  readonly peers: readonly boolean[];
}

/** Limits of {@link ConnectionGuard}. */
export interface ConnectionGuardOptions {
  /** Time for a connection to carry an established channel, ms (default 10,000). */
  handshakeMs?: number;
  /** Time a connection of non-members may go without a request, ms (default 30,000). */
  strangerIdleMs?: number;
  /** Channels one connection may carry at once (default 4). */
  maxChannels?: number;
}

/** Why a connection is closed. */
export type GuardVerdict = "no_channel" | "idle_stranger" | "too_many_channels";

/**
 * The authority's rules for its connections.
 *
 * @example
 * ```ts
 * import { ConnectionGuard } from "./connection_guard.ts";
 *
 * const guard = new ConnectionGuard({ handshakeMs: 10_000 });
 * const now = Date.now();
 * guard.verdict({ acceptedAt: now - 11_000, lastRequestAt: 0, peers: [] }, now); // "no_channel"
 * guard.verdict({ acceptedAt: now - 11_000, lastRequestAt: 0, peers: [true] }, now); // null
 * ```
 */
export class ConnectionGuard {
  readonly #handshakeMs: number;
  readonly #strangerIdleMs: number;
  readonly #maxChannels: number;

  /** @throws {RangeError} for a limit that is not a positive number. */
  constructor(options: ConnectionGuardOptions = {}) {
    this.#handshakeMs = positive(options.handshakeMs ?? 10_000, "handshakeMs");
    this.#strangerIdleMs = positive(options.strangerIdleMs ?? 30_000, "strangerIdleMs");
    this.#maxChannels = positive(options.maxChannels ?? 4, "maxChannels");
  }

  /** How often a sweep should run to keep each limit within a tenth, ms. */
  get sweepMs(): number {
    return Math.max(50, Math.min(this.#handshakeMs, this.#strangerIdleMs) / 10);
  }

  /** Whether `connection` is to be closed at `now`, and why; null to keep it. */
  verdict(connection: GuardedConnection, now: number): GuardVerdict | null {
    const { peers } = connection;
    if (peers.length > this.#maxChannels) return "too_many_channels";
    if (peers.length === 0) {
      return now - connection.acceptedAt > this.#handshakeMs ? "no_channel" : null;
    }
    if (peers.some((member) => member)) return null;
    const since = Math.max(connection.acceptedAt, connection.lastRequestAt);
    return now - since > this.#strangerIdleMs ? "idle_stranger" : null;
  }
}

function positive(value: number, name: string): number {
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(`${name} must be a positive number, got ${value}`);
  }
  return value;
}

/** What {@link guardConnections} watches. */
export interface GuardTargets {
  /** The open TCP connections, by worker address. */
  connections(): ReadonlyMap<string, { close(reason: string): void }>;
  /** The established channels (their first return hop names their connection). */
  channels(): readonly {
    readonly remoteRoute: readonly string[];
    readonly peer: { readonly identifier: string };
  }[];
  /** Whether `identifier` is an enrolled, unrevoked member (the store may answer asynchronously). */
  isMember(identifier: string): boolean | Promise<boolean>;
}

/** A running sweep over the authority's connections. */
export interface ConnectionSweep {
  /** Notes a connection (by worker address) as accepted now. */
  accepted(address: string): void;
  /** Notes a request through a channel on `address`. */
  requested(address: string): void;
  /** Connections closed so far, by verdict. */
  readonly closed: Map<GuardVerdict, number>;
  stop(): void;
}

/**
 * Sweeps `targets`' connections every {@link ConnectionGuard.sweepMs} and
 * closes those the guard rules out. Membership is asked once per channel
 * until it is a member (members are cut off by revocation, not here).
 */
export function guardConnections(
  targets: GuardTargets,
  guard: ConnectionGuard,
  onClose: (verdict: GuardVerdict, address: string) => void = () => {},
): ConnectionSweep {
  const seen = new Map<string, { acceptedAt: number; lastRequestAt: number }>();
  const members = new WeakSet<object>();
  const closed = new Map<GuardVerdict, number>();
  /** Whether a sweep is running: one that waits on the store skips the next tick, never overlaps. */
  let sweeping = false;
  const sweep = async () => {
    const now = Date.now();
    const peersByConnection = new Map<string, boolean[]>();
    for (const channel of targets.channels()) {
      const address = channel.remoteRoute[0];
      let member = members.has(channel);
      if (!member && await targets.isMember(channel.peer.identifier)) {
        members.add(channel);
        member = true;
      }
      const list = peersByConnection.get(address) ?? [];
      list.push(member);
      peersByConnection.set(address, list);
    }
    for (const [address, connection] of targets.connections()) {
      const times = seen.get(address) ?? { acceptedAt: now, lastRequestAt: 0 };
      seen.set(address, times);
      const verdict = guard.verdict({ ...times, peers: peersByConnection.get(address) ?? [] }, now);
      if (verdict === null) continue;
      closed.set(verdict, (closed.get(verdict) ?? 0) + 1);
      onClose(verdict, address);
      connection.close(verdict);
    }
    // Forget connections that are gone.
    const open = targets.connections();
    for (const address of seen.keys()) if (!open.has(address)) seen.delete(address);
  };
  const timer = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    // A store that cannot answer (its database down) ends the sweep before
    // it closes anything: nobody is cut off for the store's failure.
    sweep().catch(() => {}).finally(() => sweeping = false);
  }, guard.sweepMs);
  return {
    accepted(address) {
      seen.set(address, { acceptedAt: Date.now(), lastRequestAt: 0 });
    },
    requested(address) {
      const times = seen.get(address);
      if (times !== undefined) times.lastRequestAt = Date.now();
    },
    closed,
    stop: () => clearInterval(timer),
  };
}
