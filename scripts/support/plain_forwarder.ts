/**
 * A plain TCP forwarder: what Deno itself costs for a hop, with no
 * encryption and no framing. `deno task bench:compare` chains three of
 * them (its `deno` path: client → forwarder 1 → forwarder 2 → forwarder 3
 * → backend) to show the runtime's own floor next to the stunnel chain and
 * the system's paths.
 *
 * Each accepted connection gets one connection to the target; TCP_NODELAY
 * is set on both. Each direction has one 64 KiB buffer, reused: read into
 * it, write the filled part (awaited, so a slow reader holds the writer
 * back), read again. The end of one direction is passed on as a half-close
 * (`closeWrite`); a failure on either socket (a reset) closes both.
 *
 * As a process, it forwards each `--listen PORT` to the `--target
 * HOST:PORT` given after it (the pair may be repeated: one process, as one
 * hop, for several backends; `--listen 0` takes any free port) and prints
 * `listening <port>` on stdout for each listener, in the order given, once
 * it is ready. SIGTERM or SIGINT closes the listeners and the connections,
 * and it exits 0.
 *
 * Usage: plain_forwarder.ts --listen PORT --target HOST:PORT
 *          [--listen PORT --target HOST:PORT]…
 *
 * Permissions: --allow-net for the listening address and the targets
 * (`--allow-net=127.0.0.1` on the loopback). Nothing else.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { parseHostPort } from "../../src/config/mod.ts";

/** Bytes of each direction's buffer. */
export const FORWARD_BUFFER_BYTES: number = 64 * 1024;

/** Where a forwarder listens, and where it forwards to. */
export interface ForwarderAddress {
  /** The port it listens on (0: any free port; {@link ForwarderOptions.onListen} tells which). */
  listenPort: number;
  /** The address it listens on (default 127.0.0.1). */
  listenHost?: string;
  /** The host every accepted connection is forwarded to. */
  targetHost: string;
  /** The port every accepted connection is forwarded to. */
  targetPort: number;
}

/** Options of {@link runForwarder}. */
export interface ForwarderOptions {
  /** Aborting it closes the listener and every connection; the forwarder then resolves. */
  signal?: AbortSignal;
  /** Called once it listens, with the address (the port chosen for a `listenPort` of 0). */
  onListen?: (address: Deno.NetAddr) => void;
}

/** Closes `conn`, which may be closed already. */
function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* closed already */ }
}

/**
 * Copies `from` to `to` through one buffer until `from` ends, then
 * half-closes `to`; on a failure, `fail` closes both connections.
 */
async function pipe(from: Deno.Conn, to: Deno.Conn, fail: () => void): Promise<void> {
  const buffer = new Uint8Array(FORWARD_BUFFER_BYTES);
  try {
    for (;;) {
      const n = await from.read(buffer);
      if (n === null) break;
      let written = 0;
      while (written < n) written += await to.write(buffer.subarray(written, n));
    }
    await to.closeWrite();
  } catch {
    fail();
  }
}

/** One accepted connection, forwarded to the target until both directions have ended. */
async function forward(
  client: Deno.TcpConn,
  address: ForwarderAddress,
  open: Set<Deno.Conn>,
): Promise<void> {
  client.setNoDelay(true);
  let server: Deno.TcpConn;
  try {
    server = await Deno.connect({ hostname: address.targetHost, port: address.targetPort });
  } catch {
    close(client);
    open.delete(client);
    return;
  }
  open.add(server);
  const both = () => {
    close(client);
    close(server);
  };
  try {
    server.setNoDelay(true);
    await Promise.all([pipe(client, server, both), pipe(server, client, both)]);
  } finally {
    both();
    open.delete(client);
    open.delete(server);
  }
}

/**
 * Listens on `address.listenHost` (127.0.0.1 unless given) and
 * `address.listenPort`, and forwards every connection to
 * `address.targetHost`:`address.targetPort`, bytes as they come, until
 * `options.signal` aborts; then resolves once every connection is closed.
 *
 * @example
 * ```ts
 * import { runForwarder } from "./plain_forwarder.ts";
 * const controller = new AbortController();
 * const running = runForwarder(
 *   { listenPort: 0, targetHost: "127.0.0.1", targetPort: 6379 },
 *   { signal: controller.signal, onListen: (addr) => console.log(`listening ${addr.port}`) },
 * );
 * controller.abort();
 * await running;
 * ```
 * @throws {Deno.errors.AddrInUse} (and the like) when it cannot listen.
 */
export async function runForwarder(
  address: ForwarderAddress,
  options: ForwarderOptions = {},
): Promise<void> {
  const { signal, onListen } = options;
  if (signal?.aborted) return;
  const listener = Deno.listen({
    hostname: address.listenHost ?? "127.0.0.1",
    port: address.listenPort,
  });
  const open = new Set<Deno.Conn>();
  const sessions = new Set<Promise<void>>();
  const stop = () => {
    try {
      listener.close();
    } catch { /* closed already */ }
    for (const conn of open) close(conn);
  };
  signal?.addEventListener("abort", stop, { once: true });
  try {
    onListen?.(listener.addr);
    for await (const conn of listener) {
      if (signal?.aborted) {
        close(conn);
        break;
      }
      open.add(conn);
      const session = forward(conn, address, open);
      sessions.add(session);
      session.finally(() => sessions.delete(session));
    }
  } catch (error) {
    if (!signal?.aborted) throw error;
  } finally {
    signal?.removeEventListener("abort", stop);
    stop();
    await Promise.all(sessions);
  }
}

const USAGE =
  `Usage: plain_forwarder.ts --listen PORT --target HOST:PORT [--listen PORT --target HOST:PORT]…

A plain TCP forwarder (no encryption, no framing): each --listen PORT on 127.0.0.1 (0: any free
port) is forwarded to the --target HOST:PORT that follows it. Prints "listening <port>" for each,
in order, once ready; SIGTERM or SIGINT stops it.

  --listen PORT         the port to listen on, on 127.0.0.1
  --target HOST:PORT    where that port's connections go
  --help                this text`;

/** The `--listen`/`--target` pairs of the command line. */
function parsePairs(args: string[]): ForwarderAddress[] | "help" {
  const { values } = parseArgs({
    args,
    options: {
      listen: { type: "string", multiple: true, default: [] },
      target: { type: "string", multiple: true, default: [] },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return "help";
  const { listen, target } = values;
  if (listen.length === 0 || listen.length !== target.length) {
    throw new TypeError("wants one --target HOST:PORT after each --listen PORT");
  }
  return listen.map((port, i) => {
    const listenPort = Number(port);
    if (!/^\d{1,5}$/.test(port) || listenPort > 65535) {
      throw new TypeError(`--listen: expected a port (0 to 65535), got ${port}`);
    }
    const { hostname, port: targetPort } = parseHostPort(target[i], "--target");
    if (targetPort === 0) throw new TypeError(`--target: port 0 in ${target[i]}`);
    return { listenPort, targetHost: hostname, targetPort };
  });
}

if (import.meta.main) {
  let pairs: ForwarderAddress[] | "help";
  try {
    pairs = parsePairs(Deno.args);
  } catch (error) {
    console.error(`plain_forwarder: ${(error as Error).message}\n${USAGE}`);
    Deno.exit(2);
  }
  if (pairs === "help") {
    console.log(USAGE);
    Deno.exit(0);
  }
  const controller = new AbortController();
  const stop = () => controller.abort();
  const signals: Deno.Signal[] = ["SIGTERM", "SIGINT"];
  for (const name of signals) Deno.addSignalListener(name, stop);
  const running = pairs.map((pair) =>
    runForwarder(pair, {
      signal: controller.signal,
      onListen: (addr) => console.log(`listening ${addr.port}`),
    }).catch((error) => {
      console.error(`plain_forwarder: port ${pair.listenPort}: ${(error as Error).message}`);
      Deno.exitCode = 1;
      controller.abort();
    })
  );
  await Promise.all(running);
  for (const name of signals) Deno.removeSignalListener(name, stop);
}
