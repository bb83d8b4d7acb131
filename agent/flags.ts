/**
 * The `nexus-agent` command line: its flags, the configuration they make
 * (the file, with the flags laid over it) and the Deno permissions that
 * configuration needs. Free of native code, so the launcher
 * (scripts/launch.ts) can use it too.
 *
 * @module
 */
import { type CommandLine, parseCommandLine, usage } from "../src/cli/cli.ts";
import type { Permissions } from "../src/config/permissions.ts";
import { agentPermissions, type CheckedAgentConfig, loadAgentConfig } from "./config.ts";

/** The flags of every `nexus-agent` command. */
export const FLAGS = {
  config: { type: "string" },
  "ticket-file": { type: "string" },
  state: { type: "string" },
  "log-json": { type: "boolean", default: false },
  // Refused with a reason: a secret on the command line is visible in `ps`.
  ticket: { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

/**
 * The configuration a command line gives: its file, with its flags laid
 * over it. The ticket file is named, not read (`readAgentSecrets` reads it
 * at start), so `permissions` works before the file exists.
 * @throws {ConfigError} `usage` for `--ticket`: other users can read a
 *   command line (`ps`), so the secret goes in a file; the message never
 *   quotes the value.
 */
export async function configOf(values: CommandLine["values"]): Promise<CheckedAgentConfig> {
  if (values.ticket !== undefined) {
    throw usage("--ticket is refused: other users can read a command line; use --ticket-file");
  }
  if (values.config === undefined) throw usage("this command needs --config FILE");
  return await loadAgentConfig(values.config as string, {
    ticketFile: values["ticket-file"],
    stateDir: values.state,
  });
}

/**
 * The Deno permissions the command line `args` needs: what
 * `deno task permissions agent …` prints and `deno task launch agent …` grants.
 */
export async function permissionsFor(args: string[]): Promise<Permissions> {
  const { values } = parseCommandLine(args, FLAGS);
  return agentPermissions(await configOf(values), values.config as string);
}
