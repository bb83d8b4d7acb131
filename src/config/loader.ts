/**
 * The one configuration loader: a JSON file, the command line's flags laid
 * over it (flags win), checked against the executable's schema before
 * anything starts. A mistake stops the start with one line naming the
 * file, the field and what was expected:
 *
 * ```
 * config /etc/nexus/edge.json: "relays[0]" must be HOST:PORT, got "relay-1"
 * ```
 *
 * Secrets never reach an error message: the fields named as secrets are
 * never quoted, their values are scrubbed from every message as a second
 * line of defence, and a file that is not valid JSON is reported by line
 * and column only (the parser's own message quotes the file's text).
 *
 * @example
 * ```ts
 * import { checkConfig } from "./loader.ts";
 * import { hostPort, object } from "./schema.ts";
 * const config = checkConfig(object({ listen: hostPort() }), { listen: "127.0.0.1:4000" });
 * config.listen; // "127.0.0.1:4000"
 * ```
 *
 * @module
 */
import type { z } from "zod";
import { ConfigError } from "../errors.ts";

/** Where a configuration comes from. */
export interface ConfigSource {
  /** The JSON file, if any. */
  file?: string;
  /**
   * Values from the command line, by field path (`stateDir`,
   * `gateway.alias`); `undefined` values are skipped. Each replaces what the
   * file says at that path.
   */
  overrides?: Readonly<Record<string, unknown>>;
  /** Field paths whose values are secrets (`ticket`, `license`): never quoted. */
  secrets?: readonly string[];
}

/** `["inlets", 2, "listen"]` as `inlets[2].listen`. */
export function fieldPath(path: readonly PropertyKey[]): string {
  let text = "";
  for (const part of path) {
    if (typeof part === "number") text += `[${part}]`;
    else text += text === "" ? String(part) : `.${String(part)}`;
  }
  return text;
}

function where(file: string | undefined): string {
  return file === undefined ? "config" : `config ${file}`;
}

/** The JSON parser's position as "line L, column C", without any of the text. */
function jsonPosition(text: string, error: unknown): string {
  const message = error instanceof Error ? error.message : "";
  const lineColumn = message.match(/line (\d+) column (\d+)/);
  if (lineColumn) return `line ${lineColumn[1]}, column ${lineColumn[2]}`;
  const position = message.match(/position (\d+)/);
  // "Unexpected end of JSON input" names no position: the end it is.
  const at = position ? Number(position[1]) : /end of JSON/i.test(message) ? text.length : null;
  if (at === null) return "at an unknown place";
  const before = text.slice(0, at);
  const line = before.split("\n").length;
  return `line ${line}, column ${before.length - before.lastIndexOf("\n")}`;
}

/**
 * Reads and parses a JSON configuration file.
 * @throws {ConfigError} `unreadable` (missing, not a file, not JSON);
 *   Deno's `NotCapable` as it is, when the permission set forbids the read
 *   (the CLI maps it to its own exit status).
 */
export async function readConfigFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) throw error;
    const why = error instanceof Error ? error.name : "error";
    throw new ConfigError("unreadable", `cannot read config ${file}: ${why}`, { file }, {
      cause: error,
    });
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ConfigError(
      "unreadable",
      `cannot read config ${file}: not valid JSON (${jsonPosition(text, error)})`,
      { file },
    );
  }
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split(".");
  let at = target;
  for (const part of parts.slice(0, -1)) {
    const next = at[part];
    if (typeof next !== "object" || next === null || Array.isArray(next)) at[part] = {};
    at = at[part] as Record<string, unknown>;
  }
  at[parts[parts.length - 1]] = value;
}

function getPath(source: unknown, path: string): unknown {
  let at = source;
  for (const part of path.split(".")) {
    if (typeof at !== "object" || at === null) return undefined;
    at = (at as Record<string, unknown>)[part];
  }
  return at;
}

/** The message for one zod issue, in the project's wording. */
function issueText(issue: z.core.$ZodIssue): { field: string; text: string } {
  if (issue.code === "unrecognized_keys") {
    const key = fieldPath([...issue.path, issue.keys[0]]);
    return { field: key, text: `"${key}" is not a known setting` };
  }
  const field = fieldPath(issue.path);
  return { field, text: `"${field}" ${issue.message}` };
}

/**
 * Checks `input` (a parsed file with the flags applied) against `schema`
 * and returns the typed result, defaults filled in. No I/O.
 * @throws {ConfigError} `invalid`, naming the first field that is wrong.
 */
export function checkConfig<S extends z.ZodType>(
  schema: S,
  input: unknown,
  options: { file?: string; secrets?: readonly string[] } = {},
): z.output<S> {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new ConfigError("invalid", `${where(options.file)}: expected a JSON object`, {
      file: options.file,
    });
  }
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const first = issueText(result.error.issues[0]);
  let message = `${where(options.file)}: ${first.text}`;
  // A second line of defence: no secret's value survives in the message,
  // whatever a custom check wrote.
  for (const path of options.secrets ?? []) {
    const value = getPath(input, path);
    if (typeof value === "string" && value.length >= 4) message = message.replaceAll(value, "…");
  }
  throw new ConfigError("invalid", message, { file: options.file, field: first.field });
}

/**
 * Reads `source.file` (when given), lays `source.overrides` over it and
 * checks the result against `schema`.
 * @throws {ConfigError} `unreadable` or `invalid`.
 */
export async function loadConfig<S extends z.ZodType>(
  schema: S,
  source: ConfigSource,
): Promise<z.output<S>> {
  const raw = source.file === undefined ? {} : await readConfigFile(source.file);
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    return checkConfig(schema, raw, source);
  }
  const input = structuredClone(raw) as Record<string, unknown>;
  for (const [path, value] of Object.entries(source.overrides ?? {})) {
    if (value !== undefined) setPath(input, path, value);
  }
  return checkConfig(schema, input, source);
}
