/**
 * `nexus-agent`: the backend service agent, which runs next to a backend
 * service so that the customer's traffic is decrypted there and nowhere on
 * the way (agent/agent.ts).
 *
 * Runs under the `agent` permission set: `deno run -P=agent agent/main.ts …`.
 * A configuration whose paths are outside the set runs through the
 * launcher: `deno task launch agent run --config FILE`.
 *
 * @module
 */
import { parseCommandLine, printHelp, runCli, usage } from "../src/cli/cli.ts";
import { EXIT, type ExitCode } from "../src/cli/exit_codes.ts";
import { permissionFlags } from "../src/config/permissions.ts";
import { createLogger } from "../src/log.ts";
import { run } from "./agent.ts";
import { configOf, FLAGS, permissionsFor } from "./flags.ts";

const HELP = `nexus-agent: backend service agent; edges' end-to-end channels, outlets to backends

Usage:
  nexus-agent run --config FILE [options]
  nexus-agent permissions --config FILE

run options:
  --config FILE        JSON configuration (see deploy/agent.example.json)
  --ticket-file FILE   one-time enrollment ticket, read from FILE (first start; group and
                       others must have no access: chmod 600)
  --state DIR          state directory (overrides the config's stateDir)
  --log-json           JSON log lines
permissions:
  prints the Deno permission flags exactly this configuration needs
  (deno task permissions agent --config FILE for one outside the set)
  -h, --help           this help

Secrets never go on the command line (other users can read it): give the
ticket in a file (--ticket-file, or "ticketFile" in the config; or "ticket"
in the config file itself). --ticket is refused.

Once its alias is registered at a relay, "run" prints one line on stdout:
  READY <identifier> [metrics=HOST:PORT]
Exit status: 0 stopped by SIGINT/SIGTERM; 1 failed at run time; 2 usage (also --ticket);
4 configuration (a policy that does not parse, a credential that is not this customer's agent
of this service); 5 outside the permission set.
`;

/** The `nexus-agent` command line: `args` as given after the script, until `signal` aborts. */
export async function main(args: string[], signal: AbortSignal): Promise<ExitCode> {
  const { values, positionals } = parseCommandLine(args, FLAGS);
  if (values.help || positionals.length === 0) return printHelp(HELP, values.help === true);
  const [command] = positionals;
  switch (command) {
    case "permissions":
      console.log(permissionFlags(await permissionsFor(args)).join(" "));
      return EXIT.ok;
    case "run": {
      const config = await configOf(values);
      const logger = createLogger({ component: "agent", json: values["log-json"] === true });
      await run(config, { signal, logger, announce: (line) => console.log(line) });
      return EXIT.ok;
    }
    default:
      throw usage(`unknown command ${command}; see --help`);
  }
}

if (import.meta.main) runCli("nexus-agent", (signal) => main(Deno.args, signal));
