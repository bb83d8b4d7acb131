/**
 * `nexus-edge`: the customer-site agent.
 *
 * Runs under the `edge` permission set: `deno run -P=edge edge/main.ts …`
 * (net for its inlets, relays, authority and loopback metrics; read/write
 * for its state directory; no ffi, no run, no env). A configuration whose
 * paths or addresses are outside the set runs through the launcher:
 * `deno task launch edge run --config FILE`.
 *
 * @module
 */
import { parseCommandLine, printHelp, runCli, usage } from "../src/cli/cli.ts";
import { EXIT, type ExitCode } from "../src/cli/exit_codes.ts";
import { parseHostPort } from "../src/config/host_port.ts";
import { permissionFlags } from "../src/config/permissions.ts";
import { createLogger } from "../src/log.ts";
import { DEFAULT_OPS } from "./config.ts";
import { type EdgeStatus, run } from "./edge.ts";
import { configOf, FLAGS, permissionsFor } from "./flags.ts";

const HELP = `nexus-edge: customer-site agent; inlets to the gateway's outlets over a secure channel

Usage:
  nexus-edge run --config FILE [options]
  nexus-edge status [--ops HOST:PORT] [--json]
  nexus-edge permissions --config FILE

run options (flags win over the config file):
  --config FILE            JSON configuration (see deploy/edge.example.json)
  --state DIR              state directory (identity, credential)
  --ticket-file FILE       one-time enrollment ticket, read from FILE (first start)
  --license-file FILE      license key, read from FILE (must not be world-readable):
                           enrollment, and the header HTTP inlets add
  --relay HOST:PORT        a relay (repeatable; replaces the config's list; tried in order)
  --inlet LISTEN=[SERVICE:]OUTLET[/http]
                           an inlet (repeatable; replaces the config's list), to the gateway's
                           OUTLET, or with SERVICE: end to end, to that service agent's OUTLET,
                           e.g. 127.0.0.1:8152=orchestrator:orchestrator/http
  --ops HOST:PORT|off      /metrics /healthz /readyz /status (default ${DEFAULT_OPS})
  --log-json               JSON log lines on stderr
status options:
  --ops HOST:PORT          the running edge's operations endpoint (default ${DEFAULT_OPS})
  --json                   print the raw JSON
permissions:
  prints the Deno permission flags exactly this config needs, for a systemd
  unit or deno compile (net: relays, authority, inlets, ops; read/write: state).
  For a config outside the edge's permission set:
    deno task permissions edge --config FILE
  -h, --help               this help

Secrets never go on the command line (other users can read it): give the
ticket and the license key in files (--ticket-file, --license-file, or
"ticketFile"/"licenseFile" in the config).

Once the first secure channel to the gateway is up, "run" prints one line on stdout:
  READY <identifier> gateway=<identifier> relay=HOST:PORT inlets=HOST:PORT,... metrics=HOST:PORT
Exit status: 0 stopped by SIGINT/SIGTERM; 1 failed at run time; 2 usage; 3 (status) not up;
4 configuration; 5 outside the permission set.
`;

function formatStatus(s: EdgeStatus): string {
  const when = (unix: number) => new Date(unix * 1000).toISOString();
  const lines = [
    `edge        ${s.identifier}`,
    `state       ${s.state}${s.upForMs !== null ? ` (up ${Math.round(s.upForMs / 1000)} s)` : ""}`,
    `gateway     ${s.gateway ?? "-"}`,
    `relay       ${s.relay ?? "-"}`,
    `credential  ${
      s.credential
        ? `${s.credential.id} expires ${when(s.credential.expiresAt)} ${
          JSON.stringify(s.credential.attributes)
        }`
        : "none"
    }`,
    `authority   ${s.authority.connected ? "connected" : "not connected"}${
      s.authority.lastError ? ` (last error: ${s.authority.lastError})` : ""
    }`,
    `attestation expires ${when(s.attestationExpiresAt)} (renewed at two thirds)`,
    `paths       ${s.pathChanges} established${s.lastError ? `; last error: ${s.lastError}` : ""}`,
    "inlets:",
    ...s.inlets.map((i) =>
      `  ${i.listen.padEnd(21)} -> ${
        (i.service === undefined ? i.outlet : `${i.service}/${i.outlet} e2e`).padEnd(28)
      } ${i.mode.padEnd(4)} ` +
      `open ${i.open}, sessions ${i.sessions}, refused ${i.refused}`
    ),
  ];
  return lines.join("\n");
}

/** `nexus-edge status`: asks a running edge's operations endpoint. */
async function status(ops: string, json: boolean): Promise<ExitCode> {
  const { hostname, port } = parseHostPort(ops, "--ops");
  let response: Response;
  try {
    response = await fetch(`http://${hostname}:${port}/status`);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      throw new Deno.errors.NotCapable(
        `the edge's permission set does not allow connecting to ${ops}; ` +
          `run \`deno task launch edge status --ops ${ops}\`, or add --allow-net=${ops}`,
      );
    }
    console.error(`nexus-edge: no edge answers at ${ops}: ${(error as Error).message}`);
    return EXIT.runtime;
  }
  if (!response.ok) {
    console.error(`nexus-edge: ${ops}/status answered ${response.status}`);
    return EXIT.runtime;
  }
  const body = await response.json() as EdgeStatus;
  console.log(json ? JSON.stringify(body, null, 2) : formatStatus(body));
  return body.state === "up" ? EXIT.ok : EXIT.notReady;
}

/** The `nexus-edge` command line: `args` as given after the script, until `signal` aborts. */
export async function main(args: string[], signal: AbortSignal): Promise<ExitCode> {
  const { values, positionals } = parseCommandLine(args, FLAGS);
  if (values.help || positionals.length === 0) return printHelp(HELP, values.help === true);
  const [command] = positionals;
  switch (command) {
    case "status":
      return await status((values.ops as string | undefined) ?? DEFAULT_OPS, values.json === true);
    case "permissions":
      console.log(permissionFlags(await permissionsFor(args)).join(" "));
      return EXIT.ok;
    case "run": {
      const config = await configOf(values);
      const logger = createLogger({ component: "edge", json: values["log-json"] === true });
      await run(config, { signal, logger, announce: (line) => console.log(line) });
      return EXIT.ok;
    }
    default:
      throw usage(`unknown command ${command}; see --help`);
  }
}

if (import.meta.main) runCli("nexus-edge", (signal) => main(Deno.args, signal));
