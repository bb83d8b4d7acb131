/**
 * Framed connections over TCP, plain or TLS: {@link connectTcp} and
 * {@link listenTcp}.
 *
 * One connection's failure never reaches another, nor the listener: a bad
 * version byte, a malformed or oversized frame, a failed TLS handshake or a
 * throwing `onConnection` closes that connection only, and every promise
 * the transport creates internally is handled, so none becomes an
 * unhandled rejection.
 *
 * TCP_NODELAY: set on every plain TCP connection and on the TCP socket
 * under an outgoing TLS connection (connected with `Deno.connect`, then
 * `Deno.startTls`, which also gives `serverName`). Deno 2.9 offers no way to
 * set it on a connection accepted by `Deno.listenTls`, so there Nagle's
 * algorithm holds a small write back while an earlier one is unacknowledged:
 * on loopback, a small frame sent right after another from the server side
 * of a TLS connection waits about 40 ms for the peer's delayed ACK. Frames
 * sent in the same turn of the event loop share one write and are not
 * affected, nor are plain TCP listeners (the conformance suite checks).
 *
 * Incoming TLS handshakes are given `handshakeTimeoutMs`; then the
 * connection is closed and reported (`handshake_timeout`). A limit of Deno
 * 2.9 (rustls-tokio-stream): a server handshake runs in a task of its own
 * that closing the conn does not cancel, so the socket of a peer that never
 * sends its ClientHello stays open, outside the listener's accounting, until
 * that peer sends or closes. Bound such sockets with the OS (file
 * descriptor limits, a firewall's per-source connection limit). For the
 * same reason a TLS client whose connection a limit refuses on accept may
 * still see its handshake complete, then the end of the stream at once;
 * no frame of it is read either way.
 *
 * What unauthenticated peers can make a listener hold is bounded three
 * ways, because every connection costs memory before its peer has proved
 * anything (a read buffer, socket state, a decoder buffer that grows with
 * the bytes the peer sends):
 *
 * - `maxConnections`: connections open at once, from everyone;
 * - `maxConnectionsPerSource`: connections open at once from one source
 *   (an IPv4 address, or an IPv6 /64, which one host usually has whole;
 *   see {@link connectionSource}), so one host cannot take all of
 *   `maxConnections`. A connection beyond either limit is closed as it is
 *   accepted, before any byte is read, and counted
 *   ({@link FramedListener.refused}); one beyond the per-source limit is
 *   also reported to `onError` as a {@link ConnectionLimitError};
 * - `maxReceiveFrameBytes`: the frame limit accepted connections start
 *   with, for what a peer needs before it is authenticated; the
 *   application raises it per connection once the peer has proved itself
 *   ({@link FramedConnection.setMaxReceiveFrameBytes}).
 *
 * @module
 */
import { NexusError, TransportError } from "../errors.ts";
import {
  checkBufferBytes,
  checkIdleReadBufferBytes,
  checkMaxReceiveFrameBytes,
  type FramedConnection,
  IO_BUFFER_BYTES,
  SocketConnection,
  type SocketConnectionOptions,
} from "./connection.ts";
import { checkMaxFrameBytes, MAX_FRAME_BYTES } from "./frame_decoder.ts";

/** Options of {@link connectTcp}. */
export interface ConnectTcpOptions {
  /** The host name or IP address to connect to. */
  hostname: string;
  /** The TCP port to connect to. */
  port: number;
  /** Hard maximum frame length, both ways; default {@link MAX_FRAME_BYTES}. */
  maxFrameBytes?: number;
  /**
   * The initial limit on frames received from the server, from 1 to
   * `maxFrameBytes`; default `maxFrameBytes`. Raise it on the connection
   * with {@link FramedConnection.setMaxReceiveFrameBytes}.
   */
  maxReceiveFrameBytes?: number;
  /**
   * Connect with TLS, trusting only `caCerts` (PEM) besides the runtime's
   * roots, and verifying the certificate against `serverName` (default:
   * `hostname`; an IP address is checked against the IP SANs).
   */
  tls?: { caCerts: string[]; serverName?: string };
  /** Aborts the connect and the TLS handshake. */
  signal?: AbortSignal;
  /** Size of the connection's read buffer; default 64 KiB. */
  readBufferBytes?: number;
  /** Size of the connection's write buffer; default 64 KiB. */
  writeBufferBytes?: number;
}

/**
 * Opens a framed connection. With `tls`, the handshake completes before it
 * resolves, so certificate errors surface here.
 *
 * @example
 * ```ts
 * import { connectTcp, listenTcp } from "./tcp.ts";
 *
 * // A listener that echoes every frame back.
 * const listener = listenTcp({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   onConnection: async (conn) => {
 *     for await (const frame of conn.frames()) await conn.send(frame);
 *   },
 * });
 *
 * const conn = await connectTcp({ hostname: "127.0.0.1", port: listener.addr.port });
 * await conn.send(new TextEncoder().encode("hello"));
 * for await (const frame of conn.frames()) {
 *   new TextDecoder().decode(frame); // "hello"
 *   break; // leaves the connection open
 * }
 * conn.close();
 * (await conn.closed).reason; // "closed"
 * await listener.close();
 * ```
 *
 * @throws {TransportError} `connect_failed` (the cause is Deno's error),
 * `tls_failed` (handshake or certificate), `aborted` (the signal fired; the
 * cause is its reason).
 * @throws {RangeError} for an invalid `maxFrameBytes` or buffer size.
 */
export async function connectTcp(options: ConnectTcpOptions): Promise<FramedConnection> {
  const { hostname, port, tls, signal } = options;
  const connectionOptions = checkOptions(tls ? "tls" : "tcp", options);
  const aborted = () =>
    new TransportError("aborted", `connecting to ${hostname}:${port} was aborted`, {
      cause: signal?.reason,
    });
  if (signal?.aborted) throw aborted();
  let tcp: Deno.TcpConn;
  try {
    tcp = await Deno.connect({ hostname, port, signal });
  } catch (error) {
    if (signal?.aborted) throw aborted();
    // The cause's text says why (refused, unreachable, or outside the
    // process's net permission): operators need it in the log line.
    const why = error instanceof Error ? `: ${error.message}` : "";
    throw new TransportError("connect_failed", `cannot connect to ${hostname}:${port}${why}`, {
      cause: error,
    });
  }
  setNoDelay(tcp);
  if (!tls) return new SocketConnection(tcp, connectionOptions);

  let conn: Deno.Conn = tcp;
  const onAbort = () => closeQuietly(conn);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const tlsConn = await Deno.startTls(tcp, {
      hostname: tls.serverName ?? hostname,
      caCerts: tls.caCerts,
    });
    conn = tlsConn;
    if (signal?.aborted) throw signal.reason;
    await tlsConn.handshake();
    return new SocketConnection(tlsConn, connectionOptions);
  } catch (error) {
    closeQuietly(conn);
    if (signal?.aborted) throw aborted();
    throw new TransportError("tls_failed", `TLS with ${hostname}:${port} failed`, {
      cause: error,
    });
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/** Options of {@link listenTcp}. */
export interface ListenTcpOptions {
  /** The address to bind, e.g. `127.0.0.1` (loopback only) or `0.0.0.0` (all IPv4). */
  hostname: string;
  /** The port; 0 picks a free one (see the listener's `addr`). */
  port: number;
  /** Hard maximum frame length, both ways; default {@link MAX_FRAME_BYTES}. */
  maxFrameBytes?: number;
  /**
   * The limit on frames received that each accepted connection starts
   * with, from 1 to `maxFrameBytes`; default `maxFrameBytes` (no separate
   * limit). Set it to the largest frame a peer needs before it is
   * authenticated (a relay's admission message, a channel's handshake), and
   * raise it on the connection once the peer is
   * ({@link FramedConnection.setMaxReceiveFrameBytes}): a larger frame
   * before then closes that connection only, `oversized`, from its header.
   */
  maxReceiveFrameBytes?: number;
  /** Serve TLS with this certificate chain and key (PEM). */
  tls?: { cert: string; key: string };
  /**
   * Receives each new connection (after its TLS handshake). If it throws or
   * its promise rejects, that connection is closed with reason
   * `"handler_error"` and the error goes to `onError`.
   */
  onConnection(conn: FramedConnection): void | Promise<void>;
  /**
   * Hears what fails outside any connection's `closed`: failed or timed-out
   * TLS handshakes, `onConnection` errors, accept errors (the listener
   * keeps accepting), connections refused by `maxConnectionsPerSource`
   * ({@link ConnectionLimitError}, one per refused connection). Default:
   * ignored. Must not throw.
   */
  onError?(error: Error): void;
  /** Time allowed for an incoming TLS handshake; default 10 s. */
  handshakeTimeoutMs?: number;
  /**
   * Connections beyond this many open ones (TLS handshakes in progress
   * included) are closed on accept, and counted in
   * {@link FramedListener.refused}; default unlimited.
   */
  maxConnections?: number;
  /**
   * Most connections open at once from one source (TLS handshakes in
   * progress included): one IPv4 address, or one IPv6 /64 prefix (an
   * IPv4-mapped IPv6 address counts as its IPv4 address); see
   * {@link connectionSource}. A connection beyond it is closed on accept,
   * before any byte is read, counted in {@link FramedListener.refused}, and
   * reported to `onError` as a {@link ConnectionLimitError}; the source's
   * other connections are unaffected. Default unlimited. Behind a proxy or
   * NAT every client shares the proxy's source.
   */
  maxConnectionsPerSource?: number;
  /** Size of each connection's read buffer; default 64 KiB. */
  readBufferBytes?: number;
  /**
   * A smaller read buffer for each connection while it is parked, from 64
   * bytes to `readBufferBytes`; default none. Connections then start
   * parked, a read that fills this buffer unparks one, and
   * {@link FramedConnection.park} (the owner's call, for a connection that
   * has gone quiet) parks it again; the `readBufferBytes` one is taken
   * from a shared pool while a connection is unparked and given back when
   * it is parked, so idle connections hold only this one (see
   * {@link SocketConnectionOptions.idleReadBufferBytes}).
   */
  idleReadBufferBytes?: number;
  /** Size of each connection's write buffer; default 64 KiB. */
  writeBufferBytes?: number;
}

/** Connections a listener closed as it accepted them, by the limit that refused them. */
export interface RefusedConnections {
  /** Refused by `maxConnections`. */
  readonly maxConnections: number;
  /** Refused by `maxConnectionsPerSource`. */
  readonly maxConnectionsPerSource: number;
}

/**
 * Why a listener refused a connection on accept: `too_many_from_source`,
 * its source already had `maxConnectionsPerSource` connections open.
 * Reported to the listener's `onError`; the connection was closed before
 * any byte was read.
 */
export class ConnectionLimitError extends NexusError<"too_many_from_source"> {
  /** The source the limit counts: an IPv4 address or an IPv6 /64 ({@link connectionSource}). */
  readonly source: string;
  /** The refused connection's peer address. */
  readonly remoteAddr: Deno.NetAddr;
  /** The error for a connection from `remoteAddr`, refused because `source` had `limit` open. */
  constructor(remoteAddr: Deno.NetAddr, source: string, limit: number) {
    super(
      "too_many_from_source",
      `refused a connection from ${remoteAddr.hostname}:${remoteAddr.port}: ` +
        `${source} already has ${limit} open (maxConnectionsPerSource)`,
    );
    this.source = source;
    this.remoteAddr = remoteAddr;
  }
}

/** A listening socket that hands out framed connections. */
export interface FramedListener {
  /** The bound address (with the real port when `port` was 0). */
  readonly addr: Deno.NetAddr;
  /** Open connections accepted by this listener. */
  connections(): number;
  /** Connections closed on accept so far, by the limit that refused them. */
  refused(): RefusedConnections;
  /**
   * Stops accepting, closes every connection it accepted (reason
   * `"listener_closed"`) and every handshake in progress, and resolves once
   * the accept loop has ended. Idempotent.
   */
  close(): Promise<void>;
}

/** Default time allowed for an incoming TLS handshake. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** The longest delay a timer accepts (larger ones fire at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Pause after a failed accept (e.g. out of file descriptors) before the next. */
const ACCEPT_RETRY_MS = 50;

/**
 * Listens for framed connections, plain TCP or TLS.
 *
 * @example
 * ```ts
 * import { connectTcp, listenTcp } from "./tcp.ts";
 *
 * const listener = listenTcp({
 *   hostname: "127.0.0.1",
 *   port: 0, // a free port: see listener.addr
 *   maxConnections: 1000,
 *   maxConnectionsPerSource: 50,
 *   // Before a peer is authenticated, no frame above 48 KiB...
 *   maxReceiveFrameBytes: 48 * 1024,
 *   onConnection: async (conn) => {
 *     // ...and once it is (here: at once), up to maxFrameBytes.
 *     conn.setMaxReceiveFrameBytes(conn.maxFrameBytes);
 *     // Echo every frame; awaiting the send is the backpressure.
 *     for await (const frame of conn.frames()) await conn.send(frame);
 *   },
 *   onError: (error) => console.error(error.message),
 * });
 *
 * const client = await connectTcp({ hostname: "127.0.0.1", port: listener.addr.port });
 * await client.send(Uint8Array.of(1, 2, 3));
 * for await (const frame of client.frames()) {
 *   frame; // Uint8Array [1, 2, 3]
 *   break;
 * }
 * listener.connections(); // 1
 * await listener.close(); // closes the accepted connection too ("listener_closed")
 * client.close();
 * ```
 *
 * @throws {Deno.errors.AddrInUse} and the like, synchronously from `Deno.listen`.
 * @throws {RangeError} for invalid options.
 */
export function listenTcp(options: ListenTcpOptions): FramedListener {
  return new Listener(options);
}

class Listener implements FramedListener {
  readonly addr: Deno.NetAddr;
  #listener: Deno.Listener;
  #options: ListenTcpOptions;
  #connectionOptions: SocketConnectionOptions;
  #handshakeTimeoutMs: number;
  #maxConnections: number;
  #maxPerSource: number;
  /** Connections open or handshaking, by source; a source with none has no entry. */
  #perSource = new Map<string, number>();
  #refused = { maxConnections: 0, maxConnectionsPerSource: 0 };
  #open = new Set<SocketConnection>();
  #handshaking = new Set<Deno.Conn>();
  #tasks = new Set<Promise<void>>();
  #closing = false;
  #acceptLoop: Promise<void>;
  #retry: { timer: ReturnType<typeof setTimeout>; resolve: () => void } | null = null;

  constructor(options: ListenTcpOptions) {
    this.#options = options;
    this.#connectionOptions = checkOptions(options.tls ? "tls" : "tcp", options);
    this.#handshakeTimeoutMs = options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    const timeout = this.#handshakeTimeoutMs;
    if (!Number.isFinite(timeout) || timeout <= 0 || timeout > MAX_TIMER_MS) {
      throw new RangeError(`handshakeTimeoutMs must be from 1 to ${MAX_TIMER_MS}, got ${timeout}`);
    }
    this.#maxConnections = options.maxConnections ?? Infinity;
    if (!(this.#maxConnections >= 1)) {
      throw new RangeError(`maxConnections must be at least 1, got ${this.#maxConnections}`);
    }
    this.#maxPerSource = options.maxConnectionsPerSource ?? Infinity;
    if (!(this.#maxPerSource >= 1)) {
      throw new RangeError(
        `maxConnectionsPerSource must be at least 1, got ${this.#maxPerSource}`,
      );
    }
    const { hostname, port, tls } = options;
    this.#listener = tls
      ? Deno.listenTls({ hostname, port, cert: tls.cert, key: tls.key })
      : Deno.listen({ hostname, port });
    this.addr = this.#listener.addr as Deno.NetAddr;
    this.#acceptLoop = this.#accept();
  }

  connections(): number {
    return this.#open.size;
  }

  refused(): RefusedConnections {
    return { ...this.#refused };
  }

  async close(): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      closeQuietly(this.#listener);
      if (this.#retry !== null) {
        clearTimeout(this.#retry.timer);
        this.#retry.resolve();
      }
      for (const conn of this.#handshaking) closeQuietly(conn);
      for (const conn of this.#open) conn.close("listener_closed");
    }
    await this.#acceptLoop;
    while (this.#tasks.size > 0) await Promise.all(this.#tasks);
  }

  async #accept(): Promise<void> {
    while (!this.#closing) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#closing || error instanceof Deno.errors.BadResource) return;
        this.#report(error);
        await new Promise<void>((resolve) => {
          this.#retry = { timer: setTimeout(resolve, ACCEPT_RETRY_MS), resolve };
        });
        this.#retry = null;
        continue;
      }
      if (this.#closing) {
        closeQuietly(conn);
        return;
      }
      if (this.#open.size + this.#handshaking.size >= this.#maxConnections) {
        closeQuietly(conn);
        this.#refused.maxConnections++;
        continue;
      }
      if (!this.#admitSource(conn)) continue;
      // The source's count drops when the connection closes (#onClose), or
      // at once when none was made; the task itself ends with the set-up.
      const task = this.#setUp(conn).then((connection) => {
        if (connection === null) this.#releaseSource(conn.remoteAddr as Deno.NetAddr);
      });
      this.#tasks.add(task);
      task.finally(() => this.#tasks.delete(task));
    }
  }

  /**
   * Counts `conn` against its source's limit; true when counted (then
   * {@link #releaseSource} uncounts it, once, when it closes), false when
   * the limit refused it, in which case `conn` is closed, counted and
   * reported.
   */
  #admitSource(conn: Deno.Conn): boolean {
    if (this.#maxPerSource === Infinity) return true;
    const remote = conn.remoteAddr as Deno.NetAddr;
    const source = connectionSource(remote.hostname);
    const open = this.#perSource.get(source) ?? 0;
    if (open >= this.#maxPerSource) {
      closeQuietly(conn);
      this.#refused.maxConnectionsPerSource++;
      this.#report(new ConnectionLimitError(remote, source, this.#maxPerSource));
      return false;
    }
    this.#perSource.set(source, open + 1);
    return true;
  }

  /**
   * Uncounts a connection from `remote` that {@link #admitSource} counted.
   * The source is worked out again from the same address: one function of
   * it, so the count it drops is the one that was raised (no closure per
   * connection to remember it).
   */
  #releaseSource(remote: Deno.NetAddr): void {
    if (this.#maxPerSource === Infinity) return;
    const source = connectionSource(remote.hostname);
    const left = (this.#perSource.get(source) ?? 1) - 1;
    if (left > 0) this.#perSource.set(source, left);
    else this.#perSource.delete(source);
  }

  /** What a connection accepted here does as it closes (one function for all of them). */
  #onClose = (connection: SocketConnection): void => {
    this.#open.delete(connection);
    this.#releaseSource(connection.remoteAddr);
  };

  /**
   * Handshakes (TLS), wraps and hands over one accepted conn; never
   * rejects. Resolves to the connection, or null when none was made (the
   * conn is then closed).
   */
  async #setUp(conn: Deno.Conn): Promise<SocketConnection | null> {
    if (this.#options.tls) {
      this.#handshaking.add(conn);
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        closeQuietly(conn);
      }, this.#handshakeTimeoutMs);
      try {
        await (conn as Deno.TlsConn).handshake();
      } catch (error) {
        closeQuietly(conn);
        if (!this.#closing) {
          this.#report(
            timedOut
              ? new TransportError("handshake_timeout", "incoming TLS handshake timed out")
              : new TransportError("tls_failed", "incoming TLS handshake failed", {
                cause: error,
              }),
          );
        }
        return null;
      } finally {
        clearTimeout(timer);
        this.#handshaking.delete(conn);
      }
      if (this.#closing) {
        closeQuietly(conn);
        return null;
      }
    } else {
      setNoDelay(conn as Deno.TcpConn);
    }
    let connection: SocketConnection;
    try {
      connection = new SocketConnection(conn, this.#connectionOptions, this.#onClose);
    } catch (error) {
      closeQuietly(conn);
      this.#report(error);
      return null;
    }
    this.#open.add(connection);
    // The handler may run as long as the connection does; `close()` does
    // not wait for it, only watches it for errors.
    const fail = (error: unknown) => {
      connection.close("handler_error");
      this.#report(error);
    };
    try {
      const result = this.#options.onConnection(connection);
      if (result instanceof Promise) result.catch(fail);
    } catch (error) {
      fail(error);
    }
    return connection;
  }

  #report(error: unknown): void {
    try {
      this.#options.onError?.(error instanceof Error ? error : new Error(String(error)));
    } catch {
      // onError must not throw; if it does, the listener carries on regardless.
    }
  }
}

/** Checks the connection options up front, before any socket is opened. */
function checkOptions(
  transport: "tcp" | "tls",
  options: {
    maxFrameBytes?: number;
    maxReceiveFrameBytes?: number;
    readBufferBytes?: number;
    idleReadBufferBytes?: number;
    writeBufferBytes?: number;
  },
): SocketConnectionOptions {
  const maxFrameBytes = checkMaxFrameBytes(options.maxFrameBytes ?? MAX_FRAME_BYTES);
  const readBufferBytes = checkBufferBytes(
    "readBufferBytes",
    options.readBufferBytes ?? IO_BUFFER_BYTES,
  );
  return {
    transport,
    maxFrameBytes,
    maxReceiveFrameBytes: checkMaxReceiveFrameBytes(
      options.maxReceiveFrameBytes ?? maxFrameBytes,
      maxFrameBytes,
    ),
    readBufferBytes,
    idleReadBufferBytes: options.idleReadBufferBytes === undefined
      ? undefined
      : checkIdleReadBufferBytes(options.idleReadBufferBytes, readBufferBytes),
    writeBufferBytes: checkBufferBytes(
      "writeBufferBytes",
      options.writeBufferBytes ?? IO_BUFFER_BYTES,
    ),
  };
}

function setNoDelay(conn: Deno.TcpConn): void {
  try {
    conn.setNoDelay(true);
  } catch {
    // The socket may already be gone; the first read or write reports that.
  }
}

function closeQuietly(closer: { close(): void }): void {
  try {
    closer.close();
  } catch {
    // Already closed.
  }
}

/**
 * The source a connection from `hostname` (an IP address as Deno reports
 * it) is counted against by `maxConnectionsPerSource`: an IPv4 address
 * itself (`"203.0.113.7"`); for IPv6, its /64 prefix, in canonical form
 * (`"2001:db8:1:2::/64"`), because one host is usually given a whole /64
 * and can pick any address in it; an IPv4-mapped IPv6 address
 * (`"::ffff:203.0.113.7"`, as a dual-stack listener sees IPv4 peers) as its
 * IPv4 address. A zone (`%eth0`) is ignored. Anything else, which Deno
 * does not report for TCP, is its own source.
 */
export function connectionSource(hostname: string): string {
  let host = hostname;
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (!host.includes(":")) return host;
  const zone = host.indexOf("%");
  if (zone >= 0) host = host.slice(0, zone);
  const groups = parseIpv6(host);
  if (groups === null) return hostname;
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `${groups[6] >>> 8}.${groups[6] & 0xff}.${groups[7] >>> 8}.${groups[7] & 0xff}`;
  }
  // The /64 as RFC 5952 writes it: its last four groups are zero, the
  // longest run of zeros, so "::" ends it and replaces the prefix's own
  // trailing zero groups.
  const prefix = groups.slice(0, 4);
  let end = 4;
  while (end > 0 && prefix[end - 1] === 0) end--;
  const head = prefix.slice(0, end).map((g) => g.toString(16));
  return `${head.join(":")}::/64`;
}

/** The eight 16-bit groups of an IPv6 address (dotted IPv4 tail allowed), or null. */
function parseIpv6(text: string): number[] | null {
  const halves = text.split("::");
  if (halves.length > 2) return null;
  /** The groups of one side of "::"; only the address's very end may be dotted. */
  const parse = (part: string, atEnd: boolean): number[] | null => {
    if (part === "") return [];
    const out: number[] = [];
    const pieces = part.split(":");
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i];
      if (atEnd && i === pieces.length - 1 && piece.includes(".")) {
        const octets = piece.split(".");
        if (octets.length !== 4 || !octets.every((o) => /^\d{1,3}$/.test(o) && +o <= 255)) {
          return null;
        }
        out.push((+octets[0] << 8) | +octets[1], (+octets[2] << 8) | +octets[3]);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(piece)) return null;
        out.push(parseInt(piece, 16));
      }
    }
    return out;
  };
  const head = parse(halves[0], halves.length === 1);
  const tail = halves.length === 2 ? parse(halves[1], true) : [];
  if (head === null || tail === null) return null;
  if (halves.length === 1) return head.length === 8 ? head : null;
  const missing = 8 - head.length - tail.length;
  if (missing < 1) return null;
  return [...head, ...new Array<number>(missing).fill(0), ...tail];
}
