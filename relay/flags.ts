/**
 * The `nexus-relay` command line: its flags, the configuration they make
 * (the file, with the flags laid over it) and the Deno permissions that
 * configuration needs, for `main.ts` and the launcher (scripts/launch.ts).
 *
 * @module
 */
import { type CommandLine, parseCommandLine } from "../src/cli/cli.ts";
import type { Permissions } from "../src/config/permissions.ts";
import { type CheckedRelayConfig, loadRelayConfig, relayPermissions } from "./config.ts";

/** The flags of `nexus-relay`. */
export const FLAGS = {
  config: { type: "string" },
  state: { type: "string" },
  "ticket-file": { type: "string" },
  listen: { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  trust: { type: "string", multiple: true },
  authority: { type: "string" },
  metrics: { type: "string" },
  "max-connections": { type: "string" },
  "max-per-identity": { type: "string" },
  "max-pending-per-source": { type: "string" },
  rate: { type: "string" },
  "idle-timeout": { type: "string" },
  "attestation-ttl": { type: "string" },
  "log-json": { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** The option names that are configuration keys too (flags win over the file). */
const KEYS = [
  "state",
  "ticket-file",
  "listen",
  "tls-cert",
  "tls-key",
  "trust",
  "authority",
  "metrics",
  "max-connections",
  "max-per-identity",
  "max-pending-per-source",
  "rate",
  "idle-timeout",
  "attestation-ttl",
] as const;

/** The configuration a command line gives: its file, with its flags laid over it. */
export function configOf(values: CommandLine["values"]): Promise<CheckedRelayConfig> {
  return loadRelayConfig(
    values.config as string | undefined,
    Object.fromEntries(KEYS.map((key) => [key, values[key]])),
  );
}

/**
 * The Deno permissions the command line `args` needs: what
 * `deno task permissions relay …` prints and `deno task launch relay …` grants.
 */
export async function permissionsFor(args: string[]): Promise<Permissions> {
  const { values } = parseCommandLine(args, FLAGS);
  return relayPermissions(await configOf(values), values.config as string | undefined);
}
