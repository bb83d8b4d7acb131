/**
 * The operations endpoint of a service: `GET /metrics` (Prometheus),
 * `GET /healthz` (the process works) and `GET /readyz` (it can serve:
 * e.g. a gateway registered at a relay), and optionally `GET /status`
 * (the service's state as JSON, for its `status` command). Bind it to loopback unless a
 * scraper elsewhere needs it.
 *
 * @module
 */
import type { Logger } from "../log.ts";
import type { Metrics } from "./metrics.ts";

/** Options of {@link startOpsServer}. */
export interface OpsServerOptions {
  hostname: string;
  port: number;
  metrics: Metrics;
  /** Readiness; default: always ready. */
  ready?: () => boolean;
  /** When given, `GET /status` answers with this value as JSON. */
  status?: () => unknown;
  logger?: Logger;
}

/** A running endpoint. */
export interface OpsServer {
  readonly addr: Deno.NetAddr;
  close(): Promise<void>;
}

/** Starts the endpoint. */
export function startOpsServer(options: OpsServerOptions): OpsServer {
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
