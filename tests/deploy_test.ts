/**
 * Deployment (docs/design.md §10): the systemd units in `deploy/systemd/` and the
 * example configurations in `deploy/`.
 *
 * - `systemd-analyze verify` is clean for every unit (checked on a copy whose
 *   ExecStart names this Deno and whose working directory is this checkout,
 *   since /usr/local/bin/deno and /opt/nexus need not exist here), and a
 *   deliberately broken copy is not: the check can fail.
 * - `systemd-analyze security --offline=yes` scores 2.0 or lower for the
 *   authority, relay, gateway and service agent; every score is printed.
 * - Each unit runs its own permission set from deno.json (`-P=<name>`), never
 *   `-A`, with only the overrides it documents, and the services' V8 flags
 *   (src/config/runtime_flags.ts), as its deno.json task does; every flag it gives its main
 *   appears in that main's --help; the hardening the design asks for is there.
 * - Every example configuration parses and has what its service needs; the
 *   service agent's example runs under its set alone (no override in its unit).
 */
import assert from "node:assert/strict";
import { agentPermissions, checkAgentConfig } from "../agent/config.ts";
import { checkEdgeConfig, edgePermissions } from "../edge/config.ts";
import { parseHostPort } from "../src/config/host_port.ts";
import { parsePolicy } from "../src/policy/mod.ts";
import { AuthorityConfigSchema } from "../authority/config.ts";
import { checkGatewayConfig } from "../gateway/config.ts";
import { RelayConfigSchema } from "../relay/config.ts";
import { checkConfig } from "../src/config/loader.ts";
import { serviceV8Flag } from "../src/config/runtime_flags.ts";

const root = new URL("../", import.meta.url).pathname;
const permissions: Deno.PermissionOptionsObject = {
  read: true,
  write: ["/tmp", "./.state"],
  run: true,
  env: true,
  net: ["127.0.0.1"],
};

type Name = "authority" | "relay" | "gateway" | "edge" | "agent";

/** What each unit must run, and the exposure score it must reach (none: recorded only). */
const SERVICES: {
  name: Name;
  script: string;
  command: string | null;
  config: string;
  stateful: boolean;
  maxExposure: number | null;
}[] = [
  {
    name: "authority",
    script: "authority/main.ts",
    command: "serve",
    config: "/etc/nexus/authority.json",
    stateful: true,
    maxExposure: 2.0,
  },
  {
    name: "relay",
    script: "relay/main.ts",
    command: null,
    config: "/etc/nexus/relay.json",
    stateful: true,
    maxExposure: 2.0,
  },
  {
    name: "gateway",
    script: "gateway/main.ts",
    command: "run",
    config: "/etc/nexus/gateway.json",
    stateful: true,
    maxExposure: 2.0,
  },
  {
    name: "edge",
    script: "edge/main.ts",
    command: "run",
    config: "/etc/nexus/edge.json",
    stateful: true,
    maxExposure: null,
  },
  {
    name: "agent",
    script: "agent/main.ts",
    command: "run",
    config: "/etc/nexus/agent.json",
    stateful: true,
    maxExposure: 2.0,
  },
];

// ── Reading units ───────────────────────────────────────────────────────

interface Entry {
  section: string;
  key: string;
  value: string;
}

/** A unit file as systemd reads it: comments dropped, continuation lines joined. */
function parseUnit(text: string): Entry[] {
  const entries: Entry[] = [];
  let section = "";
  for (const line of text.replace(/\\\n/g, " ").split("\n")) {
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#") || trimmed.startsWith(";")) continue;
    const header = trimmed.match(/^\[(.+)\]$/);
    if (header) {
      section = header[1];
      continue;
    }
    const at = trimmed.indexOf("=");
    assert.ok(at > 0, `not a unit line: ${trimmed}`);
    entries.push({
      section,
      key: trimmed.slice(0, at).trim(),
      value: trimmed.slice(at + 1).trim(),
    });
  }
  return entries;
}

function all(unit: Entry[], key: string, section = "Service"): string[] {
  return unit.filter((e) => e.section === section && e.key === key).map((e) => e.value);
}

function one(unit: Entry[], key: string, section = "Service"): string {
  const values = all(unit, key, section);
  assert.equal(values.length, 1, `${section}.${key} once, got ${JSON.stringify(values)}`);
  return values[0];
}

/** ExecStart split into Deno, Deno's flags, the script, and the script's arguments. */
function execStart(unit: Entry[]) {
  const words = one(unit, "ExecStart").split(/\s+/);
  const [deno, sub, ...rest] = words;
  assert.equal(sub, "run", "ExecStart runs `deno run`");
  const at = rest.findIndex((w) => !w.startsWith("-"));
  assert.ok(at >= 0, "ExecStart names a script");
  return { deno, flags: rest.slice(0, at), script: rest[at], args: rest.slice(at + 1) };
}

function flagValue(args: string[], flag: string): string | undefined {
  const at = args.indexOf(flag);
  return at >= 0 ? args[at + 1] : undefined;
}

/** "20s", "1min", "5" (seconds) as seconds. */
function seconds(text: string): number {
  const match = text.match(/^(\d+)\s*(ms|s|sec|min|m)?$/);
  assert.ok(match, `a time span: ${text}`);
  const factor = { ms: 0.001, s: 1, sec: 1, min: 60, m: 60 }[match[2] ?? "s"] ?? 1;
  return Number(match[1]) * factor;
}

const unitFile = (name: Name) => `${root}deploy/systemd/nexus-${name}.service`;
const readUnit = (name: Name) => parseUnit(Deno.readTextFileSync(unitFile(name)));
const readJson = (path: string) => JSON.parse(Deno.readTextFileSync(`${root}${path}`));

/** JSON with comments and trailing commas (deno.json) as JSON. */
function parseJsonc(text: string): unknown {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j;
    } else if (c === "/" && text[i + 1] === "/") {
      while (i < text.length && text[i] !== "\n") i++;
      out += "\n";
    } else if (c === "/" && text[i + 1] === "*") {
      i = text.indexOf("*/", i + 2) + 1;
    } else out += c;
  }
  return JSON.parse(out.replace(/,(\s*[}\]])/g, "$1"));
}

/** deno.json's tasks. */
const tasks = (): Record<string, string> =>
  (parseJsonc(Deno.readTextFileSync(`${root}deno.json`)) as { tasks: Record<string, string> })
    .tasks;

interface PermissionSet {
  read?: string[] | boolean;
  write?: string[] | boolean;
  net?: string[] | boolean;
  env?: string[] | boolean;
  ffi?: string[] | boolean;
  run?: string[] | boolean;
}
const permissionSets = (): Record<string, PermissionSet> =>
  (parseJsonc(Deno.readTextFileSync(`${root}deno.json`)) as {
    permissions: Record<string, PermissionSet>;
  }).permissions;

/** Whether a permission list (or `true`) covers `path`. */
function covers(list: string[] | boolean | undefined, path: string): boolean {
  if (list === true) return true;
  if (!Array.isArray(list)) return false;
  return list.some((p) => path === p || path.startsWith(p.endsWith("/") ? p : `${p}/`));
}

async function run(
  command: string,
  args: string[],
  options: { cwd?: string } = {},
): Promise<{ code: number; output: string; stdout: string }> {
  const out = await new Deno.Command(command, {
    args,
    cwd: options.cwd ?? root,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  return { code: out.code, output: (stdout + stderr).trim(), stdout };
}

// ── systemd-analyze ─────────────────────────────────────────────────────

/** A copy of the unit that names this Deno and this checkout, in `dir`. */
async function localCopy(name: Name, dir: string, edit = (text: string) => text): Promise<string> {
  const text = (await Deno.readTextFile(unitFile(name)))
    .replace(/^ExecStart=\/usr\/local\/bin\/deno /m, `ExecStart=${Deno.execPath()} `)
    .replace(/^WorkingDirectory=\/opt\/nexus$/m, `WorkingDirectory=${root.replace(/\/$/, "")}`);
  const path = `${dir}/nexus-${name}.service`;
  await Deno.writeTextFile(path, edit(text));
  return path;
}

const verify = (path: string) => run("systemd-analyze", ["verify", "--man=no", path]);

Deno.test({
  name: "systemd-analyze verify: every unit is clean, and a broken copy is not",
  permissions,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "nexus-deploy-" });
    try {
      for (const { name } of SERVICES) {
        const result = await verify(await localCopy(name, dir));
        assert.equal(result.output, "", `nexus-${name}.service: ${result.output}`);
        assert.equal(result.code, 0);
      }
      // The check can fail: an unknown directive, a bad value and a missing
      // program each make it speak.
      const broken: [string, (text: string) => string][] = [
        ["unknown directive", (t) => t.replace("[Service]\n", "[Service]\nProtectSytem=strict\n")],
        ["bad value", (t) => t.replace("ProtectSystem=strict", "ProtectSystem=sometimes")],
        ["missing program", (t) => t.replace(Deno.execPath(), "/nonexistent/deno")],
      ];
      for (const [what, edit] of broken) {
        const sub = await Deno.makeTempDir({ dir, prefix: "broken-" });
        const result = await verify(await localCopy("relay", sub, edit));
        assert.notEqual(result.output, "", `${what}: systemd-analyze verify said nothing`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "systemd-analyze security: exposure 2.0 or lower for authority, relay, gateway, agent",
  permissions,
  async fn() {
    const scores: string[] = [];
    for (const { name, maxExposure } of SERVICES) {
      const result = await run("systemd-analyze", [
        "security",
        "--offline=yes",
        "--no-pager",
        unitFile(name),
      ]);
      const match = result.output.match(/Overall exposure level for \S+: (\d+\.\d+) (\S+)/);
      assert.ok(match, `no overall exposure level for nexus-${name}.service: ${result.output}`);
      const score = Number(match[1]);
      scores.push(`nexus-${name}.service ${score.toFixed(1)} ${match[2]}`);
      if (maxExposure !== null) {
        assert.ok(score <= maxExposure, `nexus-${name}.service scores ${score} > ${maxExposure}`);
      }
    }
    console.log(`systemd-analyze security --offline=yes:\n  ${scores.join("\n  ")}`);
  },
});

// ── What the units run ──────────────────────────────────────────────────

Deno.test({
  name: "units: own permission set, never -A, only documented overrides, flags the mains know",
  permissions,
  async fn() {
    const sets = permissionSets();
    for (const service of SERVICES) {
      const { name } = service;
      const unit = readUnit(name);
      const exec = execStart(unit);
      const where = `nexus-${name}.service`;
      assert.equal(one(unit, "WorkingDirectory"), "/opt/nexus", where);
      assert.ok(exec.deno.startsWith("/"), `${where}: Deno by absolute path`);
      assert.ok(exec.flags.includes("--no-prompt"), `${where}: --no-prompt`);
      const named = exec.flags.filter((f) =>
        f.startsWith("-P") || f.startsWith("--permission-set")
      );
      assert.deepEqual(named, [`-P=${name}`], `${where}: exactly -P=${name}`);
      assert.ok(sets[name], `deno.json has the permission set ${name}`);
      // The V8 flags of every service (src/config/runtime_flags.ts), in the unit and the task.
      assert.deepEqual(
        exec.flags.filter((f) => f.startsWith("--v8-flags")),
        [serviceV8Flag()],
        `${where}: the services' V8 flags`,
      );
      const task = tasks()[name]?.split(/\s+/) ?? [];
      assert.ok(task.includes(`-P=${name}`), `deno task ${name} runs under -P=${name}`);
      assert.deepEqual(
        task.filter((f) => f.startsWith("--v8-flags")),
        [serviceV8Flag()],
        `deno task ${name}: the services' V8 flags`,
      );
      for (const flag of exec.flags) {
        assert.ok(flag !== "-A" && !flag.startsWith("--allow-all"), `${where}: ${flag}`);
        if (flag.startsWith("--allow-") || /^-[A-OQ-Z](=|$)/.test(flag)) {
          // A bare --allow-x (or -R, -N, …) grants everything of that kind;
          // only the two overrides the units document are allowed, with values.
          const allowed = name === "authority"
            ? /^--allow-read=.+/
            : name === "edge"
            ? /^--allow-net=.+/
            : /^$/;
          assert.match(flag, allowed, `${where}: ${flag} is not a documented override`);
        }
      }
      assert.equal(exec.script, service.script, where);
      if (service.command !== null) assert.equal(exec.args[0], service.command, where);
      else assert.ok(exec.args[0].startsWith("--"), `${where}: no subcommand`);
      assert.equal(flagValue(exec.args, "--config"), service.config, `${where}: --config`);
      // The configuration file is where the set may read it.
      assert.ok(covers(sets[name].read, service.config), `${where}: set ${name} reads config`);
      assert.ok(
        !exec.args.some((a) => a === "--pin" || a.startsWith("--pin=")),
        `${where}: never a PIN on the command line`,
      );

      // Every flag the unit gives its main is one the main documents.
      const help = await run(Deno.execPath(), [
        "run",
        "-q",
        "--no-prompt",
        `-P=${name}`,
        service.script,
        "--help",
      ]);
      assert.equal(help.code, 0, `${service.script} --help: ${help.output}`);
      for (const arg of exec.args.filter((a) => a.startsWith("--"))) {
        assert.match(help.stdout, new RegExp(`${arg}\\b`), `${where}: ${arg} not in --help`);
      }
      if (service.command !== null) {
        assert.match(help.stdout, new RegExp(`\\b${service.command}\\b`));
      }
    }
  },
});

Deno.test({
  name: "units: users, state, sandboxing, restarts and limits",
  permissions,
  async fn() {
    const sets = permissionSets();
    const sysusers = Deno.readTextFileSync(`${root}deploy/systemd/nexus.sysusers.conf`);
    for (const { name, stateful } of SERVICES) {
      const unit = readUnit(name);
      const where = `nexus-${name}.service`;
      const user = `nexus-${name}`;
      assert.equal(one(unit, "User"), user, where);
      assert.match(sysusers, new RegExp(`^u\\s+${user}\\s`, "m"), `${user} in sysusers`);
      const required: Record<string, string> = {
        Type: "exec",
        NoNewPrivileges: "yes",
        ProtectSystem: "strict",
        ProtectHome: "yes",
        PrivateTmp: "yes",
        PrivateDevices: "yes",
        ProtectKernelTunables: "yes",
        ProtectKernelModules: "yes",
        ProtectKernelLogs: "yes",
        ProtectControlGroups: "yes",
        RestrictAddressFamilies: "AF_INET AF_INET6 AF_UNIX",
        RestrictNamespaces: "yes",
        LockPersonality: "yes",
        CapabilityBoundingSet: "",
        Restart: "on-failure",
        KillSignal: "SIGTERM",
        ConfigurationDirectory: "nexus",
      };
      for (const [key, value] of Object.entries(required)) {
        assert.equal(one(unit, key), value, `${where}: ${key}=${value}`);
      }
      // V8's JIT needs writable, then executable memory.
      assert.deepEqual(all(unit, "MemoryDenyWriteExecute"), [], `${where}: no MDWE`);
      const filters = all(unit, "SystemCallFilter");
      assert.ok(filters.some((f) => f.split(/\s+/).includes("@system-service")), where);
      assert.ok(filters.includes("~@privileged @resources"), where);
      assert.ok(seconds(one(unit, "RestartSec")) > 0, where);
      assert.ok(seconds(one(unit, "TimeoutStopSec")) > 0, where);
      const state = `/var/lib/${user}`;
      if (stateful) {
        assert.equal(one(unit, "StateDirectory"), user, where);
        assert.equal(one(unit, "StateDirectoryMode"), "0700", where);
        assert.ok(all(unit, "ReadWritePaths").includes(state), `${where}: ReadWritePaths`);
        assert.ok(covers(sets[name].write, state), `set ${name} writes ${state}`);
      } else {
        assert.deepEqual(all(unit, "StateDirectory"), [], `${where}: stateless`);
        assert.equal(sets[name].write, undefined, `set ${name} writes nothing`);
      }
    }

    // Relay: more file descriptors than connections.
    const relay = readUnit("relay");
    const maxConnections = Number(readJson("deploy/relay.example.json")["max-connections"]);
    assert.ok(Number(one(relay, "LimitNOFILE")) > maxConnections + 1000, "relay LimitNOFILE");
    // Gateway: SIGTERM lets sessions finish for shutdownGraceMs; systemd waits longer.
    const grace = readJson("deploy/gateway.example.json").shutdownGraceMs ?? 10_000;
    assert.ok(seconds(one(readUnit("gateway"), "TimeoutStopSec")) >= grace / 1000 + 5);
    // The service agent likewise; and, like the gateway, a refused start is not retried.
    const agentGrace = readJson("deploy/agent.example.json").shutdownGraceMs ?? 10_000;
    assert.ok(seconds(one(readUnit("agent"), "TimeoutStopSec")) >= agentGrace / 1000 + 5);
    for (const name of ["gateway", "agent"] as const) {
      assert.deepEqual(one(readUnit(name), "RestartPreventExitStatus").split(/\s+/), [
        "2",
        "4",
        "5",
      ], `nexus-${name}.service: RestartPreventExitStatus`);
    }

    // Authority: the PIN as a systemd credential, read through the set plus
    // the credentials directory only; never restarted into a PIN lockout.
    const authority = readUnit("authority");
    const [id, source] = one(authority, "LoadCredential").split(":");
    assert.equal(source, "/etc/nexus/hsm.pin");
    const exec = execStart(authority);
    assert.equal(flagValue(exec.args, "--pin-file"), `%d/${id}`);
    const reads = exec.flags.find((f) => f.startsWith("--allow-read="))!.slice(13).split(",");
    assert.deepEqual(
      new Set(reads),
      new Set([...(sets.authority.read as string[]), "%d"]),
      "the authority's --allow-read is its set's read list plus %d",
    );
    assert.ok(!all(authority, "Environment").some((e) => e.includes("NEXUS_HSM_PIN")));
    // A refused start is not retried: above all a wrong PIN (6), which would lock the token.
    assert.deepEqual(one(authority, "RestartPreventExitStatus").split(/\s+/), [
      "2",
      "4",
      "5",
      "6",
      "7",
    ]);

    // sysusers file parses and makes the users.
    const dir = await Deno.makeTempDir({ prefix: "nexus-sysusers-" });
    try {
      await Deno.mkdir(`${dir}/etc`);
      const result = await run("systemd-sysusers", [
        `--root=${dir}`,
        `${root}deploy/systemd/nexus.sysusers.conf`,
      ]);
      assert.equal(result.code, 0, result.output);
      const passwd = await Deno.readTextFile(`${dir}/etc/passwd`);
      for (const { name } of SERVICES) assert.match(passwd, new RegExp(`^nexus-${name}:`, "m"));
      const group = await Deno.readTextFile(`${dir}/etc/group`);
      assert.match(group, /^softhsm:x:\d+:nexus-authority$/m);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "edge unit: its --allow-net is what `nexus-edge permissions` prints for the example",
  permissions,
  async fn() {
    const exec = execStart(readUnit("edge"));
    const net = exec.flags.find((f) => f.startsWith("--allow-net="))!.slice(12).split(",");
    const example = readJson("deploy/edge.example.json");
    assert.deepEqual(new Set(net), new Set(edgePermissions(checkEdgeConfig(example)).net));
    // The command the unit's comment tells the operator to run.
    const dir = `.state/deploy-test-${crypto.randomUUID()}`;
    await Deno.mkdir(`${root}${dir}`, { recursive: true });
    try {
      await Deno.writeTextFile(`${root}${dir}/edge.json`, JSON.stringify(example));
      const result = await run(Deno.execPath(), [
        "run",
        "-q",
        "--no-prompt",
        "-P=edge",
        "edge/main.ts",
        "permissions",
        "--config",
        `${dir}/edge.json`,
      ]);
      assert.equal(result.code, 0, result.output);
      const printed = result.stdout.match(/--allow-net=(\S+)/);
      assert.ok(printed, result.stdout);
      assert.deepEqual(new Set(printed[1].split(",")), new Set(net));
    } finally {
      await Deno.remove(`${root}${dir}`, { recursive: true });
    }
  },
});

Deno.test({
  name: "agent unit: the example needs nothing its set lacks (`nexus-agent permissions`)",
  permissions,
  async fn() {
    // The unit gives no override (checked above): every path the example
    // names must be in the agent's set, and the set's net is the network.
    const sets = permissionSets();
    const example = readJson("deploy/agent.example.json");
    const needed = agentPermissions(checkAgentConfig(example), "/etc/nexus/agent.json");
    for (const path of needed.read ?? []) assert.ok(covers(sets.agent.read, path), `read ${path}`);
    for (const path of needed.write ?? []) {
      assert.ok(covers(sets.agent.write, path), `write ${path}`);
    }
    assert.equal(sets.agent.net, sets.gateway.net, "the agent's net is the gateway's");
    for (const kind of ["env", "run"] as const) {
      assert.equal(sets.agent[kind], undefined, `set agent grants no ${kind}`);
    }
    // FFI for exactly the library the example's cipher needs (OpenSSL's libcrypto).
    assert.deepEqual(sets.agent.ffi, needed.ffi);
    // The executable's own answer, for a copy where its set reads.
    const dir = `.state/deploy-test-${crypto.randomUUID()}`;
    await Deno.mkdir(`${root}${dir}`, { recursive: true });
    try {
      await Deno.writeTextFile(`${root}${dir}/agent.json`, JSON.stringify(example));
      const result = await run(Deno.execPath(), [
        "run",
        "-q",
        "--no-prompt",
        "-P=agent",
        "agent/main.ts",
        "permissions",
        "--config",
        `${dir}/agent.json`,
      ]);
      assert.equal(result.code, 0, result.output);
      const flags = Object.fromEntries(
        result.stdout.trim().split(/\s+/).map((f) => {
          const match = f.match(/^--allow-(\w+)=(.+)$/);
          assert.ok(match, `a permission flag: ${f}`);
          return [match[1], match[2].split(",")];
        }),
      );
      assert.deepEqual(new Set(flags.net), new Set(needed.net), "net");
      assert.ok(flags.net.includes("127.0.0.1:8000"), "the backend's address");
      assert.deepEqual(
        new Set(flags.read),
        new Set([
          ...(needed.read ?? []).filter((p) => p !== "/etc/nexus/agent.json"),
          `${dir}/agent.json`,
        ]),
        "read",
      );
      assert.deepEqual(flags.write, [example.stateDir], "write");
    } finally {
      await Deno.remove(`${root}${dir}`, { recursive: true });
    }
  },
});

// ── Example configurations ──────────────────────────────────────────────

Deno.test({
  name: "example configurations parse and have what their services need",
  permissions,
  fn() {
    // Every example passes its service's own configuration schema (unknown
    // keys are refused there), so an example can never drift from the code.
    // Authority: the keys `--config` reads, all written as text.
    const authority = readJson("deploy/authority.example.json");
    checkConfig(AuthorityConfigSchema, authority, { file: "deploy/authority.example.json" });
    for (const [key, value] of Object.entries(authority)) {
      assert.equal(typeof value, "string", `authority.example.json: ${key} as text`);
    }
    assert.equal(authority.state, "/var/lib/nexus-authority");
    parseHostPort(authority.listen, "listen");
    parseHostPort(authority.metrics, "metrics");

    // Relay: the keys of its Config; trust is a list of files it may read.
    const relay = readJson("deploy/relay.example.json");
    checkConfig(RelayConfigSchema, relay, { file: "deploy/relay.example.json" });
    assert.ok(Array.isArray(relay.trust) && relay.trust.length > 0, "relay trust is a list");
    const sets = permissionSets();
    for (const file of relay.trust) assert.ok(covers(sets.relay.read, file), file);
    parseHostPort(relay.listen, "listen");
    parseHostPort(relay.authority, "authority");
    for (const key of ["max-connections", "max-per-identity", "rate", "idle-timeout"]) {
      assert.ok(Number(relay[key]) > 0, `relay.example.json: ${key}`);
    }

    // Gateway: GatewayConfig, its required fields, and policies that parse.
    const gateway = readJson("deploy/gateway.example.json");
    checkGatewayConfig(gateway, "deploy/gateway.example.json");
    for (const key of ["stateDir", "alias", "customerId"]) {
      assert.equal(typeof gateway[key], "string", `gateway.example.json: ${key}`);
    }
    assert.equal(gateway.stateDir, "/var/lib/nexus-gateway");
    assert.ok(covers(sets.gateway.read, gateway.authority.identityFile));
    parseHostPort(gateway.authority.address, "authority.address");
    assert.ok(gateway.relays.length > 0);
    for (const r of gateway.relays) parseHostPort(r, "relay");
    for (const outlet of gateway.outlets) {
      assert.equal(typeof outlet.name, "string");
      parseHostPort(outlet.backend, "backend");
      parsePolicy(outlet.policy);
    }
    assert.equal(typeof (gateway.shutdownGraceMs ?? 0), "number");

    // Edge: the edge's own check, and consistency with the gateway example.
    const edge = checkEdgeConfig(readJson("deploy/edge.example.json"));
    assert.equal(edge.stateDir, "/var/lib/nexus-edge");
    assert.ok(covers(sets.edge.read, edge.authority.identityFile));
    assert.equal(edge.gateway.alias, gateway.alias);
    assert.equal(edge.gateway.customerId, gateway.customerId);
    // A Phase 2 inlet names one of the gateway's outlets; an end-to-end one one of its services
    // (whose agent's outlet is checked below).
    const outlets = new Set(gateway.outlets.map((o: { name: string }) => o.name));
    const services = new Set(
      (gateway.services ?? []).map((s: { name: string }) => s.name),
    );
    for (const inlet of edge.inlets) {
      if (inlet.service === undefined) assert.ok(outlets.has(inlet.outlet), inlet.outlet);
      else assert.ok(services.has(inlet.service), inlet.service);
    }
    // One trust anchor file name across the examples.
    assert.equal(edge.authority.identityFile, gateway.authority.identityFile);
    assert.ok(relay.trust.includes(gateway.authority.identityFile));

    // Service agent: its own check, policies that parse, and consistency
    // with the gateway example: the same customer, trust anchor and relays
    // (the gateway reaches the agent's alias through its own relays).
    const agent = checkAgentConfig(
      readJson("deploy/agent.example.json"),
      "deploy/agent.example.json",
    );
    assert.equal(agent.stateDir, "/var/lib/nexus-agent");
    assert.ok(covers(sets.agent.read, agent.stateDir) && covers(sets.agent.write, agent.stateDir));
    assert.ok(covers(sets.agent.read, agent.authority.identityFile));
    assert.equal(agent.authority.identityFile, gateway.authority.identityFile);
    assert.deepEqual(agent.authority.address, [gateway.authority.address].flat());
    assert.equal(agent.customerId, gateway.customerId);
    for (const r of agent.relays) assert.ok(gateway.relays.includes(r), `agent relay ${r}`);
    assert.notEqual(agent.alias, gateway.alias, "the agent's alias is its own");
    assert.ok(agent.outlets.length > 0);
    for (const outlet of agent.outlets) {
      parseHostPort(outlet.backend, "backend");
      parsePolicy(outlet.policy);
    }
    assert.equal(agent.ticket, undefined, "no ticket in the example");
    if (agent.ops !== undefined) parseHostPort(agent.ops, "ops");
    // The gateway example routes the agent's service to it (docs/operations.md §6a.6).
    const route = checkGatewayConfig(gateway).services.find((s) => s.name === agent.service);
    assert.ok(route, `gateway.example.json: a services entry for ${agent.service}`);
    assert.equal(route.alias, agent.alias, "the gateway's services[].alias is the agent's");
    parsePolicy(route.policy);
    assert.ok(agent.outlets.some((o) => o.name === agent.service), "an outlet named the service");
    for (const inlet of edge.inlets.filter((i) => i.service === agent.service)) {
      assert.ok(agent.outlets.some((o) => o.name === inlet.outlet), `agent outlet ${inlet.outlet}`);
    }
  },
});
