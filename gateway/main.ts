/**
 * `nexus-gateway`: the per-customer gateway, and the policy what-if command.
 *
 * Runs under the `gateway` permission set: `deno run -P=gateway gateway/main.ts …`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { TrustStore } from "../src/credential/trust_store.ts";
import { NexusError } from "../src/errors.ts";
import { readIdentityFile } from "../src/identity/identity_file.ts";
import { createLogger } from "../src/log.ts";
import { policyCheck } from "../src/policy/mod.ts";
import { type GatewayConfig, startGateway } from "./gateway.ts";

const HELP = `nexus-gateway: per-customer gateway; outlets to backends behind policies

Usage:
  nexus-gateway run --config FILE [options]
  nexus-gateway policy check --policy 'EXPR' --credential FILE [--trust FILE]

run options:
  --config FILE        JSON configuration (see deploy/gateway.example.json)
  --ticket TICKET      enrollment ticket for the first start (or "ticket" in the config)
  --state DIR          state directory (overrides the config's stateDir)
  --log-json           JSON log lines
policy check options:
  --policy EXPR        e.g. 'subject.role == "edge" and "mcp" in subject.capabilities'
  --credential FILE    an encoded credential (binary)
  --trust FILE         authority identity file: also verify the credential
  -h, --help           this help

Once its alias is registered at a relay, "run" prints one line on stdout:
  READY <identifier> [metrics=HOST:PORT]
`;

function fail(message: string, code = 2): never {
  console.error(`nexus-gateway: ${message}`);
  Deno.exit(code);
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      config: { type: "string" },
      ticket: { type: "string" },
      state: { type: "string" },
      policy: { type: "string" },
      credential: { type: "string" },
      trust: { type: "string" },
      "log-json": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help || positionals.length === 0) {
    console.log(HELP);
    Deno.exit(values.help ? 0 : 2);
  }
  const [command, sub] = positionals;
  if (command === "policy") {
    if (sub !== "check") fail("unknown: policy " + (sub ?? "") + " (try: policy check)");
    if (values.policy === undefined || values.credential === undefined) {
      fail("policy check needs --policy and --credential");
    }
    const result = await policyCheck({
      policy: values.policy,
      credentialBytes: await Deno.readFile(values.credential),
      trust: values.trust ? new TrustStore([await readIdentityFile(values.trust)]) : undefined,
    });
    console.log(result.text);
    Deno.exit(result.allow ? 0 : 1);
  }
  if (command !== "run") fail(`unknown command ${command}; see --help`);
  if (values.config === undefined) fail("run needs --config FILE");
  let config: GatewayConfig;
  try {
    config = JSON.parse(await Deno.readTextFile(values.config)) as GatewayConfig;
  } catch (error) {
    fail(`cannot read config ${values.config}: ${(error as Error).message}`);
  }
  if (values.ticket !== undefined) config.ticket = values.ticket;
  if (values.state !== undefined) config.stateDir = values.state;
  for (const key of ["stateDir", "alias", "customerId"] as const) {
    if (typeof config[key] !== "string") fail(`config: "${key}" is required`);
  }
  if (!Array.isArray(config.relays) || config.relays.length === 0) {
    fail('config: "relays" is required');
  }
  if (!Array.isArray(config.outlets)) fail('config: "outlets" is required');
  const logger = createLogger({ component: "gateway", json: values["log-json"] });
  const gateway = await startGateway(config, { logger });
  // Wait for the first relay registration, then announce readiness once.
  while (!gateway.ready()) await new Promise((resolve) => setTimeout(resolve, 50));
  console.log(
    `READY ${gateway.identifier}` +
      (gateway.opsAddr ? ` metrics=${gateway.opsAddr.hostname}:${gateway.opsAddr.port}` : ""),
  );
  const stop = Promise.withResolvers<void>();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => stop.resolve());
  }
  await stop.promise;
  logger.info("shutting down; letting open sessions finish");
  await gateway.close();
  Deno.exit(0);
}

try {
  await main();
} catch (error) {
  if (error instanceof NexusError) fail(`${error.message} [${error.code}]`, 1);
  // Malformed configuration values (HOST:PORT and the like): usage errors.
  if (error instanceof TypeError) fail(`config: ${error.message}`);
  fail(error instanceof Error ? `${error.name}: ${error.message}` : String(error), 1);
}
