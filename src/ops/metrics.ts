/**
 * A minimal Prometheus text exposition (format 0.0.4): counters and gauges
 * whose values are read when scraped, so hot paths only bump plain numbers.
 *
 * @module
 */

/** Label names to values. */
export type Labels = Readonly<Record<string, string>>;

interface Family {
  type: "counter" | "gauge";
  help: string;
  read: () => Iterable<[Labels, number]>;
}

function escape(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

/**
 * A set of metric families rendered together.
 *
 * @example
 * ```ts
 * import { Metrics } from "./metrics.ts";
 *
 * let accepted = 0; // a hot path bumps a plain number
 * const metrics = new Metrics();
 * metrics.register(
 *   "nexus_example_accepted_total",
 *   "counter",
 *   "Connections accepted.",
 *   () => accepted,
 * );
 * metrics.register(
 *   "nexus_example_open",
 *   "gauge",
 *   "Open connections, by transport.",
 *   () => [[{ transport: "tcp" }, 2], [{ transport: "tls" }, 1]],
 * );
 * accepted++;
 * metrics.render();
 * // # HELP nexus_example_accepted_total Connections accepted.
 * // # TYPE nexus_example_accepted_total counter
 * // nexus_example_accepted_total 1
 * // # HELP nexus_example_open Open connections, by transport.
 * // # TYPE nexus_example_open gauge
 * // nexus_example_open{transport="tcp"} 2
 * // nexus_example_open{transport="tls"} 1
 * ```
 */
export class Metrics {
  #families = new Map<string, Family>();

  /**
   * Registers a family whose samples `read` returns at scrape time.
   * @throws {TypeError} for an invalid or repeated name.
   */
  register(
    name: string,
    type: "counter" | "gauge",
    help: string,
    read: () => number | Iterable<[Labels, number]>,
  ): void {
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name)) throw new TypeError(`bad metric name ${name}`);
    if (this.#families.has(name)) throw new TypeError(`metric ${name} is registered twice`);
    this.#families.set(name, {
      type,
      help,
      read: () => {
        const value = read();
        return typeof value === "number" ? [[{}, value]] : value;
      },
    });
  }

  /** The exposition text. */
  render(): string {
    const lines: string[] = [];
    for (const [name, family] of this.#families) {
      lines.push(`# HELP ${name} ${family.help}`, `# TYPE ${name} ${family.type}`);
      for (const [labels, value] of family.read()) {
        const entries = Object.entries(labels);
        const text = entries.length === 0
          ? ""
          : `{${entries.map(([k, v]) => `${k}="${escape(v)}"`).join(",")}}`;
        lines.push(`${name}${text} ${Number.isFinite(value) ? value : 0}`);
      }
    }
    return lines.join("\n") + "\n";
  }
}
