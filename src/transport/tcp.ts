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
 * descriptor limits, a firewall's per-source connection limit).
 *
 * @module
 */
import { TransportError } from "../errors.ts";
import {
  checkBufferBytes,
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
   * keeps accepting). Default: ignored. Must not throw.
   */
  onError?(error: Error): void;
  /** Time allowed for an incoming TLS handshake; default 10 s. */
  handshakeTimeoutMs?: number;
  /** Connections beyond this many open ones are closed on accept; default unlimited. */
  maxConnections?: number;
  /** Size of each connection's read buffer; default 64 KiB. */
  readBufferBytes?: number;
  /** Size of each connection's write buffer; default 64 KiB. */
  writeBufferBytes?: number;
}

/** A listening socket that hands out framed connections. */
export interface FramedListener {
  /** The bound address (with the real port when `port` was 0). */
  readonly addr: Deno.NetAddr;
  /** Open connections accepted by this listener. */
  connections(): number;
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
 *   onConnection: async (conn) => {
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
        continue;
      }
      const task = this.#setUp(conn);
      this.#tasks.add(task);
      task.finally(() => this.#tasks.delete(task));
    }
  }

  /** Handshakes (TLS), wraps and hands over one accepted conn; never rejects. */
  async #setUp(conn: Deno.Conn): Promise<void> {
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
        return;
      } finally {
        clearTimeout(timer);
        this.#handshaking.delete(conn);
      }
      if (this.#closing) {
        closeQuietly(conn);
        return;
      }
    } else {
      setNoDelay(conn as Deno.TcpConn);
    }
    let connection: SocketConnection;
    try {
      connection = new SocketConnection(conn, this.#connectionOptions);
    } catch (error) {
      closeQuietly(conn);
      this.#report(error);
      return;
    }
    this.#open.add(connection);
    connection.closed.then(() => this.#open.delete(connection));
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
  options: { maxFrameBytes?: number; readBufferBytes?: number; writeBufferBytes?: number },
): SocketConnectionOptions {
  return {
    transport,
    maxFrameBytes: checkMaxFrameBytes(options.maxFrameBytes ?? MAX_FRAME_BYTES),
    readBufferBytes: checkBufferBytes(
      "readBufferBytes",
      options.readBufferBytes ?? IO_BUFFER_BYTES,
    ),
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
