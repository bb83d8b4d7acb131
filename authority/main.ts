/**
 * `nexus-authority`: the ceremony CLI and the credential authority service.
 *
 * Runs under the `authority` permission set: `deno run -P=authority authority/main.ts …`.
 * A state directory or configuration outside the set runs through the
 * launcher: `deno task launch authority serve --config FILE`.
 *
 * @module
 */
import { parseCommandLine, printHelp, runCli, usage } from "../src/cli/cli.ts";
import { EXIT, type ExitCode } from "../src/cli/exit_codes.ts";
import { permissionFlags } from "../src/config/permissions.ts";
import { createLogger } from "../src/log.ts";
import {
  auditVerifyCommand,
  type CommandOutput,
  initCommand,
  licenseCommand,
  membersCommand,
  parseAttribute,
  revokeCommand,
  rotateCommand,
  run,
  showCommand,
  storeMoveCommand,
  ticketCommand,
} from "./commands.ts";
import { type CheckedAuthorityConfig, parseDuration } from "./config.ts";
import { configOf, FLAGS, permissionsFor, type Values } from "./flags.ts";

const HELP = `nexus-authority: credential authority with its key in an HSM (PKCS#11)

Usage: nexus-authority <command> [options]

Commands:
  init                    generate the authority key in the HSM and create its identity
  rotate                  generate a new HSM key; the history gains a change signed by both keys
  show                    the identity, its keys, their HSM labels and properties
  serve                   run the authority service (secure channels over TCP)
  ticket create           create a one-time enrollment ticket (printed once)
  license create          create a license key mapped to a customer and tier (printed once)
  revoke <target>         revoke a member identifier (I…) or a credential id (32 hex digits)
  audit verify            check the hash chain of the audit log
  members                 list members
  store move --to URL     copy the state directory's SQLite store into an empty PostgreSQL
                          database (for replicas), the audit chain verified before and after
  permissions <command>   the Deno permission flags that command needs with this configuration

Options:
  --config FILE           JSON file with any of the options below (flags win)
  --state DIR             state directory (default /var/lib/nexus-authority)
  --database URL          the store on PostgreSQL, shared by replicas:
                          postgres://user@host:port/database (no password in the URL);
                          default: authority.db (SQLite) in the state directory
  --hsm-module PATH       PKCS#11 module (default /usr/lib/softhsm/libsofthsm2.so)
  --hsm-token LABEL       token label (default nexus-authority)
  --pin-file FILE         file holding the HSM user PIN
  --pin-env NAME          environment variable holding the PIN (default NEXUS_HSM_PIN)
                          (the PIN is never accepted as a command-line argument)
  --key-label LABEL       init: HSM label of the first key (default nexus-authority-1)
  --existing-key LABEL    init: use this existing HSM key (e.g. made by pkcs11-tool)
  --listen HOST:PORT      serve: listen address (default 0.0.0.0:4100)
  --metrics HOST:PORT     serve: /metrics, /healthz, /readyz (default 127.0.0.1:9410; "off" to disable)
  --edge-ttl DURATION     serve: credential lifetime for role=edge, e.g. 3600, 90s, 1h (default 1h)
  --default-ttl DURATION  serve: credential lifetime for other roles (default 1h)
  --attestation-ttl DURATION
                          serve: lifetime of the authority's channel attestation, renewed at
                          two thirds (default 30d)
  --handshake-timeout DURATION
                          serve: a connection with no secure channel after this long is closed;
                          one carrying only non-members' channels after 3x as long idle (default 10s)
  --max-connections N     serve: TCP connections open at once (default 10000)
  --max-per-source N      serve: connections open at once from one address (IPv6: /64; default 256)
  --attr NAME=VALUE       ticket create: attribute (repeatable; integers and true/false are typed)
  --ttl DURATION          ticket create: ticket lifetime, e.g. 10m, 2h, 1d (default 1h)
  --customer ID           license create: customer_id
  --tier TIER             license create: tier
  --json                  print results as JSON
  --log-json              JSON log lines
  -h, --help              this help

serve prints one line on stdout once it listens: LISTENING HOST:PORT <identifier> [metrics=HOST:PORT]
Exit status: 0 done; 1 failed at run time (audit verify: the chain is broken); 2 usage;
4 configuration; 5 outside the permission set; 6 HSM PIN missing, wrong or locked
(never retried); 7 HSM unusable (module, token, key or mechanism missing).
`;

function durationFlag(text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const seconds = parseDuration(text);
  if (seconds === null) throw usage(`not a duration: ${text} (use e.g. 90s, 10m, 2h, 1d)`);
  return seconds;
}

/** Runs one command (everything but `serve`). */
async function command(
  config: CheckedAuthorityConfig,
  values: Values,
  positionals: string[],
): Promise<CommandOutput> {
  const [name, sub] = positionals;
  const attributes = () =>
    Object.fromEntries(((values.attr ?? []) as string[]).map(parseAttribute));
  switch (name) {
    case "init":
      return await initCommand(config, {
        keyLabel: values["key-label"] as string | undefined,
        existingKey: values["existing-key"] as string | undefined,
      });
    case "rotate":
      return await rotateCommand(config);
    case "show":
      return await showCommand(config);
    case "ticket":
      if (sub !== "create") throw usage(`unknown: ticket ${sub ?? ""} (try: ticket create)`);
      return await ticketCommand(config, {
        attributes: attributes(),
        ttlSeconds: durationFlag(values.ttl as string | undefined, 3600),
      });
    case "license":
      if (sub !== "create") throw usage(`unknown: license ${sub ?? ""} (try: license create)`);
      if (values.customer === undefined || values.tier === undefined) {
        throw usage("license create needs --customer and --tier");
      }
      return await licenseCommand(config, {
        customerId: String(values.customer),
        tier: String(values.tier),
        attributes: attributes(),
      });
    case "revoke":
      if (sub === undefined) throw usage("revoke needs a member identifier or a credential id");
      return await revokeCommand(config, sub);
    case "audit":
      if (sub !== "verify") throw usage(`unknown: audit ${sub ?? ""} (try: audit verify)`);
      return await auditVerifyCommand(config);
    case "members":
      return await membersCommand(config);
    case "store":
      if (sub !== "move") throw usage(`unknown: store ${sub ?? ""} (try: store move --to URL)`);
      if (typeof values.to !== "string") throw usage("store move needs --to postgres://…");
      return await storeMoveCommand(config, values.to);
    default:
      throw usage(`unknown command ${name}; see --help`);
  }
}

/** The `nexus-authority` command line: `args` as given after the script, until `signal` aborts. */
export async function main(args: string[], signal: AbortSignal): Promise<ExitCode> {
  const { values, positionals } = parseCommandLine(args, FLAGS);
  if (values.help || positionals.length === 0) return printHelp(HELP, values.help === true);
  const config = await configOf(values);
  if (positionals[0] === "permissions") {
    console.log(permissionFlags(await permissionsFor(args)).join(" "));
    return EXIT.ok;
  }
  if (positionals[0] === "serve") {
    const logger = createLogger({ component: "authority", json: values["log-json"] === true });
    await run(config, { signal, logger, announce: (line) => console.log(line) });
    return EXIT.ok;
  }
  const output = await command(config, values, positionals);
  console.log(values.json ? JSON.stringify(output.data) : output.text);
  return output.failed ? EXIT.runtime : EXIT.ok;
}

if (import.meta.main) runCli("nexus-authority", (signal) => main(Deno.args, signal));
