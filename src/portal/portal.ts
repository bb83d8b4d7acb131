/**
 * TCP portals (docs/design.md §6): an inlet listens on a local TCP address; each
 * accepted connection becomes a session through a secure channel to a named
 * outlet, which connects to its backend and pipes bytes both ways.
 *
 * End-to-end backpressure: each side grants the other a credit window per
 * session; a side reads from its socket only while it holds credit, and
 * grants more only after it has written the bytes out to its own socket. So
 * at most one window per direction per session is in flight anywhere,
 * however slow a reader is. Received data is queued per session (bounded by
 * the window) rather than written inside the message handler, so one slow
 * socket never stalls the other sessions sharing the channel.
 *
 * Half-close: end of stream on one socket becomes FIN, which shuts the
 * other socket's write side; the session ends when both directions have.
 * Errors become RESET. Every DATA message arriving at an outlet passes the
 * outlet's policy (cached per credential, so refreshes and revocations take
 * effect at the next message).
 *
 * @module
 */
import type { SecureChannelInfo } from "../channel/channel_info.ts";
import type { Logger } from "../log.ts";
import { silentLogger } from "../log.ts";
import type { Node } from "../routing/node.ts";
import type { Address, Route, RoutedMessage } from "../routing/routed_message.ts";
import type { Policy } from "../policy/mod.ts";
import type { ByteReader } from "./byte_reader.ts";
import {
  creditMessage,
  dataMessage,
  decodePortalMessage,
  finMessage,
  PORTAL,
  type PortalMessage,
  reasonMessage,
} from "./portal_message.ts";

/** Default credit window per session and direction. */
export const DEFAULT_WINDOW = 256 * 1024;
/** Largest DATA message. */
export const MAX_CHUNK = 64 * 1024;

interface SessionOptions {
  node: Node;
  address: Address;
  conn: Deno.TcpConn;
  /** Where the socket's bytes are read (default: the socket itself). */
  source?: ByteReader;
  remote: Route;
  window: number;
  credit: number;
  logger: Logger;
  /** Checked for each DATA message received (the outlet's policy). */
  admit?: () => boolean;
  /** Counts bytes: received from the peer (`in`) and sent to it (`out`). */
  count?: (direction: "in" | "out", bytes: number) => void;
  onEnd?: (reason: string) => void;
  /** The secure channel's end: the session ends with it (revocation, idle, close). */
  channelClosed?: Promise<unknown>;
  /**
   * The secure channel the session was opened through. Messages that
   * arrive through any other channel (or none) are dropped: a session
   * address is not a capability another peer can use, even if it learns it.
   */
  via?: SecureChannelInfo;
}

/** One portal session: a socket piped to the peer's session worker. */
class Session {
  #o: SessionOptions;
  #credit: number;
  /** Credit granted to the peer and not yet used: what it may still send. */
  #granted: number;
  #creditWaiter: (() => void) | null = null;
  #queue: Uint8Array[] = [];
  #writing = false;
  #toGrant = 0;
  #readDone = false;
  #writeDone = false;
  #peerFin = false;
  #ended = false;

  constructor(options: SessionOptions) {
    this.#o = options;
    this.#credit = options.credit;
    this.#granted = options.window;
    options.node.register(options.address, (message) => this.#receive(message));
    options.channelClosed?.then(() => this.end("secure channel closed", false));
    this.#readLoop();
  }

  #send(payload: Uint8Array): Promise<boolean> {
    return this.#o.node.route({ onward: this.#o.remote, return: [this.#o.address], payload });
  }

  async #readLoop(): Promise<void> {
    const buffer = new Uint8Array(MAX_CHUNK);
    try {
      while (!this.#ended) {
        while (this.#credit <= 0 && !this.#ended) {
          await new Promise<void>((resolve) => this.#creditWaiter = resolve);
        }
        if (this.#ended) return;
        const n = await (this.#o.source ?? this.#o.conn).read(
          buffer.subarray(0, Math.min(this.#credit, MAX_CHUNK)),
        );
        if (n === null) {
          this.#readDone = true;
          await this.#send(finMessage());
          this.#maybeEnd();
          return;
        }
        this.#credit -= n;
        this.#o.count?.("out", n);
        if (!await this.#send(dataMessage(buffer.subarray(0, n)))) {
          this.end("route to the peer lost", false);
          return;
        }
      }
    } catch (error) {
      this.end(`socket read failed: ${error instanceof Error ? error.message : error}`, true);
    }
  }

  #receive(message: RoutedMessage): void {
    if (this.#o.via !== undefined && message.local?.secureChannel !== this.#o.via) {
      this.#o.logger.debug("portal message from another channel dropped");
      return;
    }
    let decoded: PortalMessage;
    try {
      decoded = decodePortalMessage(message.payload);
    } catch {
      this.end("malformed portal message", true);
      return;
    }
    // Every kind, not only DATA: a peer the policy no longer admits must
    // not keep a session going by granting CREDIT alone.
    if (this.#o.admit !== undefined && !this.#o.admit()) {
      this.end("denied by policy", true);
      return;
    }
    switch (decoded.kind) {
      case PORTAL.data:
        if (decoded.bytes.length === 0) return;
        // The queue is bounded by the credit only if the peer keeps to it.
        if (decoded.bytes.length > this.#granted) {
          this.end("peer exceeded its credit", true);
          return;
        }
        this.#granted -= decoded.bytes.length;
        this.#o.count?.("in", decoded.bytes.length);
        // Copied: the payload is a view the transport reuses. Bounded by
        // the credit this side granted.
        this.#queue.push(decoded.bytes.slice());
        if (!this.#writing) this.#writeLoop();
        return;
      case PORTAL.credit:
        this.#credit += decoded.credit;
        this.#creditWaiter?.();
        this.#creditWaiter = null;
        return;
      case PORTAL.fin:
        this.#peerFin = true;
        if (!this.#writing) this.#closeWrite();
        return;
      case PORTAL.reset:
        this.end(`reset by peer: ${decoded.reason}`, false);
        return;
      default:
        return;
    }
  }

  async #writeLoop(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && !this.#ended) {
        const chunk = this.#queue.shift()!;
        let written = 0;
        while (written < chunk.length) written += await this.#o.conn.write(chunk.subarray(written));
        this.#toGrant += chunk.length;
        // Grant in batches: half a window, or whatever is left when idle.
        if (this.#toGrant >= this.#o.window / 2 || this.#queue.length === 0) {
          const grant = this.#toGrant;
          this.#toGrant = 0;
          this.#granted += grant;
          await this.#send(creditMessage(PORTAL.credit, grant));
        }
      }
    } catch (error) {
      this.end(`socket write failed: ${error instanceof Error ? error.message : error}`, true);
      return;
    } finally {
      this.#writing = false;
    }
    if (this.#peerFin) this.#closeWrite();
  }

  #closeWrite(): void {
    if (this.#writeDone) return;
    this.#writeDone = true;
    this.#o.conn.closeWrite().catch(() => {});
    this.#maybeEnd();
  }

  #maybeEnd(): void {
    if (this.#readDone && this.#writeDone) this.end("closed", false);
  }

  /** Ends the session; with `tellPeer`, sends RESET first. */
  end(reason: string, tellPeer: boolean): void {
    if (this.#ended) return;
    this.#ended = true;
    if (tellPeer) this.#send(reasonMessage(PORTAL.reset, reason)).catch(() => {});
    this.#creditWaiter?.();
    this.#o.node.unregister(this.#o.address);
    try {
      this.#o.conn.close();
    } catch { /* already closed */ }
    if (reason !== "closed") this.#o.logger.info("portal session ended", { reason });
    this.#o.onEnd?.(reason);
  }
}

/** Options of {@link createOutlet}. */
export interface OutletOptions {
  /** The node the outlet's worker, and its session workers, register on. */
  node: Node;
  /** The outlet's name: its worker address is `outlet.<name>`. */
  name: string;
  /** The backend's TCP address; each session opens its own connection to it. */
  backend: { hostname: string; port: number };
  /** Who may use it; no policy admits no one (use `denyAll`). */
  policy: Policy;
  /** Credit window per session and direction, bytes (default {@link DEFAULT_WINDOW}). */
  window?: number;
  /** Milliseconds to connect to the backend before refusing the session (default 5,000). */
  connectTimeoutMs?: number;
  /** Where denials, unreachable backends and session ends are logged (default: silent). */
  logger?: Logger;
}

/** A running outlet. */
export interface Outlet {
  /** The outlet's worker address, `outlet.<name>`. */
  readonly address: Address;
  /**
   * Counters since start: sessions opened, `denied` by the policy (at open or
   * later), `refused` because the backend was unreachable, `open` now, and
   * bytes received from inlets (`bytesIn`) and sent to them (`bytesOut`).
   */
  readonly stats: {
    sessions: number;
    denied: number;
    refused: number;
    open: number;
    bytesIn: number;
    bytesOut: number;
  };
  /** Stops accepting sessions (unregisters the worker); open sessions go on. */
  close(): void;
}

/**
 * Serves sessions for one backend at `outlet.<name>`. Each OPEN that arrives
 * through a secure channel whose peer the policy admits gets a fresh
 * connection to the backend; any other is answered REFUSED.
 *
 * @example
 * ```ts ignore
 * import { createOutlet } from "./portal.ts";
 * import { parsePolicy } from "../policy/mod.ts";
 *
 * // On the gateway's node, behind its secure channel listener:
 * const outlet = createOutlet({
 *   node,
 *   name: "context",
 *   backend: { hostname: "127.0.0.1", port: 8151 },
 *   policy: parsePolicy('subject.role == "edge" and subject.customer_id == "cust_001"'),
 * });
 * // … at shutdown:
 * outlet.close();
 * ```
 */
export function createOutlet(options: OutletOptions): Outlet {
  const logger = options.logger ?? silentLogger;
  const window = options.window ?? DEFAULT_WINDOW;
  const address = `outlet.${options.name}`;
  const stats = { sessions: 0, denied: 0, refused: 0, open: 0, bytesIn: 0, bytesOut: 0 };
  const refuse = (message: RoutedMessage, reason: string) =>
    options.node.route({
      onward: message.return,
      return: [address],
      payload: reasonMessage(PORTAL.refused, reason),
    });
  const admits = (info: SecureChannelInfo | undefined) =>
    info !== undefined && options.policy.admits(info);
  options.node.register(address, async (message) => {
    let decoded: PortalMessage;
    try {
      decoded = decodePortalMessage(message.payload);
    } catch {
      return;
    }
    if (decoded.kind !== PORTAL.open) return;
    const info = message.local?.secureChannel;
    if (!admits(info)) {
      stats.denied++;
      logger.warn("portal session denied by policy", {
        outlet: options.name,
        peer: info?.peer ?? "(no channel)",
      });
      await refuse(message, "denied by policy");
      return;
    }
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({
        ...options.backend,
        signal: AbortSignal.timeout(options.connectTimeoutMs ?? 5000),
      } as Deno.ConnectOptions);
    } catch (error) {
      stats.refused++;
      const reason = `backend ${options.backend.hostname}:${options.backend.port} unreachable`;
      logger.warn("portal backend unreachable", {
        outlet: options.name,
        error: error instanceof Error ? error.message : String(error),
      });
      await refuse(message, reason);
      return;
    }
    conn.setNoDelay(true);
    stats.sessions++;
    stats.open++;
    const sessionAddress = options.node.freshAddress("portal");
    const back = [...message.return];
    new Session({
      node: options.node,
      address: sessionAddress,
      conn,
      remote: back,
      window,
      credit: decoded.credit,
      logger,
      admit: () => {
        if (admits(info)) return true;
        stats.denied++; // once: the session ends at its first denial
        return false;
      },
      channelClosed: info!.closed,
      via: info,
      count: (direction, bytes) => {
        if (direction === "in") stats.bytesIn += bytes;
        else stats.bytesOut += bytes;
      },
      onEnd: () => stats.open--,
    });
    await options.node.route({
      onward: back,
      return: [sessionAddress],
      payload: creditMessage(PORTAL.opened, window),
    });
  });
  return { address, stats, close: () => options.node.unregister(address) };
}

/** Options of {@link createInlet}. */
export interface InletOptions {
  /** The node the inlet's session workers register on. */
  node: Node;
  /** The local TCP address to listen on (port 0: any free port, see {@link Inlet.addr}). */
  listen: { hostname: string; port: number };
  /**
   * Route to the outlet, e.g. `[channel.address, "outlet.context"]`, asked
   * at each new connection; may wait for a path. When it throws, the
   * connection is refused (closed) with the error logged.
   */
  route: () => Route | InletTarget | Promise<Route | InletTarget>;
  /**
   * Wraps each accepted socket's read side, e.g. to add a header to HTTP
   * requests. Errors it throws end the session with a RESET.
   */
  reader?: (conn: Deno.TcpConn) => ByteReader;
  /** Credit window per session and direction, bytes (default {@link DEFAULT_WINDOW}). */
  window?: number;
  /** Milliseconds to wait for the outlet's answer to OPEN (default 10,000). */
  openTimeoutMs?: number;
  /** Where refused sessions and session ends are logged (default: silent). */
  logger?: Logger;
}

/** A route with the end of the path it uses: an open still unanswered then fails at once. */
export interface InletTarget {
  /** Route to the outlet, as {@link InletOptions.route} would return it. */
  route: Route;
  /** Settles when the path (e.g. the secure channel) closes. */
  closed: Promise<unknown>;
}

/** A running inlet. */
export interface Inlet {
  /** The local address the inlet listens on. */
  readonly addr: Deno.NetAddr;
  /** Counters since start: sessions opened, connections refused, sessions open now. */
  readonly stats: { sessions: number; refused: number; open: number };
  /** Stops listening; open sessions go on. */
  close(): void;
}

/**
 * Listens locally; each connection becomes a session to the outlet.
 * @throws {Deno.errors.AddrInUse | Deno.errors.NotCapable} when the address
 *   cannot be bound (taken, or outside the permission set).
 *
 * @example
 * ```ts ignore
 * import { createInlet } from "./portal.ts";
 *
 * // On the edge's node, once a secure channel to the gateway is open:
 * const inlet = createInlet({
 *   node,
 *   listen: { hostname: "127.0.0.1", port: 8151 },
 *   route: () => ({ route: [channel.address, "outlet.context"], closed: channel.closed }),
 * });
 * console.log(inlet.addr.port); // 8151
 * // … at shutdown:
 * inlet.close();
 * ```
 */
export function createInlet(options: InletOptions): Inlet {
  const logger = options.logger ?? silentLogger;
  const window = options.window ?? DEFAULT_WINDOW;
  const listener = Deno.listen({ ...options.listen, transport: "tcp" });
  const stats = { sessions: 0, refused: 0, open: 0 };
  const start = async (conn: Deno.TcpConn) => {
    conn.setNoDelay(true);
    const address = options.node.freshAddress("portal");
    const answer = Promise.withResolvers<
      { message: PortalMessage; from: Route; via?: SecureChannelInfo }
    >();
    options.node.register(address, (message) => {
      try {
        answer.resolve({
          message: decodePortalMessage(message.payload),
          from: [...message.return],
          via: message.local?.secureChannel,
        });
      } catch {
        answer.reject(new Error("malformed answer"));
      }
    });
    // Marked handled: a malformed answer may reject before it is awaited.
    answer.promise.catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const target = await options.route();
      const onward = Array.isArray(target) ? target : (target as InletTarget).route;
      if (!Array.isArray(target)) {
        (target as InletTarget).closed.then(() =>
          answer.reject(new Error("the path closed before the outlet answered"))
        );
      }
      timer = setTimeout(
        () => answer.reject(new Error("the outlet did not answer in time")),
        options.openTimeoutMs ?? 10_000,
      );
      const sent = await options.node.route({
        onward,
        return: [address],
        payload: creditMessage(PORTAL.open, window),
      });
      if (!sent) throw new Error("no route to the outlet");
      const { message, from, via } = await answer.promise;
      options.node.unregister(address);
      if (message.kind !== PORTAL.opened) {
        throw new Error(message.kind === PORTAL.refused ? message.reason : "unexpected answer");
      }
      stats.sessions++;
      stats.open++;
      new Session({
        node: options.node,
        address,
        conn,
        source: options.reader?.(conn),
        remote: from,
        window,
        credit: message.credit,
        logger,
        onEnd: () => stats.open--,
        channelClosed: via?.closed,
        via,
      });
    } catch (error) {
      stats.refused++;
      options.node.unregister(address);
      logger.warn("portal session refused", {
        reason: error instanceof Error ? error.message : String(error),
      });
      try {
        conn.close();
      } catch { /* closed */ }
    } finally {
      clearTimeout(timer);
    }
  };
  (async () => {
    try {
      for await (const conn of listener) void start(conn);
    } catch { /* listener closed */ }
  })();
  return { addr: listener.addr as Deno.NetAddr, stats, close: () => listener.close() };
}
