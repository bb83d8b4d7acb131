/**
 * The README's run command (`npm start` → `deno task stack`) as a real
 * process under its permission set, in a state directory of its own: it
 * brings up the authority, a relay, the demo backends, a service agent for
 * the orchestrator, a gateway and an edge; curl reaches the backends
 * through the edge's TCP inlet (8151, a Phase 2 outlet at the gateway), its
 * HTTP inlet 8152 end to end to the agent (the gateway routes ciphertext:
 * its metrics count the service's messages and it has no outlet of that
 * name) and 8153 (Phase 2); the HTTP inlets add the license's id, never
 * its key. SIGINT stops everything with exit 0 and frees every port; a
 * second run reuses the state (no ceremony, no enrollment), serves again,
 * and stops on SIGTERM the same way.
 *
 * The stack uses fixed ports (4000, 4100, 8151-8153, 9430-9434, 18000,
 * 18151, 18801): this is the only test that may use them; all others use
 * port 0, which the system picks above 32767.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Lines } from "../scripts/support/lines.ts";

const root = new URL("..", import.meta.url).pathname;

const FIXED_PORTS = [
  4100,
  9433,
  4000,
  9432,
  18000,
  18801,
  18151,
  9434,
  9430,
  9431,
  8151,
  8152,
  8153,
];
const GATEWAY_METRICS = "http://127.0.0.1:9430/metrics";
const AGENT_METRICS = "http://127.0.0.1:9434/metrics";

/** One run of the stack, started and waited for. */
interface Run {
  child: Deno.ChildProcess;
  stdout: Lines;
  stderr: Lines;
  /** Milliseconds from spawn to the "try" text. */
  startMs: number;
}

async function startStack(state: string, extra: string[] = []): Promise<Run> {
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "--no-prompt", "-P=stack", "scripts/stack.ts", "--state", state, ...extra],
    cwd: root,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = new Lines(child.stdout);
  const stderr = new Lines(child.stderr);
  try {
    const line = await stdout.waitFor(/Ctrl-C stops everything/, 120_000);
    if (line === null) throw new Error('output ended without the "Ctrl-C stops everything" line');
  } catch (error) {
    try {
      child.kill("SIGTERM");
    } catch { /* exited */ }
    await child.status;
    await Promise.all([stdout.done, stderr.done]);
    throw new Error(`the stack did not come up:\n${stdout.text()}\n${stderr.text()}`, {
      cause: error,
    });
  }
  return { child, stdout, stderr, startMs: performance.now() - started };
}

/** SIGINT (or `signal`), then the exit status (SIGKILL and a failure after 45 s). */
async function interrupt(
  run: Run,
  signal: "SIGINT" | "SIGTERM" = "SIGINT",
): Promise<Deno.CommandStatus> {
  run.child.kill(signal);
  const status = await Promise.race([
    run.child.status,
    new Promise<null>((r) => setTimeout(() => r(null), 45_000)),
  ]);
  if (status === null) {
    run.child.kill("SIGKILL");
    await run.child.status;
    throw new Error(`the stack did not stop within 45 s of ${signal}:\n${run.stdout.text()}`);
  }
  await Promise.all([run.stdout.done, run.stderr.done]);
  return status;
}

/**
 * After a test, whatever happened: the runs still up stopped (SIGINT first,
 * so the stack stops its services; a SIGKILL of the stack alone would leave
 * them running), and the state directory removed.
 */
async function stopAll(running: Run[], state: string): Promise<void> {
  for (const run of running) await interrupt(run).catch(() => {});
  for (const run of running) {
    try {
      run.child.kill("SIGKILL");
    } catch { /* exited */ }
    await run.child.status;
    await Promise.all([run.stdout.done, run.stderr.done]);
  }
  await Deno.remove(`${root}${state}`, { recursive: true }).catch(() => {});
}

async function curl(url: string): Promise<Record<string, string>> {
  const out = await new Deno.Command("curl", {
    args: ["-sS", "--max-time", "15", url],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, `curl ${url}: ${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(stdout);
}

/** A metric's value (the sum over the series whose labels include `labels`). */
async function metric(url: string, name: string, labels: string): Promise<number | null> {
  const text = await (await fetch(url)).text();
  let sum: number | null = null;
  for (const line of text.split("\n")) {
    const match = line.match(/^(\w+)(?:\{(.*)\})? (\S+)$/);
    if (match === null || match[1] !== name || !(match[2] ?? "").includes(labels)) continue;
    sum = (sum ?? 0) + Number(match[3]);
  }
  return sum;
}

/** The ports the stack holds, free again (each one bindable now). */
function assertPortsFree(): void {
  for (const port of FIXED_PORTS) {
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
    } catch (error) {
      throw new Error(`port ${port} is still in use after the stack stopped`, { cause: error });
    }
  }
}

/** The services' process ids, from the "started <name> (pid N)" lines of their logs. */
async function servicePids(state: string): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir(`${root}${state}/logs`)) {
    const text = await Deno.readTextFile(`${root}${state}/logs/${entry.name}`);
    for (const match of text.matchAll(/stack: started \w+ \(pid (\d+)\)/g)) {
      pids.push(Number(match[1]));
    }
  }
  return pids;
}

async function alive(pid: number): Promise<boolean> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    return !/^State:\s+Z/m.test(status); // a zombie has exited
  } catch {
    return false;
  }
}

const identifiers = (text: string) => ({
  authority: text.match(/^ {2}authority\s+\S+\s+(I[0-9a-f]{64})$/m)?.[1],
  agent: text.match(/^ {2}agent\s+svc-orchestrator-cust-001 .*(I[0-9a-f]{64})$/m)?.[1],
  gateway: text.match(/^ {2}gateway\s+.*(I[0-9a-f]{64})$/m)?.[1],
  edge: text.match(/^ {2}edge\s+(I[0-9a-f]{64})$/m)?.[1],
});

Deno.test({
  name: "stack: npm start's command brings everything up, serves through the edge, " +
    "stops cleanly on SIGINT, and reuses its state on a second run",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const state = `.state/test-stack-${crypto.randomUUID()}`;
    const running: Run[] = [];
    try {
      // --- first run: token, ceremony, enrollments --------------------------------
      const first = await startStack(state);
      running.push(first);
      console.log(`first run: ready after ${first.startMs.toFixed(0)} ms`);
      const out1 = first.stdout.text();
      assert.match(out1, /\[1\/8\] SoftHSM token \.\.\. created/);
      assert.match(out1, /\[2\/8\] authority key ceremony \.\.\. done/);
      assert.match(
        out1,
        /\[6\/8\] service agent svc-orchestrator-cust-001 .*enrolled with a one-time ticket \(role=service/,
      );
      assert.match(out1, /\[7\/8\] gateway .*enrolled with a one-time ticket.*path to the agent/);
      assert.match(out1, /\[8\/8\] edge .*license key created/);
      assert.match(out1, /127\.0\.0\.1:8152 -> orchestrator \(end to end, http\)/);
      const ids1 = identifiers(out1);
      assert.ok(
        ids1.authority && ids1.agent && ids1.gateway && ids1.edge,
        `identifiers missing:\n${out1}`,
      );

      await t.step("curl through the TCP inlet 8151 and the HTTP inlets 8152, 8153", async () => {
        const context = await curl("http://127.0.0.1:8151/");
        assert.deepEqual(context, {
          service: "context",
          backend: "127.0.0.1:18151",
          method: "GET",
          path: "/",
          license: "absent", // a TCP inlet passes bytes as they are
          licenseKey: "absent",
        });
        // The HTTP inlets add the license's id (hex SHA-256 of the key, as the authority
        // names it) and nothing the backend received looks like a license key.
        const key = JSON.parse(await Deno.readTextFile(`${root}${state}/edge.json`)).license;
        const id = createHash("sha256").update(key, "utf8").digest("hex");
        // 8152 is end to end: the backend behind the agent answers.
        const orchestrator = await curl("http://127.0.0.1:8152/jobs?x=1");
        assert.equal(orchestrator.backend, "127.0.0.1:18000");
        assert.equal(orchestrator.service, "orchestrator");
        assert.equal(orchestrator.path, "/jobs");
        assert.equal(orchestrator.license, "present", "the HTTP inlet added the license header");
        assert.equal(orchestrator.licenseId, id);
        assert.equal(orchestrator.licenseKey, "absent", "the backend received the license key");
        const inference = await curl("http://127.0.0.1:8153/");
        assert.equal(inference.service, "inference");
        assert.equal(inference.license, "present");
        assert.equal(inference.licenseId, id);
        assert.equal(inference.licenseKey, "absent", "the backend received the license key");
        for (const answer of [context, orchestrator, inference]) {
          assert.ok(!JSON.stringify(answer).includes(key), "the key is in a backend's answer");
        }
      });

      await t.step("8152 went end to end: the gateway routed it, the agent served it", async () => {
        // The gateway forwarded the service's inner messages both ways ...
        for (const direction of ["to_service", "to_edge"]) {
          const n = await metric(
            GATEWAY_METRICS,
            "nexus_gateway_service_messages_total",
            `service="orchestrator",direction="${direction}"`,
          );
          assert.ok(n !== null && n > 0, `gateway service messages ${direction}: ${n}`);
        }
        assert.equal(
          await metric(GATEWAY_METRICS, "nexus_gateway_service_path_up", 'service="orchestrator"'),
          1,
        );
        // ... and has no Phase 2 outlet of that name (its outlets: inference, context).
        const gatewayText = await (await fetch(GATEWAY_METRICS)).text();
        assert.doesNotMatch(gatewayText, /outlet="orchestrator"/);
        assert.ok(
          (await metric(GATEWAY_METRICS, "nexus_gateway_sessions_total", 'outlet="context"'))! > 0,
        );
        // The agent took the session, through an edge's inner channel.
        assert.ok(
          (await metric(AGENT_METRICS, "nexus_agent_sessions_total", 'outlet="orchestrator"'))! >
            0,
        );
        assert.equal(await metric(AGENT_METRICS, "nexus_agent_edge_channels", ""), 1);
        assert.equal(await metric(AGENT_METRICS, "nexus_agent_gateway_channels", ""), 1);
      });

      await t.step("secrets stay in 0600 files, out of the output", async () => {
        const pin = await Deno.stat(`${root}${state}/softhsm/user.pin`);
        assert.equal(pin.mode! & 0o777, 0o600);
        const edgeConfig = `${root}${state}/edge.json`;
        assert.equal((await Deno.stat(edgeConfig)).mode! & 0o777, 0o600);
        const license = JSON.parse(await Deno.readTextFile(edgeConfig)).license as string;
        assert.match(license, /^nxl_/);
        assert.ok(!out1.includes(license), "the stack printed the license key");
        for (const name of ["gateway", "agent"]) {
          const file = `${root}${state}/${name}.json`;
          assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600, `${name}.json`);
          const config = JSON.parse(await Deno.readTextFile(file));
          assert.equal(config.ticket, undefined, `the used ticket was left in ${name}.json`);
        }
        for await (const entry of Deno.readDir(`${root}${state}/logs`)) {
          const log = await Deno.readTextFile(`${root}${state}/logs/${entry.name}`);
          assert.ok(!log.includes(license), `${entry.name} holds the license key`);
        }
      });

      await t.step("SIGINT: exit 0, every service stopped, every port free", async () => {
        const status = await interrupt(first);
        running.pop();
        assert.equal(status.code, 0, `${first.stdout.text()}\n${first.stderr.text()}`);
        const out = first.stdout.text();
        assert.match(out, /SIGINT: stopping edge, gateway, agent, relay, authority/);
        assert.match(
          out,
          /stopped: edge \(exit code 0.*gateway \(exit code 0.*agent \(exit code 0.*relay \(exit code 0.*authority \(exit code 0/,
        );
        assert.match(out, /all stopped/);
        const pids = await servicePids(state);
        assert.equal(pids.length, 5, `service pids in the logs: ${pids}`);
        for (const pid of pids) assert.ok(!(await alive(pid)), `service pid ${pid} is left`);
        assertPortsFree();
      });

      // --- second run: everything reused ------------------------------------------
      await t.step(
        "second run: no ceremony, no enrollment, same identities, serves; SIGTERM",
        async () => {
          const second = await startStack(state);
          running.push(second);
          console.log(`second run: ready after ${second.startMs.toFixed(0)} ms`);
          const out2 = second.stdout.text();
          assert.match(out2, /\[1\/8\] SoftHSM token \.\.\. reused/);
          assert.match(out2, /\[2\/8\] authority key ceremony \.\.\. skipped/);
          assert.match(out2, /\[6\/8\] service agent .*already a member/);
          assert.match(out2, /\[7\/8\] gateway .*already a member/);
          assert.match(out2, /\[8\/8\] edge .*license reused/);
          assert.doesNotMatch(
            out2,
            /created|done: key generated|enrolled with|license key created/,
          );
          assert.deepEqual(identifiers(out2), ids1);
          assert.equal((await curl("http://127.0.0.1:8151/")).service, "context");
          const orchestrator = await curl("http://127.0.0.1:8152/");
          assert.equal(orchestrator.service, "orchestrator");
          assert.equal(orchestrator.license, "present");
          assert.ok(
            (await metric(AGENT_METRICS, "nexus_agent_sessions_total", 'outlet="orchestrator"'))! >
              0,
            "the second run's agent did not serve 8152",
          );
          const status = await interrupt(second, "SIGTERM");
          running.pop();
          assert.equal(status.code, 0, `${second.stdout.text()}\n${second.stderr.text()}`);
          assert.match(
            second.stdout.text(),
            /SIGTERM: stopping .*\nstopped: edge \(exit code 0.*gateway \(exit code 0.*agent \(exit code 0.*relay \(exit code 0.*authority \(exit code 0/,
          );
          const pids = await servicePids(state);
          assert.equal(pids.length, 10, `service pids in the logs: ${pids}`);
          for (const pid of pids) assert.ok(!(await alive(pid)), `service pid ${pid} is left`);
          assertPortsFree();
        },
      );
    } finally {
      await stopAll(running, state);
    }
  },
});

Deno.test({
  name: "stack: --replicas 3 moves a SQLite stack's store to PostgreSQL; replicas serve, " +
    "one is killed, one leads; PostgreSQL stops with the stack",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const state = `.state/test-stack-replicas-${crypto.randomUUID()}`;
    const running: Run[] = [];
    const pgDir = `/var/tmp/nexus-stack-postgres-${
      createHash("sha256").update(`${root}${state}`).digest("hex").slice(0, 16)
    }`;
    try {
      const sqlite = await startStack(state);
      running.push(sqlite);
      const ids = identifiers(sqlite.stdout.text());
      assert.equal((await interrupt(sqlite)).code, 0);
      running.pop();

      const replicated = await startStack(state, ["--replicas", "3"]);
      running.push(replicated);
      const out = replicated.stdout.text();
      assert.match(
        out,
        /PostgreSQL on 127\.0\.0\.1:5433 \.\.\. up .*the SQLite store moved into it, audit chain verified/,
      );
      assert.match(
        out,
        /\[3\/8\] 3 authority replicas on 127\.0\.0\.1:4100, 127\.0\.0\.1:4101, 127\.0\.0\.1:4102/,
      );
      // The same members (moved, not enrolled again), serving.
      const again = identifiers(out);
      assert.deepEqual(
        { agent: again.agent, gateway: again.gateway, edge: again.edge },
        { agent: ids.agent, gateway: ids.gateway, edge: ids.edge },
      );
      assert.ok(ids.authority !== undefined && out.includes(ids.authority), "the same authority");
      assert.doesNotMatch(out, /enrolled with|license key created|done: key generated/);
      assert.equal((await curl("http://127.0.0.1:8151/")).service, "context");

      const metrics = ["9433", "9435", "9436"].map((port) => `http://127.0.0.1:${port}/metrics`);
      const leaders = async (urls: string[]) =>
        (await Promise.all(urls.map((url) => metric(url, "nexus_authority_leader", "")))).filter(
          (v) => v === 1,
        ).length;
      assert.equal(await leaders(metrics), 1, "one leader among three");
      // SIGKILL the first replica: the others go on, and one of them leads.
      const log = await Deno.readTextFile(`${root}${state}/logs/authority.log`);
      const pid = Number([...log.matchAll(/stack: started \w+ \(pid (\d+)\)/g)].at(-1)![1]);
      Deno.kill(pid, "SIGKILL");
      const deadline = Date.now() + 10_000;
      while (await leaders(metrics.slice(1)) !== 1) {
        if (Date.now() > deadline) throw new Error("no leader among the two replicas left");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.equal((await curl("http://127.0.0.1:8153/")).service, "inference");

      assert.equal((await interrupt(replicated)).code, 0);
      running.pop();
      assert.match(replicated.stdout.text(), /stopped: .*authority-3 \(exit code 0.*postgresql/);
      assertPortsFree();
      Deno.listen({ hostname: "127.0.0.1", port: 5433 }).close();
    } finally {
      await stopAll(running, state);
      // The stack's cluster lives outside the test's writable paths (the
      // postgres user's, in /var/tmp): removed the way the stack's --reset does.
      await new Deno.Command("rm", { args: ["-rf", pgDir] }).output();
    }
  },
});

Deno.test("stack: --help (also through npm start), and a state directory outside ./.state is refused", async () => {
  const run = async (...args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-q", "--no-prompt", "-P=stack", "scripts/stack.ts", ...args],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    return {
      code: out.code,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
    };
  };
  const help = await run("--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: npm start/);
  assert.match(help.stdout, /Ctrl-C stops everything/);
  const outside = await run("--state", "/tmp/elsewhere");
  assert.equal(outside.code, 2);
  assert.match(outside.stderr, /--state must be a directory under \.\/\.state/);
  const unknown = await run("--no-such-flag");
  assert.equal(unknown.code, 2);
  // The README's own command, through npm and the set-up script, reaches
  // the same program (the set-up finds everything installed and says so
  // at most; it runs `deno task stack` with the arguments).
  const npm = await new Deno.Command("npm", {
    args: ["start", "--silent", "--", "--help"],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const npmOut = new TextDecoder().decode(npm.stdout);
  assert.equal(npm.code, 0, npmOut + new TextDecoder().decode(npm.stderr));
  assert.match(npmOut, /Usage: npm start/);
});
