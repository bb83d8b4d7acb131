/**
 * The operations endpoint of a service: `GET /metrics` (Prometheus),
 * `GET /healthz` (the process works) and `GET /readyz` (it can serve:
 * e.g. a gateway registered at a relay), and optionally `GET /status`
 * (the service's state as JSON, for its `status` command). Bind it to loopback unless a
 * scraper elsewhere needs it.
 *
 * @module
 */
import { ConfigError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "./metrics.ts";

/** Options of {@link startOpsServer}. */
export interface OpsServerOptions {
  /** The address to bind; keep it on loopback (`127.0.0.1`) unless a scraper elsewhere needs it. */
  hostname: string;
  /** The TCP port; 0 picks a free one (see {@link OpsServer.addr}). */
  port: number;
  /** The metrics rendered at `GET /metrics`. */
  metrics: Metrics;
  /** Readiness; default: always ready. */
  ready?: () => boolean;
  /** When given, `GET /status` answers with this value as JSON. */
  status?: () => unknown;
  /** Where the listening address is logged; default: not logged. */
  logger?: Logger;
}

/** A running endpoint. */
export interface OpsServer {
  /** The bound address (with the real port when `port` was 0). */
  readonly addr: Deno.NetAddr;
  /** Stops accepting and resolves once requests in flight have been answered. */
  close(): Promise<void>;
}

/**
 * Starts the endpoint. Only `GET` is served (anything else is 405); unknown
 * paths are 404.
 *
 * @example
 * ```ts
 * import { Metrics } from "./metrics.ts";
 * import { startOpsServer } from "./ops_server.ts";
 *
 * let ready = false;
 * const server = startOpsServer({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   metrics: new Metrics(),
 *   ready: () => ready,
 * });
 * const base = `http://127.0.0.1:${server.addr.port}`;
 * const notReady = await fetch(`${base}/readyz`);
 * notReady.status; // 503
 * await notReady.text(); // "not ready\n"
 * ready = true;
 * const response = await fetch(`${base}/readyz`);
 * await response.text(); // "ready\n"
 * await server.close();
 * ```
 */
export function startOpsServer(options: OpsServerOptions): OpsServer {
  try {
    return serve(options);
  } catch (error) {
    // The operator must learn which address: Deno's message names none.
    if (error instanceof Deno.errors.AddrInUse) {
      throw new ConfigError(
        "invalid",
        `the operations address ${options.hostname}:${options.port} is in use`,
        {},
        { cause: error },
      );
    }
    throw error;
  }
}

function serve(options: OpsServerOptions): OpsServer {
  const server = Deno.serve({
    hostname: options.hostname,
    port: options.port,
    onListen: () => {},
    handler: (request) => {
      const path = new URL(request.url).pathname;
      if (request.method !== "GET") return new Response("method not allowed\n", { status: 405 });
      if (path === "/metrics") {
        return new Response(options.metrics.render(), {
          headers: { "content-type": "text/plain; version=0.0.4" },
        });
      }
      if (path === "/healthz") return new Response("ok\n");
      if (path === "/readyz") {
        const ready = options.ready?.() ?? true;
        return new Response(ready ? "ready\n" : "not ready\n", { status: ready ? 200 : 503 });
      }
      if (path === "/status" && options.status !== undefined) {
        return new Response(JSON.stringify(options.status()) + "\n", {
          headers: { "content-type": "application/json" },
        });
      }
      return new Response("not found\n", { status: 404 });
    },
  });
  options.logger?.info("operations endpoint listening", {
    address: `${server.addr.hostname}:${server.addr.port}`,
  });
  return { addr: server.addr as Deno.NetAddr, close: () => server.shutdown() };
}
