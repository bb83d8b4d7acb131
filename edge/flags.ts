/**
 * The `nexus-edge` command line: its flags, the configuration they make
 * (the file, with the flags laid over it) and the Deno permissions that
 * configuration needs. Free of I/O but the configuration files, and of
 * native code, so the launcher (scripts/launch.ts) can use it too.
 *
 * @module
 */
import { type CommandLine, parseCommandLine, usage } from "../src/cli/cli.ts";
import type { Permissions } from "../src/config/permissions.ts";
import {
  type CheckedEdgeConfig,
  DEFAULT_OPS,
  edgePermissions,
  loadEdgeConfig,
  parseInletFlag,
} from "./config.ts";

/** The flags of every `nexus-edge` command. */
export const FLAGS = {
  config: { type: "string" },
  state: { type: "string" },
  "ticket-file": { type: "string" },
  "license-file": { type: "string" },
  relay: { type: "string", multiple: true },
  inlet: { type: "string", multiple: true },
  ops: { type: "string" },
  json: { type: "boolean", default: false },
  "log-json": { type: "boolean", default: false },
  // Refused with a reason: a secret on the command line is visible in `ps`.
  ticket: { type: "string" },
  license: { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** The configuration a command line gives: its file, with its flags laid over it. */
export async function configOf(values: CommandLine["values"]): Promise<CheckedEdgeConfig> {
  for (const secret of ["ticket", "license"] as const) {
    if (values[secret] !== undefined) {
      throw usage(
        `--${secret} is refused: other users can read a command line; use --${secret}-file`,
      );
    }
  }
  const inlets = values.inlet as string[] | undefined;
  return await loadEdgeConfig(values.config as string | undefined, {
    stateDir: values.state,
    ticketFile: values["ticket-file"],
    licenseFile: values["license-file"],
    relays: values.relay,
    inlets: inlets?.map(parseInletFlag),
    ops: values.ops,
  });
}

/**
 * The Deno permissions the command line `args` needs: what
 * `deno task permissions edge …` prints and `deno task launch edge …` grants.
 */
export async function permissionsFor(args: string[]): Promise<Permissions> {
  const { values, positionals } = parseCommandLine(args, FLAGS);
  if (positionals[0] === "status") {
    return { net: [(values.ops as string | undefined) ?? DEFAULT_OPS] };
  }
  if (values.config === undefined && positionals[0] === "permissions") {
    throw usage("permissions needs --config FILE");
  }
  return edgePermissions(await configOf(values), values.config as string | undefined);
}
