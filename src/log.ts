/**
 * Structured logs for operators: one line per event, human-readable by
 * default, JSON on request (`--log-json`). Fields are data, never key
 * material: callers pass identifiers, addresses, counts and reasons.
 *
 * @module
 */

/** Severity, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Extra structured fields of one event. */
export type LogFields = Record<string, string | number | boolean | null | undefined>;

/** A logger bound to a component name. */
export interface Logger {
  /** Detail for debugging; not written at the default level. */
  debug(message: string, fields?: LogFields): void;
  /** A normal event an operator may want to see (a channel opened, a credential refreshed). */
  info(message: string, fields?: LogFields): void;
  /** Something went wrong and was handled (a refused admission, a peer that went away). */
  warn(message: string, fields?: LogFields): void;
  /** Something that needs an operator (a revoked member, a failed signature). */
  error(message: string, fields?: LogFields): void;
  /** A logger for a sub-component (`relay.admission`). */
  child(component: string): Logger;
}

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  /** The component named on every line (`relay`, `gateway.channel`). */
  component: string;
  /** JSON lines instead of text (default false). */
  json?: boolean;
  /** Lowest level written (default "info"). */
  level?: LogLevel;
  /** Where lines go (default stderr). */
  write?: (line: string) => void;
}

const encoder = new TextEncoder();

function stderrWrite(line: string): void {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

/** A logger writing to stderr (or `options.write`). */
export function createLogger(options: LoggerOptions): Logger {
  const min = ORDER[options.level ?? "info"];
  const write = options.write ?? stderrWrite;
  const json = options.json ?? false;
  const emit = (level: LogLevel, component: string, message: string, fields?: LogFields) => {
    if (ORDER[level] < min) return;
    const time = new Date().toISOString();
    if (json) {
      write(JSON.stringify({ time, level, component, message, ...fields }));
      return;
    }
    let line = `${time} ${level.toUpperCase().padEnd(5)} ${component}: ${message}`;
    if (fields) {
      for (const [key, value] of Object.entries(fields)) {
        if (value !== undefined) {
          line += ` ${key}=${
            typeof value === "string" && /\s/.test(value) ? JSON.stringify(value) : value
          }`;
        }
      }
    }
    write(line);
  };
  const make = (component: string): Logger => ({
    debug: (m, f) => emit("debug", component, m, f),
    info: (m, f) => emit("info", component, m, f),
    warn: (m, f) => emit("warn", component, m, f),
    error: (m, f) => emit("error", component, m, f),
    child: (sub) => make(`${component}.${sub}`),
  });
  return make(options.component);
}

/** A logger that writes nothing (library default). */
export const silentLogger: Logger = createLogger({
  component: "silent",
  level: "error",
  write: () => {},
});
