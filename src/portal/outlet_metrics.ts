/**
 * An outlet's counters as Prometheus metrics, one series per outlet: the
 * same names wherever outlets run (the gateway, a service agent), under
 * the executable's prefix.
 *
 * @module
 */
import type { Metrics } from "../ops/metrics.ts";
import type { Outlet } from "./portal.ts";

/**
 * Registers `<prefix>_sessions`, `_sessions_total`, `_policy_denials_total`,
 * `_backend_refused_total`, `_session_failures_total`, `_bytes_in_total` and
 * `_bytes_out_total`, labelled by outlet.
 *
 * @example
 * ```ts ignore
 * registerOutletMetrics(metrics, "nexus_agent", [{ name: "orchestrator", outlet }]);
 * ```
 */
export function registerOutletMetrics(
  metrics: Metrics,
  prefix: string,
  outlets: readonly { name: string; outlet: Outlet }[],
): void {
  const perOutlet = (pick: (o: Outlet) => number) => () =>
    outlets.map(({ name, outlet }) =>
      [{ outlet: name }, pick(outlet)] as [{ outlet: string }, number]
    );
  const series: [string, "gauge" | "counter", string, (o: Outlet) => number][] = [
    ["sessions", "gauge", "Open portal sessions.", (o) => o.stats.open],
    ["sessions_total", "counter", "Portal sessions opened.", (o) => o.stats.sessions],
    ["policy_denials_total", "counter", "Sessions denied by policy.", (o) => o.stats.denied],
    [
      "backend_refused_total",
      "counter",
      "Sessions whose backend was unreachable.",
      (o) => o.stats.refused,
    ],
    [
      "session_failures_total",
      "counter",
      "Sessions ended by an error (a reset, lost messages, a socket error).",
      (o) => o.stats.failed,
    ],
    ["bytes_in_total", "counter", "Bytes from edges to backends.", (o) => o.stats.bytesIn],
    ["bytes_out_total", "counter", "Bytes from backends to edges.", (o) => o.stats.bytesOut],
  ];
  for (const [name, type, help, pick] of series) {
    metrics.register(`${prefix}_${name}`, type, help, perOutlet(pick));
  }
}
