/**
 * Operations: metrics and the health/readiness endpoint.
 *
 * @module
 */
export { type Labels, Metrics } from "./metrics.ts";
export { type OpsServer, type OpsServerOptions, startOpsServer } from "./ops_server.ts";
