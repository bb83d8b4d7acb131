/**
 * A node hosts workers at addresses and delivers routed messages to them
 * (docs/design.md §5). Delivery awaits the worker, so a slow worker slows the
 * connection that feeds it instead of queueing without bound; a worker that
 * throws is logged and the message dropped, never the node.
 *
 * @module
 */
import { type Logger, silentLogger } from "../log.ts";
import { toHex } from "../encoding/hex.ts";
import {
  type Address,
  isAddress,
  type LocalInfo,
  type Route,
  type RoutedMessage,
} from "./routed_message.ts";

/**
 * What a worker does with a message delivered to its address. The payload
 * may be a view into a transport's read buffer: it is valid until the
 * returned promise settles, so a worker that keeps it must copy it. (A
 * secure channel's plaintext is the worker's to keep, unless the worker
 * takes its `local.lease` and releases it: routed_message.ts.)
 */
export type MessageHandler = (message: RoutedMessage) => void | Promise<void>;

/** Options for {@link Node}. */
export interface NodeOptions {
  /** For logs. */
  name?: string;
  /** Where the node logs dropped messages and failing workers; default silent. */
  logger?: Logger;
}

/**
 * A set of workers addressed by name.
 *
 * @example
 * ```ts
 * import { Node } from "./node.ts";
 *
 * const node = new Node({ name: "example" });
 * // A worker that answers along the message's return route.
 * node.register("echo", async (message) => {
 *   await node.send(message.return, message.payload);
 * });
 * const inbox: string[] = [];
 * node.register("inbox", (message) => {
 *   inbox.push(new TextDecoder().decode(message.payload)); // decoded before the handler returns
 * });
 *
 * await node.send(["echo"], new TextEncoder().encode("hi"), ["inbox"]); // true
 * inbox; // ["hi"]
 * await node.send(["nobody"], new Uint8Array(0)); // false: dropped
 * node.dropped; // 1
 * ```
 */
export class Node {
  /** The node's name, for logs (default `"node"`). */
  readonly name: string;
  /** The node's logger; transports attached to it log here by default. */
  readonly logger: Logger;
  #workers = new Map<Address, MessageHandler>();
  #dropped = 0;

  /** A node with no workers yet. */
  constructor(options: NodeOptions = {}) {
    this.name = options.name ?? "node";
    this.logger = options.logger ?? silentLogger;
  }

  /**
   * Registers `handler` at `address`.
   * @throws {TypeError} for an invalid or taken address.
   */
  register(address: Address, handler: MessageHandler): void {
    if (!isAddress(address)) throw new TypeError(`invalid address ${JSON.stringify(address)}`);
    if (this.#workers.has(address)) throw new TypeError(`address ${address} is taken`);
    this.#workers.set(address, handler);
  }

  /** A random address `prefix.<16 hex>` that no worker holds now. */
  freshAddress(prefix: string): Address {
    for (;;) {
      const address = `${prefix}.${toHex(crypto.getRandomValues(new Uint8Array(8)))}`;
      if (!this.#workers.has(address)) return address;
    }
  }

  /** Registers `handler` at a fresh random address `prefix.<16 hex>` and returns it. */
  registerRandom(prefix: string, handler: MessageHandler): Address {
    const address = this.freshAddress(prefix);
    this.register(address, handler);
    return address;
  }

  /** Removes the worker at `address`, if any. */
  unregister(address: Address): void {
    this.#workers.delete(address);
  }

  /** True when a worker is registered at `address`. */
  has(address: Address): boolean {
    return this.#workers.has(address);
  }

  /** Messages dropped because no worker had their address or the worker threw. */
  get dropped(): number {
    return this.#dropped;
  }

  /**
   * Delivers `message` to the worker at its first onward address and waits
   * for it. Returns false when the message was dropped.
   */
  async route(message: RoutedMessage): Promise<boolean> {
    const address = message.onward[0];
    const handler = address === undefined ? undefined : this.#workers.get(address);
    if (handler === undefined) {
      this.#dropped++;
      this.logger.debug("dropped a message for an unknown address", {
        address: address ?? "(none)",
      });
      return false;
    }
    try {
      await handler(message);
      return true;
    } catch (error) {
      this.#dropped++;
      this.logger.warn("worker failed on a message", {
        address,
        error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
      });
      return false;
    }
  }

  /** Sends `payload` along `onward` with `returnRoute` (a convenience over {@link route}). */
  send(
    onward: Route,
    payload: Uint8Array,
    returnRoute: Route = [],
    local?: LocalInfo,
  ): Promise<boolean> {
    return this.route({ onward, return: returnRoute, payload, local });
  }
}
