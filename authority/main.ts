/**
 * `nexus-authority`: the ceremony CLI and the credential authority service.
 *
 * Runs under the `authority` permission set: `deno run -P=authority authority/main.ts …`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { HsmOptions } from "../hsm/pkcs11_signer.ts";
import { readPin } from "../hsm/pin.ts";
import { NexusError } from "../src/errors.ts";
import { createLogger, type Logger } from "../src/log.ts";
import { parseHostPort } from "../src/config/host_port.ts";
import { describeAuthority, initAuthority, rotateAuthority, statePaths } from "./ceremony.ts";
import { startAuthority } from "./service.ts";
import { AuthorityStore } from "./store.ts";

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

Options:
  --config FILE           JSON file with any of the options below (flags win)
  --state DIR             state directory (default /var/lib/nexus-authority)
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
  --attr NAME=VALUE       ticket create: attribute (repeatable; integers and true/false are typed)
  --ttl DURATION          ticket create: ticket lifetime, e.g. 10m, 2h, 1d (default 1h)
  --customer ID           license create: customer_id
  --tier TIER             license create: tier
  --json                  print results as JSON
  --log-json              JSON log lines
  -h, --help              this help
`;

interface Config {
  state?: string;
  "hsm-module"?: string;
  "hsm-token"?: string;
  "pin-file"?: string;
  "pin-env"?: string;
  listen?: string;
  metrics?: string;
  "edge-ttl"?: string;
  "default-ttl"?: string;
}

function fail(message: string, code = 2): never {
  console.error(`nexus-authority: ${message}`);
  Deno.exit(code);
}

function duration(text: string): number {
  const match = text.match(/^(\d+)(s|m|h|d)?$/);
  if (!match) fail(`not a duration: ${text} (use e.g. 90s, 10m, 2h, 1d)`);
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[match[2] as "s" | "m" | "h" | "d"] ?? 1;
  return Number(match[1]) * unit;
}

function attribute(text: string): [string, string | number | boolean | string[]] {
  const at = text.indexOf("=");
  if (at <= 0) fail(`--attr wants NAME=VALUE, got ${text}`);
  const name = text.slice(0, at);
  const value = text.slice(at + 1);
  if (/^-?\d+$/.test(value)) return [name, Number(value)];
  if (value === "true" || value === "false") return [name, value === "true"];
  if (value.startsWith("[") && value.endsWith("]")) {
    return [name, value.slice(1, -1).split(",").map((v) => v.trim()).filter((v) => v !== "")];
  }
  return [name, value];
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      config: { type: "string" },
      state: { type: "string" },
      "hsm-module": { type: "string" },
      "hsm-token": { type: "string" },
      "pin-file": { type: "string" },
      "pin-env": { type: "string" },
      "key-label": { type: "string" },
      "existing-key": { type: "string" },
      listen: { type: "string" },
      metrics: { type: "string" },
      "edge-ttl": { type: "string" },
      "default-ttl": { type: "string" },
      attr: { type: "string", multiple: true },
      ttl: { type: "string" },
      customer: { type: "string" },
      tier: { type: "string" },
      json: { type: "boolean", default: false },
      "log-json": { type: "boolean", default: false },
      pin: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help || positionals.length === 0) {
    console.log(HELP);
    Deno.exit(positionals.length === 0 && !values.help ? 2 : 0);
  }
  if (values.pin !== undefined) {
    fail("the PIN is never taken from the command line; use --pin-file or --pin-env");
  }
  let config: Config = {};
  if (values.config !== undefined) {
    try {
      config = JSON.parse(await Deno.readTextFile(values.config)) as Config;
    } catch (error) {
      fail(`cannot read config ${values.config}: ${(error as Error).message}`);
    }
  }
  // Config values may be JSON numbers ("edge-ttl": 3600): read them as text.
  const option = <K extends keyof Config>(key: K, fallback: string): string => {
    const value = (values as Record<string, unknown>)[key] ?? config[key];
    return value === undefined || value === null ? fallback : String(value);
  };
  const stateDir = option("state", "/var/lib/nexus-authority");
  const logger: Logger = createLogger({ component: "authority", json: values["log-json"] });
  const print = (text: string, data: unknown) =>
    console.log(values.json ? JSON.stringify(data) : text);

  const hsm = async (): Promise<HsmOptions> => ({
    modulePath: option("hsm-module", "/usr/lib/softhsm/libsofthsm2.so"),
    tokenLabel: option("hsm-token", "nexus-authority"),
    pin: await readPin({
      file: option("pin-file", "") || undefined,
      env: option("pin-env", "NEXUS_HSM_PIN"),
      prompt: true,
    }),
  });
  const openStore = () => AuthorityStore.open(statePaths(stateDir).db);

  const [command, sub, target] = positionals;
  switch (command) {
    case "init": {
      const result = await initAuthority({
        stateDir,
        hsm: await hsm(),
        keyLabel: values["key-label"],
        existingKey: values["existing-key"] !== undefined
          ? { label: values["existing-key"] }
          : undefined,
      });
      result.session.close();
      const store = openStore();
      store.appendAudit("authority.init", {
        identifier: result.identity.identifier,
        key: result.key.label,
      });
      store.close();
      print(
        `authority created\n  identifier   ${result.identity.identifier}\n  fingerprint  ${result.fingerprint}\n  HSM key      ${result.key.label} (id ${result.key.id})\n  identity     ${
          statePaths(stateDir).identity
        } (give this file to gateways, relays and edges)`,
        {
          identifier: result.identity.identifier,
          fingerprint: result.fingerprint,
          key: result.key,
        },
      );
      return;
    }
    case "rotate": {
      const result = await rotateAuthority({ stateDir, hsm: await hsm() });
      result.session.close();
      const store = openStore();
      store.appendAudit("authority.rotate", {
        identifier: result.identity.identifier,
        key: result.key.label,
        changes: result.identity.history.changes.length,
      });
      store.close();
      print(
        `authority key rotated\n  identifier   ${result.identity.identifier}\n  new HSM key  ${result.key.label} (id ${result.key.id})\n  changes      ${result.identity.history.changes.length}\n  restart the service; verifiers accept the new key once they receive the new history`,
        { identifier: result.identity.identifier, key: result.key },
      );
      return;
    }
    case "show": {
      const description = await describeAuthority({ stateDir, hsm: await hsm() });
      const lines = [
        `identifier   ${description.identifier}`,
        `fingerprint  ${description.fingerprint}`,
        `changes      ${description.changes}`,
        ...description.keys.map((key) =>
          `key          ${key.label} id=${key.id} ${key.current ? "(current)" : "(previous)"} ${
            key.inHsm
              ? `extractable=${key.extractable} sensitive=${key.sensitive} value-readable=${key.valueReadable}`
              : "NOT IN HSM"
          } public=${key.publicKey}`
        ),
      ];
      print(lines.join("\n"), description);
      return;
    }
    case "serve": {
      const listen = parseHostPort(option("listen", "0.0.0.0:4100"), "--listen");
      const metricsAt = option("metrics", "127.0.0.1:9410");
      const running = await startAuthority({
        stateDir,
        hsm: await hsm(),
        hostname: listen.hostname,
        port: listen.port,
        ops: metricsAt === "off" ? undefined : parseHostPort(metricsAt, "--metrics"),
        ttlSeconds: {
          edge: duration(option("edge-ttl", "3600")),
          default: duration(option("default-ttl", "3600")),
        },
        logger,
      });
      // One line on stdout for supervisors and tests: where it listens.
      console.log(
        `LISTENING ${running.addr.hostname}:${running.addr.port} ${running.identity.identifier}` +
          (running.opsAddr ? ` metrics=${running.opsAddr.hostname}:${running.opsAddr.port}` : ""),
      );
      const stop = Promise.withResolvers<void>();
      for (const signal of ["SIGINT", "SIGTERM"] as const) {
        Deno.addSignalListener(signal, () => stop.resolve());
      }
      await stop.promise;
      logger.info("shutting down");
      await running.close();
      return;
    }
    case "ticket": {
      if (sub !== "create") fail(`unknown: ticket ${sub ?? ""} (try: ticket create)`);
      const store = openStore();
      const { secret, ticket } = store.createTicket({
        attributes: Object.fromEntries((values.attr ?? []).map(attribute)),
        ttlSeconds: duration(values.ttl ?? "1h"),
      });
      store.close();
      print(
        `${secret}\n(one-time enrollment ticket, valid until ${
          new Date(ticket.expiresAt * 1000).toISOString()
        }; attributes ${JSON.stringify(ticket.attributes)})`,
        { ticket: secret, expiresAt: ticket.expiresAt, attributes: ticket.attributes },
      );
      return;
    }
    case "license": {
      if (sub !== "create") fail(`unknown: license ${sub ?? ""} (try: license create)`);
      if (values.customer === undefined || values.tier === undefined) {
        fail("license create needs --customer and --tier");
      }
      const store = openStore();
      const { key } = store.createLicense({
        customerId: values.customer,
        tier: values.tier,
        attributes: Object.fromEntries((values.attr ?? []).map(attribute)),
      });
      store.close();
      print(`${key}\n(license key for ${values.customer}, tier ${values.tier})`, { license: key });
      return;
    }
    case "revoke": {
      const what = sub;
      if (what === undefined) fail("revoke needs a member identifier or a credential id");
      const store = openStore();
      const state = store.revoke(what);
      store.close();
      print(
        `revoked ${what}; revocation list serial ${state.serial} (the service signs and pushes it within a second)`,
        { revoked: what, serial: state.serial },
      );
      return;
    }
    case "audit": {
      if (sub !== "verify") fail(`unknown: audit ${sub ?? ""} (try: audit verify)`);
      const store = openStore();
      const result = store.verifyAudit();
      store.close();
      if (result.ok) {
        print(`audit log verified: ${result.entries} entries, head ${result.head}`, result);
        return;
      }
      print(`audit log BROKEN at entry ${result.seq}: ${result.reason}`, result);
      Deno.exit(1);
      return;
    }
    case "members": {
      const store = openStore();
      const members = store.listMembers();
      store.close();
      print(
        members.map((m) =>
          `${m.identifier} ${m.revokedAt === null ? "active " : "REVOKED"} ${
            JSON.stringify(m.attributes)
          }`
        ).join("\n") || "(no members)",
        members,
      );
      return;
    }
    default:
      fail(`unknown command ${command}; see --help`);
  }
  void target;
}

try {
  await main();
} catch (error) {
  // Typed errors carry clear messages without key material; anything else
  // is reported by name only, never by dumping objects that may hold state.
  if (error instanceof NexusError) fail(`${error.message} [${error.code}]`, 1);
  fail(error instanceof Error ? `${error.name}: ${error.message}` : String(error), 1);
}
