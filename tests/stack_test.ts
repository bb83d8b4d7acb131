/**
 * The README's run command (`npm start` → `deno task stack`) as a real
 * process under its permission set, in a state directory of its own: it
 * brings up the authority, a relay, the demo backends, a gateway and an
 * edge; curl reaches the backends through the edge's TCP inlet (8151) and
 * its HTTP inlet (8152, which adds the license's id, never its key); SIGINT stops
 * everything with exit 0 and frees every port; a second run reuses the
 * state (no ceremony, no enrollment) and serves again.
 *
 * The stack uses fixed ports (4000, 4100, 8151-8153, 9430-9433, 18000,
 * 18151, 18801): this is the only test that may use them; all others use
 * port 0, which the system picks above 32767.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Lines } from "../scripts/support/lines.ts";

const root = new URL("..", import.meta.url).pathname;

const FIXED_PORTS = [4100, 9433, 4000, 9432, 18000, 18801, 18151, 9430, 9431, 8151, 8152, 8153];

/** One run of the stack, started and waited for. */
interface Run {
  child: Deno.ChildProcess;
  stdout: Lines;
  stderr: Lines;
  /** Milliseconds from spawn to the "try" text. */
  startMs: number;
}

async function startStack(state: string): Promise<Run> {
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "--no-prompt", "-P=stack", "scripts/stack.ts", "--state", state],
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

/** SIGINT, then the exit status (SIGKILL and a failure after 45 s). */
async function interrupt(run: Run): Promise<Deno.CommandStatus> {
  run.child.kill("SIGINT");
  const status = await Promise.race([
    run.child.status,
    new Promise<null>((r) => setTimeout(() => r(null), 45_000)),
  ]);
  if (status === null) {
    run.child.kill("SIGKILL");
    await run.child.status;
    throw new Error(`the stack did not stop within 45 s of SIGINT:\n${run.stdout.text()}`);
  }
  await Promise.all([run.stdout.done, run.stderr.done]);
  return status;
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
      assert.match(out1, /\[1\/7\] SoftHSM token \.\.\. created/);
      assert.match(out1, /\[2\/7\] authority key ceremony \.\.\. done/);
      assert.match(out1, /\[6\/7\] gateway .*enrolled with a one-time ticket/);
      assert.match(out1, /\[7\/7\] edge .*license key created/);
      const ids1 = identifiers(out1);
      assert.ok(ids1.authority && ids1.gateway && ids1.edge, `identifiers missing:\n${out1}`);

      await t.step("curl through the TCP inlet 8151 and the HTTP inlet 8152", async () => {
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
        const orchestrator = await curl("http://127.0.0.1:8152/jobs?x=1");
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

      await t.step("secrets stay in 0600 files, out of the output", async () => {
        const pin = await Deno.stat(`${root}${state}/softhsm/user.pin`);
        assert.equal(pin.mode! & 0o777, 0o600);
        const edgeConfig = `${root}${state}/edge.json`;
        assert.equal((await Deno.stat(edgeConfig)).mode! & 0o777, 0o600);
        const license = JSON.parse(await Deno.readTextFile(edgeConfig)).license as string;
        assert.match(license, /^nxl_/);
        assert.ok(!out1.includes(license), "the stack printed the license key");
        const gatewayConfig = JSON.parse(await Deno.readTextFile(`${root}${state}/gateway.json`));
        assert.equal(gatewayConfig.ticket, undefined, "the used ticket was left in the config");
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
        assert.match(out, /stopped: edge \(exit code 0.*gateway \(.*relay \(.*authority \(/);
        assert.match(out, /all stopped/);
        const pids = await servicePids(state);
        assert.equal(pids.length, 4, `service pids in the logs: ${pids}`);
        for (const pid of pids) assert.ok(!(await alive(pid)), `service pid ${pid} is left`);
        assertPortsFree();
      });

      // --- second run: everything reused ------------------------------------------
      await t.step("second run: no ceremony, no enrollment, same identities, serves", async () => {
        const second = await startStack(state);
        running.push(second);
        console.log(`second run: ready after ${second.startMs.toFixed(0)} ms`);
        const out2 = second.stdout.text();
        assert.match(out2, /\[1\/7\] SoftHSM token \.\.\. reused/);
        assert.match(out2, /\[2\/7\] authority key ceremony \.\.\. skipped/);
        assert.match(out2, /\[6\/7\] gateway .*already a member/);
        assert.match(out2, /\[7\/7\] edge .*license reused/);
        assert.doesNotMatch(out2, /created|done: key generated|enrolled with|license key created/);
        assert.deepEqual(identifiers(out2), ids1);
        assert.equal((await curl("http://127.0.0.1:8151/")).service, "context");
        assert.equal((await curl("http://127.0.0.1:8152/")).license, "present");
        const status = await interrupt(second);
        running.pop();
        assert.equal(status.code, 0, `${second.stdout.text()}\n${second.stderr.text()}`);
        assertPortsFree();
      });
    } finally {
      for (const run of running) {
        try {
          run.child.kill("SIGKILL");
        } catch { /* exited */ }
        await run.child.status;
        await Promise.all([run.stdout.done, run.stderr.done]);
      }
      await Deno.remove(`${root}${state}`, { recursive: true }).catch(() => {});
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
