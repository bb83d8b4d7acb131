/**
 * Connects a {@link Node} to framed TCP/TLS connections (src/transport/).
 *
 * Each connection is a worker at `tcp.<hex>` on its node. A message routed
 * to that address leaves with the address popped from its onward route;
 * a frame arriving on the connection is delivered with the connection's
 * address pushed onto its return route, so replies find their way back
 * (docs/design.md §5). The reader awaits each delivery before reading the next
 * frame: a slow worker slows the sender through TCP instead of queueing.
 *
 * @module
 */
import type { Logger } from "../log.ts";
import type { FramedConnection } from "./connection.ts";
import {
  connectTcp,
  type ConnectTcpOptions,
  type FramedListener,
  listenTcp,
  type ListenTcpOptions,
} from "./tcp.ts";
import type { Node } from "../routing/node.ts";
import {
  type Address,
  decodeRoutedMessage,
  encodeRoutedHeader,
} from "../routing/routed_message.ts";

/** A connection attached to a node. */
export interface AttachedConnection {
  /** The connection's worker address on the node. */
  readonly address: Address;
  /** The connection itself. */
  readonly connection: FramedConnection;
}

/** Options for {@link TcpTransport}. */
export interface TcpTransportOptions {
  /** Where the transport logs malformed messages and closes; default the node's logger. */
  logger?: Logger;
  /** Called when a connection is attached (accepted or connected). */
  onConnection?: (attached: AttachedConnection) => void;
}

/**
 * The TCP (and TLS) transport of one node.
 *
 * @example
 * ```ts
 * import { TcpTransport } from "./tcp_transport.ts";
 * import { Node } from "../routing/node.ts";
 *
 * // A server node with an echo worker, listening on loopback.
 * const server = new Node({ name: "server" });
 * server.register("echo", async (message) => {
 *   await server.send(message.return, message.payload);
 * });
 * const serverTransport = new TcpTransport(server);
 * const listener = serverTransport.listen({ hostname: "127.0.0.1", port: 0 });
 *
 * // A client node: its connection is a worker at `tcp.<hex>`.
 * const client = new Node({ name: "client" });
 * const reply = Promise.withResolvers<string>();
 * client.register("inbox", (message) => reply.resolve(new TextDecoder().decode(message.payload)));
 * const clientTransport = new TcpTransport(client);
 * const { address } = await clientTransport.connect({
 *   hostname: "127.0.0.1",
 *   port: listener.addr.port,
 * });
 * await client.send([address, "echo"], new TextEncoder().encode("ping"), ["inbox"]);
 * await reply.promise; // "ping"
 *
 * await clientTransport.close();
 * await serverTransport.close();
 * ```
 */
export class TcpTransport {
  #node: Node;
  #logger: Logger;
  #onConnection?: (attached: AttachedConnection) => void;
  #listeners = new Set<FramedListener>();
  #connections = new Map<Address, FramedConnection>();

  /** A transport for `node`; it opens nothing until `connect` or `listen`. */
  constructor(node: Node, options: TcpTransportOptions = {}) {
    this.#node = node;
    this.#logger = options.logger ?? node.logger;
    this.#onConnection = options.onConnection;
  }

  /** Connects out and returns the connection's worker address. */
  async connect(options: ConnectTcpOptions): Promise<AttachedConnection> {
    return this.attach(await connectTcp(options));
  }

  /**
   * Listens; every accepted connection becomes a worker. The options are
   * {@link listenTcp}'s, among them the limits on what unauthenticated
   * peers can make the node hold: `maxConnections`,
   * `maxConnectionsPerSource` (default unlimited), and
   * `maxReceiveFrameBytes` (default `maxFrameBytes`), the frame limit each
   * accepted connection starts with. The transport itself never raises
   * that limit: whatever authenticates the peer does, on the connection
   * ({@link FramedConnection.setMaxReceiveFrameBytes}), which
   * {@link TcpTransportOptions.onConnection} and {@link connections} hand
   * out. Until then a routed message larger than the limit closes the
   * connection, `oversized`.
   */
  listen(options: Omit<ListenTcpOptions, "onConnection">): FramedListener {
    const listener = listenTcp({
      ...options,
      onConnection: (connection) => void this.attach(connection),
    });
    this.#listeners.add(listener);
    return listener;
  }

  /** Open connections, by worker address. */
  connections(): ReadonlyMap<Address, FramedConnection> {
    return this.#connections;
  }

  /** Makes `connection` a worker on the node and starts reading it. */
  attach(connection: FramedConnection): AttachedConnection {
    const node = this.#node;
    const address = node.registerRandom("tcp", async (message) => {
      // A message for a connection that has closed is lost with it, as on
      // any network; the close itself was logged once, not each message.
      if (connection.isClosed) return;
      try {
        // The routes in a small header, the payload (a record, say) written
        // from where it is: no copy of it into a frame.
        await connection.send(
          encodeRoutedHeader(message.onward.slice(1), message.return),
          message.payload,
        );
      } catch (error) {
        if (connection.isClosed) return;
        throw error;
      }
    });
    this.#connections.set(address, connection);
    const remote = `${connection.remoteAddr.hostname}:${connection.remoteAddr.port}`;
    const local = { connection: { id: connection.id, remote } };
    (async () => {
      try {
        for await (const frame of connection.frames()) {
          let message;
          try {
            message = decodeRoutedMessage(frame);
          } catch (error) {
            // A malformed message closes this connection only.
            this.#logger.warn("malformed message; closing the connection", {
              remote,
              error: error instanceof Error ? error.message : String(error),
            });
            connection.close("malformed message");
            return;
          }
          await node.route({
            onward: message.onward,
            return: [address, ...message.return],
            payload: message.payload,
            local,
          });
        }
      } catch (error) {
        this.#logger.debug("connection reader ended", {
          remote,
          error: error instanceof Error ? error.message : String(error),
        });
      }
    })();
    connection.closed.then((info) => {
      node.unregister(address);
      this.#connections.delete(address);
      this.#logger.debug("connection closed", { remote, reason: info.reason });
    });
    const attached = { address, connection };
    this.#onConnection?.(attached);
    return attached;
  }

  /** Closes every listener and connection. */
  async close(): Promise<void> {
    await Promise.all([...this.#listeners].map((listener) => listener.close()));
    for (const connection of this.#connections.values()) connection.close("transport closed");
  }
}
