/**
 * The local stack's three demo backends (`scripts/stack.ts`): tiny HTTP
 * servers standing in for the orchestrator, inference and context services:
 * the orchestrator behind the service agent's outlet (end to end: requests
 * are decrypted only at the agent, next to it), inference and context
 * behind the gateway's own outlets. Each answers every request with one
 * JSON line naming itself and saying whether the request carried the
 * license header and with which license id (public: the hex SHA-256 of the
 * key, as the authority names the license), and whether anything in the
 * request looks like a license key (it never should: the edge sends the id):
 *
 *   {"service":"orchestrator","backend":"127.0.0.1:18000","method":"GET","path":"/",
 *    "license":"present","licenseId":"3f…","licenseKey":"absent"}
 *
 * @module
 */

/** A demo backend to start. */
export interface DemoBackend {
  /** The outlet it stands behind (the service agent's for the orchestrator, else the gateway's). */
  readonly service: string;
  readonly port: number;
}

/** The backends of the local stack (fixed loopback ports). */
export const DEMO_BACKENDS: readonly DemoBackend[] = [
  { service: "orchestrator", port: 18000 },
  { service: "inference", port: 18801 },
  { service: "context", port: 18151 },
];

/** The header the backends report (the edge's default): the license's id. */
export const LICENSE_HEADER = "X-License-Id";

/** A license key (docs/protocol.md §18.6), wherever it would appear in a request. */
const LICENSE_KEY = /nxl_[A-Za-z0-9_-]{32}/;
/** A license id: 64 lowercase hex digits. */
const LICENSE_ID = /^[0-9a-f]{64}$/;

/** Running demo backends. */
export interface RunningBackends {
  /** How many requests each service answered. */
  readonly requests: Record<string, number>;
  close(): Promise<void>;
}

/** The answer for one request (exported for tests). */
export function describeRequest(backend: DemoBackend, request: Request): Record<string, string> {
  const id = request.headers.get(LICENSE_HEADER);
  const head = [request.method, request.url, ...[...request.headers].flat()].join("\n");
  return {
    service: backend.service,
    backend: `127.0.0.1:${backend.port}`,
    method: request.method,
    path: new URL(request.url).pathname,
    license: id === null ? "absent" : "present",
    // Echoed only when it is an id: whatever else came in that header is not.
    ...(id === null ? {} : { licenseId: LICENSE_ID.test(id) ? id : "(not a license id)" }),
    licenseKey: LICENSE_KEY.test(head) ? "present" : "absent",
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
