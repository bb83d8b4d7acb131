/**
 * The `nexus-authority` command line: its flags, the configuration they
 * make (the file, with the flags laid over it) and the Deno permissions
 * each command needs with it. Free of native code (the HSM addon loads
 * with the commands, not here), so the launcher (scripts/launch.ts) can
 * use it under a set without ffi.
 *
 * @module
 */
import { parseCommandLine, usage } from "../src/cli/cli.ts";
import type { Permissions } from "../src/config/permissions.ts";
import {
  authorityPermissions,
  type CheckedAuthorityConfig,
  loadAuthorityConfig,
} from "./config.ts";

/** The flags of every `nexus-authority` command. */
export const FLAGS = {
  config: { type: "string" },
  state: { type: "string" },
  database: { type: "string" },
  "hsm-module": { type: "string" },
  "hsm-token": { type: "string" },
  "pin-file": { type: "string" },
  "pin-env": { type: "string" },
  "key-label": { type: "string" },
  "existing-key": { type: "string" },
  listen: { type: "string" },
  metrics: { type: "string" },
  "edge-ttl": { type: "string" },
  "default-ttl": { type: "string" },
  "attestation-ttl": { type: "string" },
  "handshake-timeout": { type: "string" },
  "max-connections": { type: "string" },
  "max-per-source": { type: "string" },
  attr: { type: "string", multiple: true },
  ttl: { type: "string" },
  customer: { type: "string" },
  tier: { type: "string" },
  to: { type: "string" },
  json: { type: "boolean", default: false },
  "log-json": { type: "boolean", default: false },
  // Refused with a reason: a PIN on the command line is visible in `ps`.
  pin: { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** The option names that are configuration keys too (flags win over the file). */
const KEYS = [
  "state",
  "database",
  "hsm-module",
  "hsm-token",
  "pin-file",
  "pin-env",
  "listen",
  "metrics",
  "edge-ttl",
  "default-ttl",
  "attestation-ttl",
  "handshake-timeout",
  "max-connections",
  "max-per-source",
] as const;

/** Parsed flag values. */
export type Values = ReturnType<typeof parseCommandLine>["values"];

/** The configuration a command line gives: its file, with its flags laid over it. */
export function configOf(values: Values): Promise<CheckedAuthorityConfig> {
  if (values.pin !== undefined) {
    throw usage("the PIN is never taken from the command line; use --pin-file or --pin-env");
  }
  return loadAuthorityConfig(
    values.config as string | undefined,
    Object.fromEntries(KEYS.map((key) => [key, values[key]])),
  );
}

/**
 * The Deno permissions the command line `args` needs: what
 * `deno task permissions authority …` prints and
 * `deno task launch authority …` grants.
 */
export async function permissionsFor(args: string[]): Promise<Permissions> {
  const { values, positionals } = parseCommandLine(args, FLAGS);
  const command = positionals[0] === "permissions" ? positionals[1] : positionals[0];
  const config = await configOf(values);
  return authorityPermissions(
    // store move reaches the database it moves to.
    command === "store" && typeof values.to === "string"
      ? { ...config, database: values.to }
      : config,
    { configFile: values.config as string | undefined, serve: command === "serve" },
  );
}
