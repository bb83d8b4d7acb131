/**
 * `nexus-gateway`: the per-customer gateway, and the what-if command that
 * explains every authorization decision the system makes.
 *
 * Runs under the `gateway` permission set: `deno run -P=gateway gateway/main.ts …`.
 * A configuration whose paths are outside the set runs through the
 * launcher: `deno task launch gateway run --config FILE`.
 *
 * @module
 */
import { type CommandLine, parseCommandLine, printHelp, runCli, usage } from "../src/cli/cli.ts";
import { EXIT, type ExitCode } from "../src/cli/exit_codes.ts";
import { permissionFlags } from "../src/config/permissions.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { readIdentityFile } from "../src/identity/identity_file.ts";
import { createLogger } from "../src/log.ts";
import type { Policy } from "../src/policy/policy.ts";
import { policyCheck } from "../src/policy/policy_check.ts";
import { aliasRule, customerRule, gatewayRule, outletRule } from "../src/policy/rules.ts";
import { configOf, FLAGS, permissionsFor } from "./flags.ts";
import { run } from "./gateway.ts";

const HELP = `nexus-gateway: per-customer gateway; outlets to backends behind policies

Usage:
  nexus-gateway run --config FILE [options]
  nexus-gateway permissions --config FILE
  nexus-gateway policy check --credential FILE [--trust FILE] RULE

run options:
  --config FILE        JSON configuration (see deploy/gateway.example.json)
  --ticket-file FILE   one-time enrollment ticket, read from FILE (first start; group and
                       others must have no access: chmod 600)
  --state DIR          state directory (overrides the config's stateDir)
  --log-json           JSON log lines
policy check: what a rule decides for a credential, and why. RULE is one of:
  --policy EXPR                 any policy, e.g. 'subject.role == "edge" and "mcp" in subject.capabilities'
  --outlet NAME --config FILE   an outlet of this gateway: its customer AND its policy
  --channel --config FILE       who may open a secure channel to this gateway
  --alias NAME                  who may register the alias NAME at a relay
  --gateway-for CUSTOMER        whom an edge of CUSTOMER accepts as its gateway
  --credential FILE             an encoded credential (binary)
  --trust FILE                  authority identity file: also verify the credential
permissions:
  prints the Deno permission flags exactly this configuration needs
  (deno task permissions gateway --config FILE for one outside the set)
  -h, --help           this help

Secrets never go on the command line (other users can read it): give the
ticket in a file (--ticket-file, or "ticketFile" in the config; or "ticket"
in the config file itself). --ticket is refused.

Once its alias is registered at a relay (and its end-to-end services' agents are reached,
or 10 s have passed), "run" prints one line on stdout:
  READY <identifier> [metrics=HOST:PORT] [services=UP/TOTAL]
Exit status: 0 stopped by SIGINT/SIGTERM (policy check: allow); 1 failed at run time
(policy check: deny); 2 usage (also --ticket); 4 configuration (a policy that does not parse);
5 outside the permission set.
`;

/** The rule `policy check` explains, and what it decides. */
async function ruleOf(
  values: CommandLine["values"],
): Promise<{ policy: Policy | string; rule: string }> {
  const chosen = ["policy", "outlet", "channel", "alias", "gateway-for"]
    .filter((name) => values[name] !== undefined && values[name] !== false);
  if (chosen.length !== 1) {
    throw usage("policy check needs one of --policy, --outlet, --channel, --alias, --gateway-for");
  }
  if (values.policy !== undefined) return { policy: String(values.policy), rule: "a policy" };
  if (values.alias !== undefined) {
    return { policy: aliasRule(String(values.alias)), rule: `alias ${values.alias} at a relay` };
  }
  if (values["gateway-for"] !== undefined) {
    const customer = String(values["gateway-for"]);
    return { policy: gatewayRule(customer), rule: `the gateway an edge of ${customer} accepts` };
  }
  const config = await configOf(values);
  if (values.channel === true) {
    return {
      policy: customerRule(config.customerId),
      rule: `a secure channel to gateway ${config.alias}`,
    };
  }
  const outlet = config.outlets.find((o) => o.name === values.outlet);
  if (outlet === undefined) {
    throw usage(`no outlet ${JSON.stringify(values.outlet)} in ${values.config}`);
  }
  return {
    policy: outletRule(config.customerId, outlet.name, outlet.policy),
    rule: `outlet ${JSON.stringify(outlet.name)} of gateway ${config.alias}`,
  };
}

/** The `nexus-gateway` command line: `args` as given after the script, until `signal` aborts. */
export async function main(args: string[], signal: AbortSignal): Promise<ExitCode> {
  const { values, positionals } = parseCommandLine(args, FLAGS);
  if (values.help || positionals.length === 0) return printHelp(HELP, values.help === true);
  const [command, sub] = positionals;
  switch (command) {
    case "policy": {
      if (sub !== "check") throw usage(`unknown: policy ${sub ?? ""} (try: policy check)`);
      if (values.credential === undefined) throw usage("policy check needs --credential FILE");
      const { policy, rule } = await ruleOf(values);
      const result = await policyCheck({
        policy,
        rule,
        credentialBytes: await Deno.readFile(String(values.credential)),
        trust: values.trust
          ? new TrustStore([await readIdentityFile(String(values.trust))])
          : undefined,
      });
      console.log(result.text);
      return result.allow ? EXIT.ok : EXIT.runtime;
    }
    case "permissions":
      console.log(permissionFlags(await permissionsFor(args)).join(" "));
      return EXIT.ok;
    case "run": {
      const config = await configOf(values);
      const logger = createLogger({ component: "gateway", json: values["log-json"] === true });
      await run(config, { signal, logger, announce: (line) => console.log(line) });
      return EXIT.ok;
    }
    default:
      throw usage(`unknown command ${command}; see --help`);
  }
}

if (import.meta.main) runCli("nexus-gateway", (signal) => main(Deno.args, signal));
