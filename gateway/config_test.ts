/**
 * The gateway's enrollment ticket: from a file that only its owner may
 * access (`ticketFile`, `--ticket-file`), never from the command line
 * (`--ticket` is a usage error that does not quote the value), and the file
 * is in the permissions the configuration needs.
 */
import assert from "node:assert/strict";
import { parseCommandLine } from "../src/cli/cli.ts";
import { ConfigError } from "../src/errors.ts";
import { checkGatewayConfig, gatewayPermissions, readGatewaySecrets } from "./config.ts";
import { configOf, FLAGS, permissionsFor } from "./flags.ts";

const TICKET = "nxt_" + "t".repeat(43);

function base(): Record<string, unknown> {
  return {
    stateDir: "/var/lib/nexus-gateway",
    authority: { identityFile: "/etc/nexus/authority.identity.json", address: "auth:4100" },
    relays: ["relay-1:4000"],
    alias: "gw-cust-001",
    customerId: "cust_001",
    outlets: [],
  };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "nexus-gateway-config-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("gateway config: the ticket from a 0600 file, first line trimmed", async () => {
  await withDir(async (dir) => {
    const file = `${dir}/gateway.ticket`;
    await Deno.writeTextFile(file, ` ${TICKET} \nsecond line\n`, { createNew: true, mode: 0o600 });
    const config = checkGatewayConfig({ ...base(), ticketFile: file });
    assert.ok(gatewayPermissions(config).read?.includes(file), "the ticket file is not readable");
    const resolved = await readGatewaySecrets(config);
    assert.equal(resolved.ticket, TICKET);
    assert.equal(resolved.ticketFile, undefined);
    // What startGateway checks again: the resolved configuration as it is.
    assert.equal(checkGatewayConfig(resolved).ticket, TICKET);
    // Without a ticket file, nothing changes.
    const plain = checkGatewayConfig({ ...base(), ticket: TICKET });
    assert.equal(await readGatewaySecrets(plain), plain);
  });
});

Deno.test("gateway config: a ticket file group or others may access is refused", async () => {
  await withDir(async (dir) => {
    const file = `${dir}/gateway.ticket`;
    await Deno.writeTextFile(file, `${TICKET}\n`, { createNew: true, mode: 0o600 });
    const config = checkGatewayConfig({ ...base(), ticketFile: file });
    for (const mode of [0o644, 0o640, 0o604, 0o660]) {
      await Deno.chmod(file, mode);
      const text = mode.toString(8).padStart(4, "0");
      await assert.rejects(readGatewaySecrets(config), (error: unknown) => {
        assert.ok(error instanceof ConfigError, String(error));
        assert.equal(error.code, "invalid");
        assert.equal(error.field, "ticketFile");
        assert.ok(error.message.includes(file), error.message);
        assert.match(error.message, new RegExp(`mode ${text}\\): chmod 600 it$`));
        assert.ok(!error.message.includes(TICKET), "the message quotes the ticket");
        return true;
      });
    }
    await Deno.writeTextFile(file, "\n");
    await Deno.chmod(file, 0o600);
    await assert.rejects(readGatewaySecrets(config), /"ticketFile" names .*, which is empty/);
    await assert.rejects(
      readGatewaySecrets(checkGatewayConfig({ ...base(), ticketFile: `${dir}/absent` })),
      /"ticketFile" names .*absent, which cannot be read: NotFound/,
    );
    assert.throws(
      () => checkGatewayConfig({ ...base(), ticket: TICKET, ticketFile: file }),
      /"ticketFile" and ticket both given/,
    );
  });
});

Deno.test("gateway flags: --ticket is refused without quoting it; --ticket-file is taken", async () => {
  await withDir(async (dir) => {
    const configFile = `${dir}/gateway.json`;
    await Deno.writeTextFile(configFile, JSON.stringify(base()));
    const args = ["run", "--config", configFile, "--ticket", TICKET];
    for (
      const attempt of [
        () => configOf(parseCommandLine(args, FLAGS).values),
        () => permissionsFor(args),
      ]
    ) {
      await assert.rejects(attempt(), (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.code, "usage");
        assert.equal(
          error.message,
          "--ticket is refused: other users can read a command line; use --ticket-file",
        );
        return true;
      });
    }
    const file = `${dir}/gateway.ticket`;
    const withFile = ["run", "--config", configFile, "--ticket-file", file];
    const config = await configOf(parseCommandLine(withFile, FLAGS).values);
    assert.equal(config.ticketFile, file);
    assert.ok((await permissionsFor(withFile)).read?.includes(file));
  });
});
