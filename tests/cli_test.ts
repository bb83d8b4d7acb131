/**
 * The executables' shared command-line behaviour, as processes under their
 * own permission sets: distinct exit statuses (src/cli/exit_codes.ts),
 * configuration errors that name the file and the field and never quote a
 * secret, the launcher for configurations outside the permission sets
 * (scripts/launch.ts), the edge's `status` on another port, and the
 * what-if command explaining the relay's alias rule and the gateway's
 * channel and outlet rules (src/policy/rules.ts).
 */
import assert from "node:assert/strict";
import { checkEdgeConfig, edgePermissionFlags } from "../edge/config.ts";
import { issueCredential } from "../src/credential/credential.ts";
import { Identity } from "../src/identity/identity.ts";
import { writeIdentityFile } from "../src/identity/identity_file.ts";
import { SoftwareSigner } from "../src/identity/software_signer.ts";
import { createSoftHsmToken } from "../hsm/testing/softhsm.ts";
import { freePort } from "../scripts/support/free_port.ts";
import { provisionRelay } from "../scripts/support/relay_state.ts";
import { spawnDeno } from "../scripts/support/service_process.ts";

const root = new URL("..", import.meta.url).pathname;

async function deno(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "--no-prompt", ...args],
    cwd: root,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

const launch = (args: string[]) => deno(["-P=launch", "scripts/launch.ts", ...args]);

Deno.test({
  name: "cli: distinct exit statuses; config errors name file and field, never a secret",
  sanitizeResources: false,
  async fn() {
    // Outside every permission set, on purpose: /tmp.
    const dir = await Deno.makeTempDir({ prefix: "nexus-cli-" });
    try {
      // 2: usage.
      for (const service of ["relay", "gateway", "edge", "authority"]) {
        const out = await deno([`-P=${service}`, `${service}/main.ts`, "--no-such-flag"]);
        assert.equal(out.code, 2, `${service}: ${out.stderr}`);
        assert.match(out.stderr, /no-such-flag.*see --help/);
      }
      const ticket = await deno(["-P=edge", "edge/main.ts", "run", "--ticket", "nxt_secret"]);
      assert.equal(ticket.code, 2);
      assert.match(ticket.stderr, /--ticket is refused: other users can read a command line/);

      // 4: configuration, naming the file and the field; a secret is never quoted.
      const secret = "nxt_" + "s".repeat(43);
      const file = ".state/cli-test-gateway.json";
      await Deno.writeTextFile(
        `${root}${file}`,
        JSON.stringify({
          stateDir: ".state/x",
          authority: { identityFile: "x", address: "a:1" },
          relays: ["r:1", "no-port"],
          alias: "a",
          customerId: "c",
          ticket: secret,
          outlets: [],
        }),
      );
      try {
        const bad = await deno(["-P=gateway", "gateway/main.ts", "run", "--config", file]);
        assert.equal(bad.code, 4, bad.stderr);
        assert.match(
          bad.stderr,
          /config \.state\/cli-test-gateway\.json: "relays\[1\]" must be HOST:PORT, got "no-port"/,
        );
        await Deno.writeTextFile(`${root}${file}`, `{"ticket": "${secret}", "relays": [`);
        const broken = await deno(["-P=gateway", "gateway/main.ts", "run", "--config", file]);
        assert.equal(broken.code, 4, broken.stderr);
        assert.match(broken.stderr, /not valid JSON \(line 1, column \d+\)/);
        assert.ok(
          !broken.stderr.includes(secret) && !bad.stderr.includes(secret),
          "a secret leaked",
        );
      } finally {
        await Deno.remove(`${root}${file}`);
      }

      // 5: outside the permission set; the launcher grants what the file names.
      const ca = await Identity.create(await SoftwareSigner.generate());
      await writeIdentityFile(`${dir}/authority.identity.json`, ca.history);
      const listen = `127.0.0.1:${freePort()}`;
      await provisionRelay(`${dir}/relay-state`, ca, [listen]);
      await Deno.writeTextFile(
        `${dir}/relay.json`,
        JSON.stringify({
          state: `${dir}/relay-state`,
          listen,
          metrics: "off",
          trust: [`${dir}/authority.identity.json`],
        }),
      );
      const denied = await deno(["-P=relay", "relay/main.ts", "--config", `${dir}/relay.json`]);
      assert.equal(denied.code, 5, denied.stderr);
      assert.match(denied.stderr, /permission denied: Requires read access to .*relay\.json/);
      const flags = await launch(["--print", "relay", "--config", `${dir}/relay.json`]);
      assert.equal(flags.code, 0, flags.stderr);
      assert.equal(
        flags.stdout.trim(),
        `--allow-net=${listen} --allow-read=${dir}/relay-state,${dir}/relay.json,` +
          `${dir}/authority.identity.json --allow-write=${dir}/relay-state`,
      );
      const launched = spawnDeno("the launched relay", [
        "-P=launch",
        "scripts/launch.ts",
        "relay",
        "--config",
        `${dir}/relay.json`,
      ]);
      try {
        assert.match(
          await launched.waitFor(/^LISTENING /, 20_000),
          /^LISTENING 127\.0\.0\.1:\d+ I/,
        );
      } finally {
        assert.equal(await launched.stop(), 0, "SIGTERM through the launcher: exit 0");
      }

      // The edge's status on a port its set does not list: a clear answer, then the launcher.
      const ops = `127.0.0.1:${freePort()}`;
      const status = await deno(["-P=edge", "edge/main.ts", "status", "--ops", ops]);
      assert.equal(status.code, 5, status.stderr);
      assert.ok(status.stderr.includes(`deno task launch edge status --ops ${ops}`), status.stderr);
      const viaLaunch = await launch(["edge", "status", "--ops", ops]);
      assert.equal(viaLaunch.code, 1, viaLaunch.stderr);
      assert.ok(viaLaunch.stderr.includes(`no edge answers at ${ops}`), viaLaunch.stderr);

      // 6 and 7: the HSM's PIN, and an HSM that cannot be used.
      const token = await createSoftHsmToken();
      try {
        const hsm = ["--hsm-module", token.modulePath, "--hsm-token", token.tokenLabel];
        const env = { SOFTHSM2_CONF: token.conf, NEXUS_HSM_PIN: "000000" };
        const state = `.state/cli-test-authority-${crypto.randomUUID()}`;
        const wrong = await deno(
          ["-P=authority", "authority/main.ts", "init", "--state", state, ...hsm],
          env,
        );
        assert.equal(wrong.code, 6, wrong.stderr);
        assert.match(wrong.stderr, /\[wrong_pin\]/);
        const module = await deno([
          "-P=authority",
          "authority/main.ts",
          "init",
          "--state",
          state,
          "--hsm-module",
          "/usr/lib/softhsm/no-such-module.so",
          "--hsm-token",
          token.tokenLabel,
        ], { ...env, NEXUS_HSM_PIN: token.pin });
        assert.equal(module.code, 7, module.stderr);
        assert.match(module.stderr, /\[module_missing\]/);
      } finally {
        await token.remove();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("cli: the what-if command explains the relay's alias rule and the gateway's rules", async () => {
  const dir = `.state/cli-test-whatif-${crypto.randomUUID()}`;
  await Deno.mkdir(`${root}${dir}`, { recursive: true });
  try {
    const ca = await Identity.create(await SoftwareSigner.generate());
    const member = await Identity.create(await SoftwareSigner.generate());
    const credential = await issueCredential(ca, {
      subject: member.identifier,
      subjectKey: member.primaryKey,
      attributes: { role: "gateway", customer_id: "cust_001", relay: ["gw-cust-001"] },
      ttlSeconds: 600,
    });
    await Deno.writeFile(`${root}${dir}/member.credential`, credential.encoded);
    await Deno.writeTextFile(
      `${root}${dir}/gateway.json`,
      JSON.stringify({
        stateDir: `${dir}/state`,
        authority: { identityFile: `${dir}/a.json`, address: "127.0.0.1:1" },
        relays: ["127.0.0.1:2"],
        alias: "gw-cust-001",
        customerId: "cust_001",
        outlets: [{ name: "ctx", backend: "127.0.0.1:3", policy: 'subject.role == "edge"' }],
      }),
    );
    const check = (...rule: string[]) =>
      deno([
        "-P=gateway",
        "gateway/main.ts",
        "policy",
        "check",
        "--credential",
        `${dir}/member.credential`,
        ...rule,
      ]);
    const alias = await check("--alias", "gw-cust-001");
    assert.equal(alias.code, 0, alias.stdout + alias.stderr);
    assert.match(alias.stdout, /^allow\n/);
    assert.match(alias.stdout, /rule: alias gw-cust-001 at a relay/);
    const other = await check("--alias", "gw-cust-002");
    assert.equal(other.code, 1, other.stdout);
    assert.match(other.stdout, /^deny\n/);
    const channel = await check("--channel", "--config", `${dir}/gateway.json`);
    assert.equal(channel.code, 0, channel.stdout + channel.stderr);
    assert.match(channel.stdout, /rule: a secure channel to gateway gw-cust-001/);
    const outlet = await check("--outlet", "ctx", "--config", `${dir}/gateway.json`);
    assert.equal(outlet.code, 1, outlet.stdout);
    assert.match(outlet.stdout, /rule: outlet "ctx" of gateway gw-cust-001/);
    assert.match(outlet.stdout, /subject\.role/);
    const gateway = await check("--gateway-for", "cust_001");
    assert.equal(gateway.code, 0, gateway.stdout);
    const none = await check();
    assert.equal(none.code, 2, none.stderr);
  } finally {
    await Deno.remove(`${root}${dir}`, { recursive: true });
  }
});

Deno.test("cli: the gateway refuses a ticket on the command line without echoing it", async () => {
  // A distinctive value: it must appear nowhere in what the gateway prints.
  const value = "tkt_visible_secret";
  for (
    const args of [
      ["run", "--ticket", value],
      ["run", "--config", ".state/absent-gateway.json", `--ticket=${value}`],
      ["permissions", "--config", ".state/absent-gateway.json", "--ticket", value],
    ]
  ) {
    const out = await deno(["-P=gateway", "gateway/main.ts", ...args]);
    assert.equal(out.code, 2, `${args.join(" ")}: ${out.stderr}`);
    assert.equal(
      out.stderr,
      "nexus-gateway: --ticket is refused: other users can read a command line; " +
        "use --ticket-file\n",
    );
    assert.ok(!out.stderr.includes(value), `stderr quotes the ticket: ${out.stderr}`);
    assert.ok(!out.stdout.includes(value), `stdout quotes the ticket: ${out.stdout}`);
  }
});

// ── The backend service agent (agent/main.ts) ───────────────────────────

Deno.test("cli: agent --help exits 0, says what it prints once ready and its exit statuses", async () => {
  const out = await deno(["-P=agent", "agent/main.ts", "--help"]);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /^nexus-agent: /);
  assert.match(out.stdout, /READY <identifier> \[metrics=HOST:PORT\]/);
  assert.match(out.stdout, /Exit status: 0 .*; 1 .*; 2 usage/s);
  assert.match(out.stdout, /--ticket-file FILE/);
  // Nothing at all on the command line: the help, as a usage error.
  const bare = await deno(["-P=agent", "agent/main.ts"]);
  assert.equal(bare.code, 2, bare.stderr);
  assert.match(bare.stdout, /READY/);
  const unknown = await deno(["-P=agent", "agent/main.ts", "serve"]);
  assert.equal(unknown.code, 2, unknown.stderr);
  assert.match(unknown.stderr, /^nexus-agent: unknown command serve; see --help\n$/);
});

Deno.test("cli: the agent refuses a ticket on the command line without echoing it", async () => {
  const value = "tkt_visible_secret";
  for (
    const args of [
      ["run", "--ticket", value, "--config", "x"],
      ["run", "--config", ".state/absent-agent.json", `--ticket=${value}`],
      ["permissions", "--config", ".state/absent-agent.json", "--ticket", value],
    ]
  ) {
    const out = await deno(["-P=agent", "agent/main.ts", ...args]);
    assert.equal(out.code, 2, `${args.join(" ")}: ${out.stderr}`);
    assert.equal(
      out.stderr,
      "nexus-agent: --ticket is refused: other users can read a command line; " +
        "use --ticket-file\n",
    );
    assert.ok(!out.stderr.includes(value), `stderr quotes the ticket: ${out.stderr}`);
    assert.ok(!out.stdout.includes(value), `stdout quotes the ticket: ${out.stdout}`);
  }
});

Deno.test("cli: an agent config with an unknown key exits 4 naming file and key, never the ticket", async () => {
  const secret = "nxt_" + "a".repeat(43);
  const file = `.state/cli-test-agent-${crypto.randomUUID()}.json`;
  const config = JSON.parse(await Deno.readTextFile(`${root}deploy/agent.example.json`));
  await Deno.writeTextFile(
    `${root}${file}`,
    JSON.stringify({ ...config, stateDir: ".state/x", ticket: secret, backendz: "127.0.0.1:1" }),
  );
  try {
    const out = await deno(["-P=agent", "agent/main.ts", "run", "--config", file]);
    assert.equal(out.code, 4, out.stderr);
    assert.ok(
      out.stderr.includes(`nexus-agent: config ${file}: "backendz" is not a known setting`),
      out.stderr,
    );
    assert.ok(!out.stderr.includes(secret) && !out.stdout.includes(secret), "a secret leaked");
    // `permissions` reads the same configuration, with the same answer.
    const flags = await deno(["-P=agent", "agent/main.ts", "permissions", "--config", file]);
    assert.equal(flags.code, 4, flags.stderr);
    assert.match(flags.stderr, /"backendz" is not a known setting/);
  } finally {
    await Deno.remove(`${root}${file}`);
  }
});

Deno.test("cli: `deno task permissions agent` prints the flags the example configuration needs", async () => {
  const file = "deploy/agent.example.json";
  // deploy/ is outside the agent's set: the agent itself says so (5) …
  const denied = await deno(["-P=agent", "agent/main.ts", "permissions", "--config", file]);
  assert.equal(denied.code, 5, denied.stderr);
  assert.match(denied.stderr, /permission denied: Requires read access to .*agent\.example\.json/);
  // … and the launcher reads it wherever it is.
  for (const args of [["--config", file], ["run", "--config", file]]) {
    const out = await launch(["--print", "agent", ...args]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(
      out.stdout.trim(),
      "--allow-net=authority.internal:4100,relay-1.example.net:4000,relay-2.example.net:4000," +
        "127.0.0.1:8000,127.0.0.1:9440 " +
        `--allow-read=/var/lib/nexus-agent,/etc/nexus/authority.identity.json,${file} ` +
        "--allow-write=/var/lib/nexus-agent " +
        "--allow-ffi=/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
    );
  }
  // The flags override the file, and a ticket file is granted for reading, not read.
  const moved = await launch([
    "--print",
    "agent",
    "run",
    "--config",
    file,
    "--state",
    "/srv/agent",
    "--ticket-file",
    "/srv/agent.ticket",
  ]);
  assert.equal(moved.code, 0, moved.stderr);
  assert.match(moved.stdout, /--allow-net=\S*127\.0\.0\.1:8000/);
  assert.match(moved.stdout, /--allow-read=\/srv\/agent,\S*,\/srv\/agent\.ticket /);
  assert.match(moved.stdout, /--allow-write=\/srv\/agent /);
});

/** `promise`'s value, or null when `ms` pass first (the timer is cleared either way). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("cli: a gateway, an agent or an edge told to stop while the authority is unreachable stops at once", async () => {
  const dir = `.state/cli-test-unreachable-${crypto.randomUUID()}`;
  await Deno.mkdir(`${root}${dir}`, { recursive: true });
  try {
    const anchor = await Identity.create(await SoftwareSigner.generate());
    await writeIdentityFile(`${root}${dir}/authority.json`, anchor.history);
    // Nothing listens there: the first credential never comes.
    const unreachable = { identityFile: `${dir}/authority.json`, address: "127.0.0.1:9" };
    const configs: [string, string, Record<string, unknown>][] = [
      ["gateway", "gateway/main.ts", {
        stateDir: `${dir}/gateway`,
        authority: unreachable,
        relays: ["127.0.0.1:9"],
        alias: "gw",
        customerId: "c",
        ticket: "nxt_" + "a".repeat(43),
      }],
      ["agent", "agent/main.ts", {
        stateDir: `${dir}/agent`,
        authority: unreachable,
        relays: ["127.0.0.1:9"],
        alias: "svc",
        customerId: "c",
        service: "s",
        ticket: "nxt_" + "a".repeat(43),
        outlets: [{ name: "s", backend: "127.0.0.1:9", policy: "true" }],
      }],
      ["edge", "edge/main.ts", {
        stateDir: `${dir}/edge`,
        authority: unreachable,
        relays: ["127.0.0.1:9"],
        gateway: { alias: "gw", customerId: "c" },
        ticket: "nxt_" + "a".repeat(43),
        inlets: [{ listen: `127.0.0.1:${freePort()}`, outlet: "x" }],
        ops: "off",
      }],
    ];
    for (const [set, main, config] of configs) {
      const file = `${dir}/${set}.json`;
      await Deno.writeTextFile(`${root}${file}`, JSON.stringify(config), { mode: 0o600 });
      // The edge's set names the default ports only: its flags name this config's.
      const flags = set === "edge" ? edgePermissionFlags(checkEdgeConfig(config), file) : [];
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-q", "--no-prompt", `-P=${set}`, ...flags, main, "run", "--config", file],
        cwd: root,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const early = await within(child.status, 1500);
      if (early !== null) {
        throw new Error(
          `${set} exited first (${early.code}): ${await new Response(child.stderr).text()}`,
        );
      }
      const stopping = performance.now();
      child.kill("SIGTERM");
      const status = await within(child.status, 5000);
      if (status === null) {
        child.kill("SIGKILL");
        await child.status;
        throw new Error(`${set} ignored SIGTERM for 5 s`);
      }
      const stderr = await new Response(child.stderr).text();
      const ms = performance.now() - stopping;
      assert.equal(status.code, 0, `${set}: ${stderr}`);
      assert.ok(ms < 3000, `${set} took ${ms.toFixed(0)} ms to stop`);
    }
  } finally {
    await Deno.remove(`${root}${dir}`, { recursive: true }).catch(() => {});
  }
});
