/**
 * Support code shared by the scripts (the local stack, the benchmarks) and
 * the tests: starting `deno run` children and reading their output, the
 * services' banner line, free ports, a process's memory and CPU time, a
 * portal deployment in processes, and the whole system deployed for the
 * benchmarks.
 *
 * - {@link ./service_process.ts}: {@link spawnDeno}, {@link ServiceProcess}
 *   (stop, end, kill, freeze, waitFor).
 * - {@link ./lines.ts}: {@link Lines}, {@link lineReader}, {@link LineStream}.
 * - {@link ./banner.ts}: {@link readBanner}, {@link parseBanner}.
 * - {@link ./free_port.ts}: {@link freePort}.
 * - {@link ./process_usage.ts}: {@link memoryOf}, {@link cpuSeconds}.
 * - {@link ./portal_harness.ts}: {@link writeDeploymentFiles},
 *   {@link startRelay}, {@link startPeer}.
 * - {@link ./deadline.ts}: {@link deadline}, {@link settlesWithin}.
 * - {@link ./load.ts}: the benchmarks' clients ({@link throughput},
 *   {@link readFull}) and statistics ({@link quantile}, {@link median}).
 * - {@link ./deployment.ts}: {@link deploy} (authority, relay, service
 *   agent, gateway and edge, each its own process), {@link checkHealth}.
 *
 * Child scripts, run as their own processes (not exported here):
 * ./channel_peer.ts (a secure channel responder), ./portal_peer.ts (a
 * portal gateway or edge) and ./plain_forwarder.ts (a plain TCP forwarder,
 * the hops of bench:compare's Deno path).
 *
 * scripts/stack.ts runs under the narrow `stack` permission set: it
 * imports ./service_process.ts alone, not this module.
 *
 * @module
 */
export * from "./banner.ts";
export * from "./deadline.ts";
export * from "./load.ts";
export * from "./deployment.ts";
export * from "./free_port.ts";
export * from "./lines.ts";
export * from "./portal_harness.ts";
export * from "./process_usage.ts";
export * from "./relay_state.ts";
export * from "./service_process.ts";
