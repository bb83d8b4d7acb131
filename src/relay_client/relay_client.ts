/**
 * The client side of a relay, for gateways and edges: connect out,
 * answer the admission challenge, attach the connection to the node, and
 * (for gateways) register an alias.
 *
 * @module
 */
import { decodeCbor, encodeCbor } from "../encoding/cbor.ts";
import { RelayError } from "../errors.ts";
import type { Identity } from "../identity/identity.ts";
import type { Node } from "../routing/node.ts";
import type { Address } from "../routing/routed_message.ts";
import type { AttachedConnection, TcpTransport } from "../transport/tcp_transport.ts";
import { connectTcp } from "../transport/tcp.ts";
import { decodeChallenge, decodeVerdict, encodeAdmit } from "./admission.ts";

/** Options of {@link connectRelay}. */
export interface ConnectRelayOptions {
  /** The node's transport; the admitted connection is attached to it as a worker. */
  transport: TcpTransport;
  /** The relay's host name or IP address. */
  hostname: string;
  /** The relay's TCP port. */
  port: number;
  /** Connect with TLS, trusting `caCerts` (PEM) and checking `serverName`, as in `connectTcp`. */
  tls?: { caCerts: string[]; serverName?: string };
  /** The identity to be admitted as; its current primary key signs the challenge. */
  identity: Identity;
  /** The credential to present (the current one). */
  credential: Uint8Array;
  /** Milliseconds for connect and admission (default 10,000). */
  timeoutMs?: number;
}

/** An admitted relay connection attached to the node. */
export interface RelayConnection extends AttachedConnection {
  /** The identifier the relay admitted. */
  readonly identifier: string;
}

/**
 * Connects to a relay and passes admission.
 *
 * @example
 * ```ts ignore
 * import { connectRelay, registerAlias } from "./relay_client.ts";
 *
 * // `transport` is the node's TcpTransport; `credential` the member's current one.
 * const relay = await connectRelay({
 *   transport,
 *   hostname: "relay.example.net",
 *   port: 4000,
 *   identity,
 *   credential: credential.encoded,
 * });
 * relay.identifier; // the identifier the relay admitted
 * // A gateway then registers its alias through the connection's address:
 * await registerAlias(node, relay.address, "gw-cust-001"); // "active" or "standby"
 * ```
 *
 * @throws {RelayError} `admission_refused` (with the relay's reason),
 *   `protocol`, `timeout`; {TransportError} when the connection fails.
 */
export async function connectRelay(options: ConnectRelayOptions): Promise<RelayConnection> {
  const signal = AbortSignal.timeout(options.timeoutMs ?? 10_000);
  const conn = await connectTcp({
    hostname: options.hostname,
    port: options.port,
    tls: options.tls,
    signal,
  });
  const frames = conn.frames();
  const next = async (what: string): Promise<Uint8Array> => {
    const timer = setTimeout(
      () => conn.close(`relay ${what} timeout`),
      options.timeoutMs ?? 10_000,
    );
    try {
      const result = await frames.next();
      if (result.done) throw new RelayError("protocol", `the relay closed during ${what}`);
      return result.value.slice();
    } finally {
      clearTimeout(timer);
    }
  };
  try {
    const nonce = decodeChallenge(await next("admission"));
    await conn.send(await encodeAdmit(options.identity, options.credential, nonce));
    const verdict = decodeVerdict(await next("admission"));
    if (!verdict.admitted) {
      throw new RelayError("admission_refused", `the relay refused admission: ${verdict.code}`);
    }
    await frames.return?.(undefined);
    const attached = options.transport.attach(conn);
    return { ...attached, identifier: verdict.identifier };
  } catch (error) {
    conn.close("admission failed");
    if (error instanceof RelayError) throw error;
    throw new RelayError("protocol", "the relay's admission exchange was malformed", {
      cause: error,
    });
  }
}

/** Sends a control request to the relay behind `connection`; resolves with its answer. */
async function ask(
  node: Node,
  connection: Address,
  request: unknown[],
  what: string,
  timeoutMs: number,
): Promise<unknown[]> {
  const answer = Promise.withResolvers<unknown[]>();
  const address = node.registerRandom("relayctl", (message) => {
    try {
      const reply = decodeCbor(message.payload, { maxBytes: 1024 });
      if (!Array.isArray(reply)) throw new TypeError("not a list");
      answer.resolve(reply);
    } catch {
      answer.reject(new RelayError("protocol", "malformed answer from the relay"));
    }
  });
  const timer = setTimeout(
    () => answer.reject(new RelayError("timeout", `no answer to ${what}`)),
    timeoutMs,
  );
  try {
    await node.route({
      onward: [connection, "relay"],
      return: [address],
      payload: encodeCbor([1, ...request]),
    });
    return await answer.promise;
  } finally {
    clearTimeout(timer);
    node.unregister(address);
  }
}

/**
 * Registers `alias` at the relay behind `connection` (an address on
 * `node`). Resolves with "active" or "standby".
 * @throws {RelayError} `alias_refused`, `timeout`.
 */
export async function registerAlias(
  node: Node,
  connection: Address,
  alias: string,
  timeoutMs = 10_000,
): Promise<"active" | "standby"> {
  const reply = await ask(node, connection, ["register", alias], `registering ${alias}`, timeoutMs);
  if (reply[1] === "registered" && (reply[3] === "active" || reply[3] === "standby")) {
    return reply[3];
  }
  throw new RelayError("alias_refused", `the relay refused alias ${alias}: ${String(reply[3])}`);
}

/**
 * Presents a fresher credential to the relay behind `connection`, so the
 * connection (and every route through it) outlives the credential it was
 * admitted with. Resolves with the new expiry.
 * @throws {RelayError} `admission_refused` (with the reason), `timeout`.
 */
export async function refreshAtRelay(
  node: Node,
  connection: Address,
  credential: Uint8Array,
  timeoutMs = 10_000,
): Promise<number> {
  const reply = await ask(
    node,
    connection,
    ["refresh", credential],
    "a credential refresh",
    timeoutMs,
  );
  if (reply[1] === "refreshed" && typeof reply[2] === "number") return reply[2];
  throw new RelayError("admission_refused", `the relay refused the refresh: ${String(reply[3])}`);
}

/**
 * Asks the relay behind `connection` whether a gateway holds `alias` there
 * now. Resolves with true or false.
 * @throws {RelayError} `protocol` (a relay that does not know the
 *   question answers nothing: `timeout`).
 */
export async function lookupAlias(
  node: Node,
  connection: Address,
  alias: string,
  timeoutMs = 5_000,
): Promise<boolean> {
  const reply = await ask(node, connection, ["lookup", alias], `looking up ${alias}`, timeoutMs);
  if (reply[1] === "alias" && typeof reply[3] === "boolean") return reply[3];
  throw new RelayError("protocol", "malformed answer to a lookup");
}
