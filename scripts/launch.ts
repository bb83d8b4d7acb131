/**
 * The one documented way to run an executable with the paths and
 * addresses its configuration names, and nothing more:
 *
 * ```
 * deno task launch <service> <command> [flags...]       run it
 * deno task permissions <service> <command> [flags...]  print the flags it would get
 * ```
 *
 * `<service>` is `authority`, `relay`, `gateway`, `edge` or `agent` (the
 * backend service agent). The launcher reads the configuration the command
 * line names (`--config FILE`, flags laid over it), asks that
 * executable's own `flags.ts` which Deno permissions it needs (net for its
 * addresses; read and write for its state and files; ffi and env for the
 * authority's HSM), and starts
 *
 * ```
 * deno run -q --no-prompt -P=<service> --allow-net=… --allow-read=… … <service>/main.ts <command> [flags...]
 * ```
 *
 * so the executable keeps its named permission set for everything else
 * (an explicit `--allow-<kind>` replaces that kind's list in the set). The
 * child gets this terminal, its signals and its exit status. The launcher
 * itself may read any file (it reads configurations wherever they are)
 * and run Deno; nothing else.
 *
 * @module
 */
import { describeFailure } from "../src/cli/cli.ts";
import { EXIT } from "../src/cli/exit_codes.ts";
import { permissionFlags, type Permissions } from "../src/config/permissions.ts";
import { serviceV8Flag } from "../src/config/runtime_flags.ts";
import { findDeno } from "./support/find_deno.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** Each executable: its main and the module that knows its permissions. */
const SERVICES: Record<
  string,
  { script: string; flags: () => Promise<{ permissionsFor(args: string[]): Promise<Permissions> }> }
> = {
  authority: { script: "authority/main.ts", flags: () => import("../authority/flags.ts") },
  relay: { script: "relay/main.ts", flags: () => import("../relay/flags.ts") },
  gateway: { script: "gateway/main.ts", flags: () => import("../gateway/flags.ts") },
  edge: { script: "edge/main.ts", flags: () => import("../edge/flags.ts") },
  agent: { script: "agent/main.ts", flags: () => import("../agent/flags.ts") },
};

const HELP = `launch: run an executable with exactly the permissions its configuration needs

Usage:
  deno task launch <service> <command> [flags...]
  deno task permissions <service> <command> [flags...]

<service>: ${Object.keys(SERVICES).join(", ")}. The rest of the line is the executable's own,
e.g.  deno task launch edge run --config /srv/site/edge.json
      deno task permissions gateway run --config /srv/gw/gateway.json

"launch" starts  deno run -P=<service> <the flags printed by "permissions"> <service>/main.ts ...
and exits with its status.
`;

async function main(args: string[]): Promise<number> {
  const printOnly = args[0] === "--print";
  const rest = printOnly ? args.slice(1) : args;
  const [service, ...serviceArgs] = rest;
  if (service === undefined || service === "-h" || service === "--help") {
    console.log(HELP);
    return service === undefined ? EXIT.usage : EXIT.ok;
  }
  const entry = SERVICES[service];
  if (entry === undefined) {
    console.error(
      `launch: no service ${JSON.stringify(service)}; one of ${Object.keys(SERVICES).join(", ")}`,
    );
    return EXIT.usage;
  }
  const flags = permissionFlags(await (await entry.flags()).permissionsFor(serviceArgs));
  if (printOnly) {
    console.log(flags.join(" "));
    return EXIT.ok;
  }
  const child = new Deno.Command(await findDeno(), {
    args: [
      "run",
      "-q",
      "--no-prompt",
      `-P=${service}`,
      serviceV8Flag(),
      ...flags,
      entry.script,
      ...serviceArgs,
    ],
    cwd: ROOT,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  // The child gets the stop signals; the launcher waits for its status.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      try {
        child.kill(signal);
      } catch { /* already gone */ }
    });
  }
  return (await child.status).code;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (error) {
    const failure = describeFailure(error);
    console.error(`launch: ${failure.message}`);
    Deno.exit(failure.code);
  }
}
