/**
 * `nexus-edge`: the customer-site agent.
 *
 * Runs under the `edge` permission set: `deno run -P=edge edge/main.ts …`
 * (net for its inlets, relays, authority and loopback metrics; read/write
 * for its state directory; no ffi, no run, no env).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { NexusError } from "../src/errors.ts";
import { createLogger } from "../src/log.ts";
import { parseHostPort } from "../src/config/host_port.ts";
import {
  checkEdgeConfig,
  DEFAULT_OPS,
  type EdgeConfig,
  edgePermissionFlags,
  parseInletFlag,
} from "./config.ts";
import { type EdgeStatus, startEdge } from "./edge.ts";

const HELP = `nexus-edge: customer-site agent; inlets to the gateway's outlets over a secure channel

Usage:
  nexus-edge run --config FILE [options]
  nexus-edge status [--ops HOST:PORT] [--json]
  nexus-edge permissions --config FILE

run options (flags win over the config file):
  --config FILE            JSON configuration (see deploy/edge.example.json)
  --state DIR              state directory (identity, credential)
  --ticket TICKET          one-time enrollment ticket (first start)
  --license KEY            license key: enrollment, and the header HTTP inlets add
  --ticket-file FILE       read the ticket from FILE instead (keeps it off the command line)
  --license-file FILE      read the license key from FILE instead (must not be world-readable)
  --relay HOST:PORT        a relay (repeatable; replaces the config's list; tried in order)
  --inlet LISTEN=OUTLET[/http]
                           an inlet (repeatable; replaces the config's list),
                           e.g. 127.0.0.1:8152=orchestrator/http
  --ops HOST:PORT|off      /metrics /healthz /readyz /status (default ${DEFAULT_OPS})
  --log-json               JSON log lines on stderr
status options:
  --ops HOST:PORT          the running edge's operations endpoint (default ${DEFAULT_OPS})
  --json                   print the raw JSON
permissions:
  prints the Deno permission flags exactly this config needs, for a systemd
  unit or deno compile (net: relays, authority, inlets, ops; read/write: state)
  -h, --help               this help

Once the first secure channel to the gateway is up, "run" prints one line on stdout:
  READY <identifier> gateway=<identifier> relay=HOST:PORT inlets=HOST:PORT,... metrics=HOST:PORT
Exit codes: 0 stopped by SIGINT/SIGTERM, 1 failed to start or run, 2 usage or config error.
`;

function fail(message: string, code = 2): never {
  console.error(`nexus-edge: ${message}`);
  Deno.exit(code);
}

async function readConfig(file: string | undefined): Promise<Record<string, unknown>> {
  if (file === undefined) return {};
  try {
    return JSON.parse(await Deno.readTextFile(file));
  } catch (error) {
    fail(`cannot read config ${file}: ${(error as Error).message}`);
  }
}

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
    `paths       ${s.pathChanges} established${s.lastError ? `; last error: ${s.lastError}` : ""}`,
    "inlets:",
    ...s.inlets.map((i) =>
      `  ${i.listen.padEnd(21)} -> ${i.outlet.padEnd(14)} ${i.mode.padEnd(4)} ` +
      `open ${i.open}, sessions ${i.sessions}, refused ${i.refused}`
    ),
  ];
  return lines.join("\n");
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      config: { type: "string" },
      state: { type: "string" },
      ticket: { type: "string" },
      license: { type: "string" },
      "ticket-file": { type: "string" },
      "license-file": { type: "string" },
      relay: { type: "string", multiple: true },
      inlet: { type: "string", multiple: true },
      ops: { type: "string" },
      json: { type: "boolean", default: false },
      "log-json": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help || positionals.length === 0) {
    console.log(HELP);
    Deno.exit(values.help ? 0 : 2);
  }
  const [command] = positionals;

  if (command === "status") {
    const ops = values.ops ?? DEFAULT_OPS;
    const { hostname, port } = parseHostPort(ops, "--ops");
    let status: EdgeStatus;
    try {
      const response = await fetch(`http://${hostname}:${port}/status`);
      if (!response.ok) fail(`${ops}/status answered ${response.status}`, 1);
      status = await response.json();
    } catch (error) {
      fail(`no edge answers at ${ops}: ${(error as Error).message}`, 1);
    }
    console.log(values.json ? JSON.stringify(status, null, 2) : formatStatus(status));
    Deno.exit(status.state === "up" ? 0 : 3);
  }

  if (command !== "run" && command !== "permissions") {
    fail(`unknown command ${command}; see --help`);
  }
  if (values.config === undefined && command === "permissions") {
    fail("permissions needs --config FILE");
  }
  const raw = await readConfig(values.config);
  if (values.state !== undefined) raw.stateDir = values.state;
  if (values.ticket !== undefined) raw.ticket = values.ticket;
  if (values.license !== undefined) raw.license = values.license;
  if (values["ticket-file"] !== undefined) raw.ticketFile = values["ticket-file"];
  if (values["license-file"] !== undefined) raw.licenseFile = values["license-file"];
  if (values.relay !== undefined) raw.relays = values.relay;
  if (values.ops !== undefined) raw.ops = values.ops;
  try {
    if (values.inlet !== undefined) raw.inlets = values.inlet.map(parseInletFlag);
    const checked = checkEdgeConfig(raw);
    if (command === "permissions") {
      console.log(edgePermissionFlags(checked, values.config).join(" "));
      return;
    }
    const config: EdgeConfig = checked;
    const logger = createLogger({ component: "edge", json: values["log-json"] });
    const edge = await startEdge(config, { logger });
    const stop = Promise.withResolvers<void>();
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(signal, () => stop.resolve());
    }
    logger.info("edge started; connecting to the gateway", {
      identifier: edge.identifier,
      relays: checked.relays.join(","),
    });
    const first = await Promise.race([edge.firstPath, stop.promise.then(() => null)]);
    if (first !== null) {
      const inlets = edge.inletAddrs.map((a) => `${a.hostname}:${a.port}`).join(",");
      const ops = edge.opsAddr ? ` metrics=${edge.opsAddr.hostname}:${edge.opsAddr.port}` : "";
      console.log(
        `READY ${edge.identifier} gateway=${first.gateway} relay=${first.relay} inlets=${inlets}${ops}`,
      );
      await stop.promise;
    }
    logger.info("shutting down");
    await edge.close();
    Deno.exit(0);
  } catch (error) {
    if (error instanceof TypeError && error.message.startsWith("edge config")) fail(error.message);
    if (error instanceof TypeError && error.message.startsWith("--inlet")) fail(error.message);
    throw error;
  }
}

try {
  await main();
} catch (error) {
  if (error instanceof NexusError) fail(`${error.message} [${error.code}]`, 1);
  if (error instanceof Deno.errors.NotCapable) fail(`permission denied: ${error.message}`, 1);
  fail(error instanceof Error ? `${error.name}: ${error.message}` : String(error), 1);
}
