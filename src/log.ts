/**
 * Structured logs for operators: one line per event, human-readable by
 * default, JSON on request (`--log-json`). Fields are data, never key
 * material: callers pass identifiers, addresses, counts and reasons.
 *
 * Many of those values come from peers (an alias, a relay's reason for a
 * refusal, an error message quoting a peer's text), so every line is made
 * safe to write whatever they contain: no control character (C0, DEL, C1)
 * and no U+2028/U+2029 reaches the output raw. A value with a line break
 * could otherwise forge a line of its own (`x\nlevel=error msg=forged`),
 * and one with ESC could drive the terminal that shows the log. In the text
 * format such characters are escaped as `\n`, `\r`, `\t` or `\u001b`; a
 * field's value (and key) is quoted as a JSON string when it holds one of
 * them, a space, `=`, `"` or `\`, so `key=value` pairs split unambiguously.
 * In the JSON format `JSON.stringify` escapes C0 controls already, and DEL,
 * C1 and U+2028/U+2029 are escaped too (`\u009b`), which is still JSON.
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

/** What must never reach a log line raw: C0 and C1 controls, DEL, U+2028, U+2029. */
// deno-lint-ignore no-control-regex -- matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
/** What a field's key or value may hold unquoted: printable, no space, `=`, `"` or `\`. */
// deno-lint-ignore no-control-regex -- matching control characters is the point
const BARE = /^[^\s="\\\u0000-\u001f\u007f-\u009f\u2028\u2029]+$/;
const SHORT_ESCAPES: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/** `\u` and four hex digits for one UTF-16 code unit. */
function unicodeEscape(char: string): string {
  return `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

/**
 * Free text (the message, the component) for a text line: backslashes
 * doubled, controls escaped, so that nothing in it can end the line or reach
 * the terminal raw, and an escape in the output always means an escape.
 */
export function escapeLogText(text: string): string {
  return text.replace(/\\/g, "\\\\")
    .replace(UNSAFE, (char) => SHORT_ESCAPES[char] ?? unicodeEscape(char));
}

/**
 * A field's key or value for a text line: as it is when it is plain, else
 * quoted as a JSON string with DEL, C1 and U+2028/U+2029 escaped too.
 */
export function formatLogValue(value: string): string {
  if (BARE.test(value)) return value;
  return JSON.stringify(value).replace(UNSAFE, unicodeEscape);
}

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
      // JSON.stringify leaves DEL, C1 and U+2028/U+2029 raw; they only occur
      // inside strings, where their \u escapes mean the same.
      write(
        JSON.stringify({ time, level, component, message, ...fields }).replace(
          UNSAFE,
          unicodeEscape,
        ),
      );
      return;
    }
    let line = `${time} ${level.toUpperCase().padEnd(5)} ${escapeLogText(component)}: ${
      escapeLogText(message)
    }`;
    if (fields) {
      for (const [key, value] of Object.entries(fields)) {
        if (value !== undefined) {
          line += ` ${formatLogValue(key)}=${
            typeof value === "string" ? formatLogValue(value) : String(value)
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
