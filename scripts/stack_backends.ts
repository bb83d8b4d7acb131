/**
 * The local stack's three demo backends (`scripts/stack.ts`): tiny HTTP
 * servers standing in for the orchestrator, inference and context services
 * behind the gateway's outlets. Each answers every request with one JSON
 * line naming itself and saying whether the request carried a license
 * header, never the header's value:
 *
 *   {"service":"context","backend":"127.0.0.1:18151","method":"GET","path":"/","license":"present"}
 *
 * @module
 */

/** A demo backend to start. */
export interface DemoBackend {
  /** The gateway outlet it stands behind. */
  readonly service: string;
  readonly port: number;
}

/** The backends of the local stack (fixed loopback ports). */
export const DEMO_BACKENDS: readonly DemoBackend[] = [
  { service: "orchestrator", port: 18000 },
  { service: "inference", port: 18801 },
  { service: "context", port: 18151 },
];

/** The header whose presence the backends report (the edge's default). */
export const LICENSE_HEADER = "X-License-Key";

/** Running demo backends. */
export interface RunningBackends {
  /** How many requests each service answered. */
  readonly requests: Record<string, number>;
  close(): Promise<void>;
}

/** The answer for one request (exported for tests). */
export function describeRequest(backend: DemoBackend, request: Request): Record<string, string> {
  return {
    service: backend.service,
    backend: `127.0.0.1:${backend.port}`,
    method: request.method,
    path: new URL(request.url).pathname,
    license: request.headers.has(LICENSE_HEADER) ? "present" : "absent",
  };
}

/**
 * Starts the backends on 127.0.0.1.
 * @throws {Deno.errors.AddrInUse} when a port is taken (the others are closed).
 */
export function startDemoBackends(
  backends: readonly DemoBackend[] = DEMO_BACKENDS,
): RunningBackends {
  const requests: Record<string, number> = {};
  const servers: Deno.HttpServer[] = [];
  try {
    for (const backend of backends) {
      requests[backend.service] = 0;
      servers.push(Deno.serve(
        { hostname: "127.0.0.1", port: backend.port, onListen() {} },
        async (request) => {
          requests[backend.service]++;
          // Read (and drop) any body, so clients that send one get an answer.
          await request.body?.cancel().catch(() => {});
          return new Response(JSON.stringify(describeRequest(backend, request)) + "\n", {
            headers: { "content-type": "application/json" },
          });
        },
      ));
    }
  } catch (error) {
    for (const server of servers) void server.shutdown();
    throw error;
  }
  return {
    requests,
    async close() {
      await Promise.all(servers.map((server) => server.shutdown().catch(() => {})));
    },
  };
}
