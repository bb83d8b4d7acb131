/**
 * `nexus-relay`: outbound-only rendezvous that never sees plaintext.
 *
 * Runs under the `relay` permission set: `deno run -P=relay relay/main.ts …`
 * (network, and read access to its configuration and trust anchor files).
 * Files outside the set: `deno task launch relay --config FILE`.
 *
 * @module
 */
import { parseCommandLine, printHelp, runCli } from "../src/cli/cli.ts";
import { EXIT, type ExitCode } from "../src/cli/exit_codes.ts";
import { permissionFlags } from "../src/config/permissions.ts";
import { createLogger } from "../src/log.ts";
import { configOf, FLAGS, permissionsFor } from "./flags.ts";
import { run } from "./relay.ts";

const HELP = `nexus-relay: rendezvous for edges and gateways; forwards encrypted frames only

Usage: nexus-relay [permissions] [options]

Options:
  --config FILE              JSON file with any of the options below (flags win)
  --state DIR                its identity and credential (default /var/lib/nexus-relay)
  --ticket-file FILE         one-time enrollment ticket (role=relay, relay_addresses=[its
                             addresses as members write them]), for the first start
  --listen HOST:PORT         listen address (default 0.0.0.0:4000)
  --tls-cert FILE            serve TLS with this certificate (PEM) ...
  --tls-key FILE             ... and key; plain TCP otherwise (channels are end-to-end encrypted)
  --trust FILE               authority identity file to trust (repeatable; required)
  --authority HOST:PORT      follow the authority's revocation list (recommended)
  --metrics HOST:PORT        /metrics, /healthz, /readyz (default 127.0.0.1:9420; "off" to disable)
  --max-connections N        connections at most, admitted or in admission (default 20000)
  --max-per-identity N       connections per identity at most (default 64)
  --max-pending-per-source N admissions in progress at once from one address (IPv6: /64;
                             default 32)
  --rate BYTES_PER_SECOND    per-identity byte rate (default 268435456)
  --idle-timeout SECONDS     close silent connections (default 300)
  --attestation-ttl SECONDS  lifetime of the relay's channel attestation (to the authority),
                             renewed at two thirds (default 2592000: 30 days)
  --log-json                 JSON log lines
  -h, --help                 this help

"permissions" prints the Deno permission flags exactly this configuration needs
(deno task permissions relay --config FILE for one outside the set).

The relay is a member too: it proves its identity and its credential (role relay,
the addresses members dial it at) to every member that connects, and admits a
connection only after the member proves an identity with a valid, unrevoked
credential from a trusted authority, bound to this relay and connection. An alias (a gateway's
rendezvous name) can be registered only by a member whose credential has the
attribute relay = <alias>, "*", or a list containing it.

Once it listens it prints one line on stdout: LISTENING HOST:PORT <identifier> [metrics=HOST:PORT]
Exit status: 0 stopped by SIGINT/SIGTERM; 1 failed at run time; 2 usage;
4 configuration; 5 outside the permission set.
`;

/** The `nexus-relay` command line: `args` as given after the script, until `signal` aborts. */
export async function main(args: string[], signal: AbortSignal): Promise<ExitCode> {
  const { values, positionals } = parseCommandLine(args, FLAGS);
  if (values.help) return printHelp(HELP, true);
  if (positionals[0] === "permissions") {
    console.log(permissionFlags(await permissionsFor(args)).join(" "));
    return EXIT.ok;
  }
  if (positionals.length > 0) return printHelp(HELP, false);
  const config = await configOf(values);
  const logger = createLogger({ component: "relay", json: values["log-json"] === true });
  await run(config, { signal, logger, announce: (line) => console.log(line) });
  return EXIT.ok;
}

if (import.meta.main) runCli("nexus-relay", (signal) => main(Deno.args, signal));
