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
 * Errors become RESET. Every message arriving at an outlet's session
 * passes the outlet's policy (cached per credential, so refreshes and
 * revocations take effect at the next message).
 *
 * Against a hostile relay (docs/design.md §9): each side numbers its
 * messages (portal_message.ts), so a message the relay dropped ends the
 * session with an error at both ends (RESET) instead of a stream with a
 * hole; and a session whose peer falls silent probes it, and ends when
 * the probe goes unanswered, so a RESET the relay also dropped still
 * ends the session at the other end.
 *
 * @module
 */
import type { SecureChannelInfo } from "../channel/channel_info.ts";
import type { Logger } from "../log.ts";
import { silentLogger } from "../log.ts";
import type { Node } from "../routing/node.ts";
import type { Address, PayloadLease, Route, RoutedMessage } from "../routing/routed_message.ts";
import type { Policy } from "../policy/mod.ts";
import type { ByteReader } from "./byte_reader.ts";
import {
  creditMessage,
  dataMessageInPlace,
  decodePortalMessage,
  emptyMessage,
  finMessage,
  PORTAL,
  PORTAL_HEADER_BYTES,
  type PortalMessage,
  reasonMessage,
} from "./portal_message.ts";

/** Default credit window per session and direction. */
export const DEFAULT_WINDOW = 1024 * 1024;
/** Largest DATA message. */
export const MAX_CHUNK = 128 * 1024;
/**
 * DATA messages of one session on their way (sealed, in the connection's
 * queue) while the next read runs: the socket is read while earlier reads
 * are written, and several records can leave in one write.
 */
export const SEND_PIPELINE = 4;
/** Read buffers a session keeps for reuse (an idle session holds one more, in its read). */
const MAX_SPARE_CHUNKS = 2;

/**
 * How long a session goes without a message from its peer before it
 * probes (PROBE, answered with CREDIT 0), and then before it gives up on
 * an unanswered probe (ms). Only a session whose messages a relay drops
 * while keeping the channel alive ever gets that far: a live peer answers
 * at once, whatever its sockets do.
 */
export const DEFAULT_PROBE_MS = 15_000;

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
  /** Checked for each message received (the outlet's policy). */
  admit?: () => boolean;
  /** Counts bytes: received from the peer (`in`) and sent to it (`out`). */
  count?: (direction: "in" | "out", bytes: number) => void;
  onEnd?: (reason: string) => void;
  /**
   * The secure channel the session was opened through. Messages that
   * arrive through any other channel (or none) are dropped: a session
   * address is not a capability another peer can use, even if it learns it.
   * The session ends with the channel (revocation, idle, close).
   */
  via: SecureChannelInfo;
  /** The sweep that probes silent sessions. */
  sweep: SessionSweep;
}

/**
 * One timer for all the sessions of an inlet or an outlet (not one per
 * session): every third of `probeMs` it probes sessions that have heard
 * nothing from their peer for `probeMs`, and ends those whose probe went
 * unanswered for `probeMs` more.
 */
export class SessionSweep {
  /** A session's silence before it probes, and an unanswered probe's wait before it ends, ms. */
  readonly probeMs: number;
  #sessions = new Set<Session>();
  #timer: ReturnType<typeof setInterval> | undefined;

  /** A sweep for sessions that probe after `probeMs` of silence. */
  constructor(probeMs: number = DEFAULT_PROBE_MS) {
    this.probeMs = probeMs;
  }

  /** @internal */
  add(session: Session): void {
    this.#sessions.add(session);
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#check(), Math.max(10, Math.floor(this.probeMs / 3)));
      Deno.unrefTimer(this.#timer as unknown as number);
    }
  }

  /** @internal */
  delete(session: Session): void {
    this.#sessions.delete(session);
    if (this.#sessions.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #check(): void {
    const now = Date.now();
    for (const session of this.#sessions) session.checkLiveness(now, this.probeMs);
  }
}

/** `lease` once taken by the caller, else undefined (none offered, or taken already). */
function taken(lease: PayloadLease | undefined): PayloadLease | undefined {
  return lease?.take() ? lease : undefined;
}

/** One portal session: a socket piped to the peer's session worker. */
class Session {
  #o: SessionOptions;
  #credit: number;
  /** Credit granted to the peer and not yet used: what it may still send. */
  #granted: number;
  #creditWaiter: (() => void) | null = null;
  /** DATA received and not yet written to the socket, oldest first. */
  #queue: Uint8Array[] = [];
  /** Beside each queued chunk: the lease of its memory, when this session took it. */
  #leases: (PayloadLease | undefined)[] = [];
  #writing = false;
  #toGrant = 0;
  #readDone = false;
  #writeDone = false;
  #peerFin = false;
  #ended = false;
  /** The number of this side's next message (0 went with OPEN or OPENED). */
  #sendSeq = 1;
  /** The number of the peer's next message. */
  #receiveSeq = 1;
  /** When a message last came from the peer, and when this side probed (0: not). */
  #lastHeard = Date.now();
  #probedAt = 0;

  constructor(options: SessionOptions) {
    this.#o = options;
    this.#credit = options.credit;
    this.#granted = options.window;
    options.node.register(options.address, (message) => this.#receive(message));
    options.via.closed.then(() => this.end("secure channel closed", false));
    options.sweep.add(this);
    this.#readLoop();
  }

  /**
   * Sends the next message of this session; `build` gets its number.
   * Numbers are taken in call order, and the channel seals records in call
   * order, so they leave in sequence.
   */
  #send(build: (seq: number) => Uint8Array): Promise<boolean> {
    const payload = build(this.#sendSeq++);
    return this.#o.node.route({ onward: this.#o.remote, return: [this.#o.address], payload });
  }

  /**
   * Reads the socket and sends what it reads as DATA, within the credit.
   * Each read lands behind room for the portal header, so the message is
   * built in place; up to {@link SEND_PIPELINE} messages are on their way
   * at once (sealed, queued at the connection) while the next read runs,
   * each in its own buffer, which is read again only once its message was
   * written.
   */
  async #readLoop(): Promise<void> {
    const spares: Uint8Array[] = [];
    const inFlight: Promise<void>[] = [];
    try {
      while (!this.#ended) {
        while (this.#credit <= 0 && !this.#ended) {
          await new Promise<void>((resolve) => this.#creditWaiter = resolve);
        }
        if (this.#ended) return;
        const buffer = spares.pop() ?? new Uint8Array(PORTAL_HEADER_BYTES + MAX_CHUNK);
        const n = await (this.#o.source ?? this.#o.conn).read(
          buffer.subarray(
            PORTAL_HEADER_BYTES,
            PORTAL_HEADER_BYTES + Math.min(this.#credit, MAX_CHUNK),
          ),
        );
        if (this.#ended) return;
        if (n === null) {
          this.#readDone = true;
          await Promise.all(inFlight);
          if (this.#ended) return;
          await this.#send(finMessage);
          this.#maybeEnd();
          return;
        }
        this.#credit -= n;
        this.#o.count?.("out", n);
        const sent = this.#send((seq) =>
          dataMessageInPlace(seq, buffer.subarray(0, PORTAL_HEADER_BYTES + n))
        ).then((routed) => {
          if (!routed) this.end("route to the peer lost", false);
          else if (spares.length < MAX_SPARE_CHUNKS) spares.push(buffer);
        });
        inFlight.push(sent);
        if (inFlight.length >= SEND_PIPELINE) await inFlight.shift();
      }
    } catch (error) {
      this.end(`socket read failed: ${error instanceof Error ? error.message : error}`, true);
    }
  }

  #receive(message: RoutedMessage): void {
    if (message.local?.secureChannel !== this.#o.via) {
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
    // Exactly the next message: the channel delivers at most once and in
    // order, so an earlier number is a duplicate (ignored) and a later one
    // means messages were lost on the way: the stream has a hole, and the
    // session ends rather than pass it on.
    if (decoded.seq < this.#receiveSeq) {
      this.#o.logger.debug("duplicate portal message dropped", { seq: decoded.seq });
      return;
    }
    if (decoded.seq > this.#receiveSeq) {
      this.end(`portal messages lost (expected ${this.#receiveSeq}, got ${decoded.seq})`, true);
      return;
    }
    this.#receiveSeq++;
    this.#lastHeard = Date.now();
    this.#probedAt = 0;
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
        // Kept as it is, no copy: portal messages come only out of the
        // secure channel (checked above), and its plaintext is this
        // session's to keep (secure_channel.ts, #dispatch). Bounded by the
        // credit this side granted.
        //
        // Who owns the bytes, and until when: when the channel lent them
        // (a pooled buffer, `lease`), this session takes the lease here,
        // while nothing but the session has seen them, and from then on
        // owns the whole buffer: the queue holds the only reference, then
        // #writeLoop, then the socket write in progress. It gives the
        // buffer back once its last write has settled (the runtime holds
        // the bytes only while a write is pending), or when the session
        // ends with the chunk still queued, never before; nothing else here
        // keeps a view of it (the decoded message and routes are dropped
        // with this call). Without a lease the bytes are the session's and
        // simply collected after the write.
        this.#queue.push(decoded.bytes);
        this.#leases.push(taken(message.local?.lease));
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
      case PORTAL.probe:
        this.#send((seq) => creditMessage(PORTAL.credit, seq, 0)).catch(() => {});
        return;
      case PORTAL.reset:
        this.end(`reset by peer: ${decoded.reason}`, false);
        return;
      default:
        this.end("unexpected portal message", true);
        return;
    }
  }

  /** @internal The sweep's check: probe a silent peer, end one that does not answer. */
  checkLiveness(now: number, probeMs: number): void {
    if (this.#ended) return;
    if (this.#probedAt !== 0) {
      if (now - this.#probedAt >= probeMs) this.end("the peer session stopped answering", true);
      return;
    }
    if (now - this.#lastHeard >= probeMs) {
      this.#probedAt = now;
      this.#send((seq) => emptyMessage(PORTAL.probe, seq)).catch(() => {});
    }
  }

  async #writeLoop(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && !this.#ended) {
        const chunk = this.#queue.shift()!;
        const lease = this.#leases.shift();
        const length = chunk.length;
        let written = 0;
        try {
          while (written < length) written += await this.#o.conn.write(chunk.subarray(written));
        } finally {
          // Every write of it has settled (resolved or rejected): no
          // reference to its memory is left but `chunk`, unused from here.
          lease?.release();
        }
        this.#toGrant += length;
        // Grant in batches, once the peer is down to half a window or
        // less (what it may still send is #granted): a peer that keeps
        // more than half has credit to go on with, so a request and its
        // answer travel without a CREDIT before them in every hop.
        if (this.#granted <= this.#o.window / 2) {
          const grant = this.#toGrant;
          this.#toGrant = 0;
          this.#granted += grant;
          // Not awaited: the next chunk goes to the socket while the grant
          // is on its way (the channel keeps messages in order).
          this.#send((seq) => creditMessage(PORTAL.credit, seq, grant)).then((routed) => {
            if (!routed) this.end("route to the peer lost", false);
          });
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
    if (tellPeer) this.#send((seq) => reasonMessage(PORTAL.reset, seq, reason)).catch(() => {});
    // Chunks still queued will never be written: nothing refers to them
    // but the queue (the one being written, if any, left it already, and
    // #writeLoop releases it when its write settles).
    for (const lease of this.#leases) lease?.release();
    this.#queue = [];
    this.#leases = [];
    this.#creditWaiter?.();
    this.#o.node.unregister(this.#o.address);
    this.#o.sweep.delete(this);
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
  /**
   * Which channels may open sessions at all (default: any secure channel):
   * a service agent takes sessions only through inner channels, never
   * through its channels to gateways, whatever the policy says.
   */
  channels?: (info: SecureChannelInfo) => boolean;
  /** Credit window per session and direction, bytes (default {@link DEFAULT_WINDOW}). */
  window?: number;
  /** Milliseconds to connect to the backend before refusing the session (default 5,000). */
  connectTimeoutMs?: number;
  /** Probe a session's silent peer after this long, and give up after as long again (default {@link DEFAULT_PROBE_MS}). */
  probeMs?: number;
  /** Where denials, unreachable backends and session ends are logged (default: silent). */
  logger?: Logger;
}

/** A running outlet. */
export interface Outlet {
  /** The outlet's worker address, `outlet.<name>`. */
  readonly address: Address;
  /**
   * Counters since start: sessions opened, `denied` by the policy (at open or
   * later), `refused` because the backend was unreachable, `open` now,
   * `failed`: ended with an error (a reset, lost messages, a socket error;
   * not a clean close), and bytes received from inlets (`bytesIn`) and sent
   * to them (`bytesOut`).
   */
  readonly stats: {
    sessions: number;
    denied: number;
    refused: number;
    open: number;
    failed: number;
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
  const stats = {
    sessions: 0,
    denied: 0,
    refused: 0,
    open: 0,
    failed: 0,
    bytesIn: 0,
    bytesOut: 0,
  };
  const sweep = new SessionSweep(options.probeMs);
  const refuse = (message: RoutedMessage, reason: string) =>
    options.node.route({
      onward: message.return,
      return: [address],
      payload: reasonMessage(PORTAL.refused, 0, reason),
    });
  const admits = (info: SecureChannelInfo | undefined) =>
    info !== undefined && (options.channels?.(info) ?? true) && options.policy.admits(info);
  options.node.register(address, async (message) => {
    let decoded: PortalMessage;
    try {
      decoded = decodePortalMessage(message.payload);
    } catch {
      return;
    }
    if (decoded.kind !== PORTAL.open || decoded.seq !== 0) return;
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
      via: info!,
      sweep,
      count: (direction, bytes) => {
        if (direction === "in") stats.bytesIn += bytes;
        else stats.bytesOut += bytes;
      },
      onEnd: (reason) => {
        stats.open--;
        if (reason !== "closed") stats.failed++;
      },
    });
    await options.node.route({
      onward: back,
      return: [sessionAddress],
      payload: creditMessage(PORTAL.opened, 0, window),
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
  /** Probe a session's silent peer after this long, and give up after as long again (default {@link DEFAULT_PROBE_MS}). */
  probeMs?: number;
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
  /**
   * Counters since start: sessions opened, connections refused, sessions
   * open now, and sessions `failed`: ended with an error, not a clean close.
   */
  readonly stats: { sessions: number; refused: number; open: number; failed: number };
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
  const stats = { sessions: 0, refused: 0, open: 0, failed: 0 };
  const sweep = new SessionSweep(options.probeMs);
  const start = async (conn: Deno.TcpConn) => {
    conn.setNoDelay(true);
    const address = options.node.freshAddress("portal");
    /** Settles with the outlet's answer: the session opened, or why not. */
    const answer = Promise.withResolvers<void>();
    let settled = false;
    const settle = (error?: Error) => {
      if (settled) return;
      settled = true;
      if (error === undefined) answer.resolve();
      else answer.reject(error);
    };
    /** The first hop of the route the OPEN takes: the channel the answer must come through. */
    let expectedVia: string | null = null;
    // The session takes over the address in the same step as the OPENED is
    // read, so a DATA right behind the OPENED finds it.
    options.node.register(address, (message) => {
      let decoded: PortalMessage;
      try {
        decoded = decodePortalMessage(message.payload);
      } catch {
        return settle(new Error("malformed answer"));
      }
      // Only an answer through the channel the OPEN left on counts (a
      // channel delivers with its own encryptor first in the return route);
      // anything else is ignored, so no one else can open, refuse or hijack
      // this session by guessing its address.
      const via = message.local?.secureChannel;
      if (via === undefined || expectedVia === null || message.return[0] !== expectedVia) return;
      if (settled || decoded.seq !== 0) return settle(new Error("unexpected answer"));
      if (decoded.kind === PORTAL.refused) return settle(new Error(decoded.reason));
      if (decoded.kind !== PORTAL.opened) return settle(new Error("unexpected answer"));
      settle();
      options.node.unregister(address);
      stats.sessions++;
      stats.open++;
      new Session({
        node: options.node,
        address,
        conn,
        source: options.reader?.(conn),
        remote: [...message.return],
        window,
        credit: decoded.credit,
        logger,
        onEnd: (reason) => {
          stats.open--;
          if (reason !== "closed") stats.failed++;
        },
        via,
        sweep,
      });
    });
    // Marked handled: an answer may settle before it is awaited.
    answer.promise.catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const target = await options.route();
      const onward = Array.isArray(target) ? target : (target as InletTarget).route;
      expectedVia = onward[0];
      if (!Array.isArray(target)) {
        (target as InletTarget).closed.then(() =>
          settle(new Error("the path closed before the outlet answered"))
        );
      }
      timer = setTimeout(
        () => settle(new Error("the outlet did not answer in time")),
        options.openTimeoutMs ?? 10_000,
      );
      const sent = await options.node.route({
        onward,
        return: [address],
        payload: creditMessage(PORTAL.open, 0, window),
      });
      if (!sent) settle(new Error("no route to the outlet"));
      await answer.promise;
    } catch (error) {
      settle(error instanceof Error ? error : new Error(String(error)));
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
