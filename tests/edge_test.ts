/**
 * The edge agent as a real process under its permission set, against a
 * real authority (fresh SoftHSM2 token), two real relays (both following
 * the authority's revocations) and a real gateway process, with real
 * clients (curl, Deno TCP sockets) on the edge's inlets.
 *
 * The edge runs as `deno run -P=edge <flags from "nexus-edge permissions">`:
 * the production way (deploy/systemd/nexus-edge.service), where the flags
 * replace the set's loopback-only defaults with exactly this config's
 * addresses.
 *
 * One Deno.test shares the processes; each property is a step. Durations
 * (relay loss to a working path, revoke to refused connection, idle memory)
 * are measured and printed, never asserted against a time budget beyond a
 * generous bound that says "it did not recover at all".
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { checkEdgeConfig, type EdgeConfig, edgePermissionFlags } from "../edge/config.ts";
import { type GatewayConfig } from "../gateway/gateway.ts";
import { authorityFixture } from "../scripts/support/authority_process.ts";
import { cpuSeconds, memoryOf } from "../scripts/support/process_usage.ts";
import { freePort } from "../scripts/support/free_port.ts";
import { type ServiceProcess, spawnDeno } from "../scripts/support/service_process.ts";
import { curl } from "./support/curl.ts";

const root = new URL("..", import.meta.url).pathname;
const ALIAS = "gw-cust-001";
const CUSTOMER = "cust_001";
/** The header the HTTP inlet adds (the edge's default): the license's id, never its key. */
const HEADER = "X-License-Id";

/** Retries `curl url` until it answers 200; returns the milliseconds it took from `since`. */
async function untilWorking(url: string, since: number, limitMs: number): Promise<number> {
  for (;;) {
    const out = await curl("-f", "--max-time", "5", url);
    if (out.code === 0) return performance.now() - since;
    if (performance.now() - since > limitMs) {
      throw new Error(`${url} did not work again within ${limitMs} ms: ${out.stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * An HTTP backend that tells which service it is and what license header it
 * saw; it keeps the header's values (`seen`) and everything else it received
 * of each request (`received`: request line, every header field, the body).
 */
function httpBackend(service: string) {
  const seen: (string | null)[] = [];
  const received: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const fields = [...req.headers].map(([name, value]) => `${name}: ${value}`).join("\n");
    received.push(`${req.method} ${req.url}\n${fields}\n\n${await req.text()}`);
    if (new URL(req.url).pathname === "/slow") {
      // 4 MiB announced by Content-Length, 64 KiB every 50 ms: a download
      // still in flight when a relay dies.
      const chunk = new Uint8Array(65536);
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (sent === 64) return controller.close();
          await new Promise((r) => setTimeout(r, 50));
          sent++;
          controller.enqueue(chunk);
        },
      });
      return new Response(body, { headers: { "content-length": String(64 * 65536) } });
    }
    const license = req.headers.get(HEADER);
    seen.push(license);
    return Response.json({ service, license: license === null ? "absent" : "present" });
  });
  return { port: server.addr.port, seen, received, close: () => server.shutdown() };
}

/** A TCP echo backend. */
function echoBackend() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) {
      (async () => {
        const buffer = new Uint8Array(16384);
        try {
          for (;;) {
            const n = await conn.read(buffer);
            if (n === null) break;
            for (let w = 0; w < n;) w += await conn.write(buffer.subarray(w, n));
          }
        } catch { /* client gone */ }
        try {
          conn.close();
        } catch { /* closed */ }
      })();
    }
  })().catch(() => {});
  return { port: (listener.addr as Deno.NetAddr).port, close: () => listener.close() };
}

/** Reads until end of stream or error; resolves with how it ended. */
async function readToEnd(conn: Deno.Conn): Promise<"eof" | "error"> {
  const buffer = new Uint8Array(16384);
  try {
    while (await conn.read(buffer) !== null) { /* drain */ }
    return "eof";
  } catch {
    return "error";
  }
}

Deno.test({
  name: "edge process: curl through inlets, license header, relay failover and restart, " +
    "gateway restart, network loss, permission set, revocation",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const fixture = await authorityFixture();
    const dir = `.state/test-edge-${crypto.randomUUID()}`;
    await Deno.mkdir(`${root}${dir}`, { recursive: true });
    const cleanup: (() => Promise<unknown> | unknown)[] = [];
    const step = (name: string, fn: (t: Deno.TestContext) => Promise<void>) =>
      t.step({ name, fn, sanitizeOps: false, sanitizeResources: false });
    try {
      const init = await fixture.run(["init"]);
      assert.equal(init.code, 0, init.stderr);
      // Edge credentials live 6 s here, so refreshes happen during the test.
      const authority = await fixture.serve(["--edge-ttl", "6s"]);
      cleanup.push(() => authority.stop());
      const trustFile = `${fixture.state}/authority.identity.json`;

      const relayPorts = [freePort(), freePort()];
      const relays: (ServiceProcess | null)[] = [null, null];
      const startRelay = async (i: number) => {
        const relay = spawnDeno(`relay ${i}`, [
          "-P=relay",
          "relay/main.ts",
          ...await fixture.relayArgs(relayPorts[i], authority.port),
          "--metrics",
          "off",
        ]);
        relays[i] = relay;
        await relay.waitFor(/^LISTENING/);
      };
      cleanup.push(() => Promise.all(relays.map((r) => r?.stop())));
      await Promise.all([startRelay(0), startRelay(1)]);

      const context = httpBackend("context");
      const orchestrator = httpBackend("orchestrator");
      const echo = echoBackend();
      cleanup.push(() => context.close(), () => orchestrator.close(), () => echo.close());

      // The gateway, registered at both relays.
      const gatewayTicket = JSON.parse(
        (await fixture.run([
          "ticket",
          "create",
          "--json",
          "--attr",
          "role=gateway",
          "--attr",
          `customer_id=${CUSTOMER}`,
          "--attr",
          `relay=${ALIAS}`,
        ])).stdout,
      ).ticket;
      const gatewayConfig: GatewayConfig = {
        stateDir: `${dir}/gateway`,
        authority: { identityFile: trustFile, address: `127.0.0.1:${authority.port}` },
        relays: relayPorts.map((p) => `127.0.0.1:${p}`),
        alias: ALIAS,
        customerId: CUSTOMER,
        ticket: gatewayTicket,
        outlets: [
          {
            name: "context",
            backend: `127.0.0.1:${context.port}`,
            policy: 'subject.role == "edge"',
          },
          {
            name: "orchestrator",
            backend: `127.0.0.1:${orchestrator.port}`,
            policy: 'subject.role == "edge" and subject.tier == "professional"',
          },
          { name: "echo", backend: `127.0.0.1:${echo.port}`, policy: 'subject.role == "edge"' },
        ],
        shutdownGraceMs: 1000,
      };
      const gatewayFile = `${dir}/gateway.json`;
      await Deno.writeTextFile(`${root}${gatewayFile}`, JSON.stringify(gatewayConfig));
      let gateway = spawnDeno("gateway", [
        "-P=gateway",
        "gateway/main.ts",
        "run",
        "--config",
        gatewayFile,
      ]);
      cleanup.push(() => gateway.stop());
      const gatewayId = (await gateway.waitFor(/^READY/)).split(" ")[1];

      // The edge: enrolled with a license key; three inlets.
      const license = JSON.parse(
        (await fixture.run([
          "license",
          "create",
          "--json",
          "--customer",
          CUSTOMER,
          "--tier",
          "professional",
        ])).stdout,
      ).license as string;
      assert.match(license, /^nxl_/);
      // What HTTP inlets send instead: the license's id as the authority names it (the
      // hex SHA-256 of the key; src/authority_client/license_id_test.ts ties it to the store).
      const licenseId = createHash("sha256").update(license, "utf8").digest("hex");
      const inletPorts = { context: freePort(), orchestrator: freePort(), echo: freePort() };
      const edgeConfig: EdgeConfig = {
        stateDir: `${dir}/edge`,
        authority: { identityFile: trustFile, address: `127.0.0.1:${authority.port}` },
        relays: relayPorts.map((p) => `127.0.0.1:${p}`),
        gateway: { alias: ALIAS, customerId: CUSTOMER, identifier: gatewayId },
        // From a file: the config holds no secret (0600, or the edge refuses it).
        licenseFile: `${dir}/edge.license`,
        inlets: [
          { listen: `127.0.0.1:${inletPorts.context}`, outlet: "context" },
          { listen: `127.0.0.1:${inletPorts.orchestrator}`, outlet: "orchestrator", mode: "http" },
          { listen: `127.0.0.1:${inletPorts.echo}`, outlet: "echo" },
        ],
        ops: `127.0.0.1:${freePort()}`,
        // Short, so the network-loss step finishes quickly: keepalives every second.
        idleTimeoutMs: 3000,
      };
      await Deno.writeTextFile(`${root}${dir}/edge.license`, `${license}\n`, { mode: 0o600 });
      const edgeFile = `${dir}/edge.json`;
      await Deno.writeTextFile(`${root}${edgeFile}`, JSON.stringify(edgeConfig));
      const flags = edgePermissionFlags(checkEdgeConfig(edgeConfig), edgeFile);
      const startEdge = (extra: string[] = [], permissionFlags = flags) =>
        spawnDeno("edge", [
          "-P=edge",
          ...permissionFlags,
          "edge/main.ts",
          "run",
          "--config",
          edgeFile,
          ...extra,
        ]);
      let edge = startEdge();
      cleanup.push(() => edge.stop());
      const ready = await edge.waitFor(/^READY/);
      console.log(`edge: ${ready}`);
      assert.match(ready, new RegExp(`gateway=${gatewayId}`));
      const edgeId = ready.split(" ")[1];
      const url = (inlet: keyof typeof inletPorts, path = "/") =>
        `http://127.0.0.1:${inletPorts[inlet]}${path}`;

      await step(
        "curl through the inlets; the HTTP inlet adds the license id, never the key",
        async () => {
          const plain = await curl("-f", url("context"));
          assert.equal(plain.code, 0, plain.stderr);
          assert.deepEqual(JSON.parse(plain.stdout), { service: "context", license: "absent" });
          // A client's own header of that name is replaced, not passed on.
          const before = orchestrator.seen.length;
          // An upgrade attempt is stripped of its Upgrade field (tunnels are
          // off): the backend answers over HTTP and the header is still added.
          const upgrade = ["-H", "Upgrade: websocket", "-H", "Connection: Upgrade"];
          for (
            const extra of [
              [],
              ["-H", `${HEADER}: forged`],
              ["-H", `${HEADER.replaceAll("-", "_")}: forged`],
              ["-X", "POST", "-d", "x=1"],
              upgrade,
            ]
          ) {
            const out = await curl("-f", ...extra, url("orchestrator", "/run"));
            assert.equal(out.code, 0, out.stderr);
            assert.deepEqual(JSON.parse(out.stdout), {
              service: "orchestrator",
              license: "present",
            });
          }
          // Keep-alive: several requests on one connection each get the header.
          const many = await curl("-f", url("orchestrator", "/a"), url("orchestrator", "/b"));
          assert.equal(many.code, 0, many.stderr);
          assert.deepEqual(orchestrator.seen.slice(before), Array(7).fill(licenseId));
          // The key itself reaches no backend, in any part of any request.
          for (const backend of [orchestrator, context]) {
            assert.ok(backend.received.length > 0);
            for (const request of backend.received) {
              assert.ok(
                !request.includes(license.slice(4)),
                `the key reached a backend:\n${request}`,
              );
            }
          }
          assert.ok(!orchestrator.received.some((r) => /forged/.test(r)), "a forged header passed");
        },
      );

      await step("status command and operations endpoint", async () => {
        const ops = edgeConfig.ops!;
        const out = await new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-q",
            "--no-prompt",
            "-P=edge",
            ...flags,
            "edge/main.ts",
            "status",
            "--ops",
            ops,
          ],
          cwd: root,
          stdout: "piped",
          stderr: "piped",
        }).output();
        const text = new TextDecoder().decode(out.stdout);
        assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr));
        assert.match(text, /state\s+up/);
        assert.match(text, new RegExp(`gateway\\s+${gatewayId}`));
        assert.doesNotMatch(text, new RegExp(license), "the license key is not shown");
        const metrics = await (await fetch(`http://${ops}/metrics`)).text();
        assert.match(metrics, /^nexus_edge_path_up 1$/m);
        assert.equal((await fetch(`http://${ops}/readyz`)).status, 200);
        const memory = (await memoryOf([edge.pid])).get(edge.pid)!;
        console.log(`edge idle resident memory: ${(memory.rss / 1024).toFixed(1)} MiB`);
      });

      await step("credential refreshed before expiry, presented in the open channel", async () => {
        const ops = edgeConfig.ops!;
        const status = async () => await (await fetch(`http://${ops}/status`)).json();
        const before = await status();
        const seen = new Set<string>([before.credential.id]);
        const deadline = Date.now() + 15_000;
        while (seen.size < 3 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 250));
          seen.add((await status()).credential.id);
        }
        assert.ok(seen.size >= 3, `credentials seen in 15 s: ${[...seen].join(", ")}`);
        const after = await status();
        assert.equal(after.state, "up");
        assert.equal(after.pathChanges, before.pathChanges, "the channel was not replaced");
        assert.ok(after.credential.expiresAt * 1000 > Date.now(), "the current one is valid");
        assert.equal((await curl("-f", url("context"))).code, 0);
        assert.doesNotMatch(
          edge.stderr.text(200),
          /refresh at relay failed|bad credential refresh/,
        );
      });

      await step("outside its permission set the edge cannot connect (NotCapable)", async () => {
        // A relay that is not in the permission flags: the attempt fails
        // with Deno's permission error and the edge fails over to the next.
        const outside = `127.0.0.1:${freePort()}`;
        const inlet = `127.0.0.1:${freePort()}`;
        const dirFlags = [
          flags.find((f) => f.startsWith("--allow-net"))! + `,${inlet}`,
          `--allow-read=${dir},${trustFile}`,
          `--allow-write=${dir}`,
        ];
        const other = startEdge([
          "--state",
          `${dir}/edge-perm`,
          "--relay",
          outside,
          "--relay",
          `127.0.0.1:${relayPorts[0]}`,
          "--inlet",
          `${inlet}=context`,
          "--ops",
          "off",
          "--log-json",
        ], dirFlags);
        try {
          const refused = await other.stderr.waitFor(/Requires net access/, 30_000).catch((e) => {
            throw new Error(other.stderr.text(), { cause: e });
          });
          assert.ok(refused, other.stderr.text());
          assert.ok(refused.includes(outside), refused);
          // --log-json: one JSON object per line, the failure in its fields.
          const entry = JSON.parse(refused);
          assert.equal(entry.level, "warn");
          assert.equal(entry.relay, outside);
          assert.match(entry.error, /NotCapable|Requires net access/);
          await other.waitFor(/^READY/);
        } finally {
          await other.stop();
        }
        // An inlet outside the set: the start fails with a permission error.
        const denied = startEdge([
          "--state",
          `${dir}/edge-denied`,
          "--inlet",
          `127.0.0.1:${freePort()}=context`,
          "--ops",
          "off",
        ], dirFlags);
        const status = await Promise.race([
          denied.status,
          new Promise<null>((r) => setTimeout(() => r(null), 30_000)),
        ]);
        await denied.stop();
        // Exit status 5: outside the permission set (src/cli/exit_codes.ts).
        assert.equal(status?.code, 5, denied.stderr.text());
        assert.match(denied.stderr.text(), /permission denied: Requires net access/);
      });

      await step("relay killed: in-flight sessions end, new connections fail over", async () => {
        const edgeStatus = async () =>
          await (await fetch(`http://${edgeConfig.ops}/status`)).json();
        const using = (await edgeStatus()).relay as string;
        const index = using.endsWith(`:${relayPorts[0]}`) ? 0 : 1;
        const session = await Deno.connect({ hostname: "127.0.0.1", port: inletPorts.echo });
        await session.write(new TextEncoder().encode("ping"));
        const echoed = new Uint8Array(4);
        assert.equal(await session.read(echoed), 4);
        const ended = readToEnd(session);
        // And an HTTP download in flight: its client must see an error, not
        // a short body passed off as complete.
        const download = new Deno.Command("curl", {
          args: ["-sS", "-o", "/dev/null", "--max-time", "30", url("context", "/slow")],
          stdout: "null",
          stderr: "piped",
        }).spawn();
        await new Promise((r) => setTimeout(r, 500));
        const killedAt = performance.now();
        relays[index]!.signal("SIGKILL");
        await relays[index]!.status;
        const how = await Promise.race([
          ended,
          new Promise((r) => setTimeout(() => r("still open"), 20_000)),
        ]);
        assert.notEqual(how, "still open", "the in-flight session did not end");
        const got = await download.output();
        const complaint = new TextDecoder().decode(got.stderr).trim();
        assert.notEqual(got.code, 0, "the cut download looked complete to curl");
        console.log(`in-flight HTTP download: curl exit ${got.code} (${complaint})`);
        console.log(
          `in-flight session ended (${how}) ${
            (performance.now() - killedAt).toFixed(0)
          } ms after the relay died`,
        );
        const ms = await untilWorking(url("context"), killedAt, 30_000);
        console.log(`relay killed -> working path through the other relay: ${ms.toFixed(0)} ms`);
        assert.notEqual((await edgeStatus()).relay, using);

        // Restart it; then lose the other one: the edge comes back to it.
        await startRelay(index);
        await new Promise((r) => setTimeout(r, 1500)); // the gateway re-registers with backoff
        const other = 1 - index;
        const lostAt = performance.now();
        relays[other]!.signal("SIGKILL");
        await relays[other]!.status;
        const back = await untilWorking(url("context"), lostAt, 30_000);
        console.log(
          `second relay killed -> working path through the restarted one: ${back.toFixed(0)} ms`,
        );
        await startRelay(other);
      });

      await step("network loss (relay frozen): detected by keepalive, path moves", async () => {
        const status = await (await fetch(`http://${edgeConfig.ops}/status`)).json();
        const index = (status.relay as string).endsWith(`:${relayPorts[0]}`) ? 0 : 1;
        const frozenAt = performance.now();
        relays[index]!.signal("SIGSTOP");
        try {
          // Until the edge notices, requests may time out; then they work again.
          const ms = await untilWorking(url("context"), frozenAt, 40_000);
          console.log(`relay frozen (silent network loss) -> working path: ${ms.toFixed(0)} ms`);
        } finally {
          relays[index]!.signal("SIGCONT");
        }
      });

      await step("gateway restart: the inlet stays up, new connections work again", async () => {
        const stoppedAt = performance.now();
        assert.equal(await gateway.stop(), 0, gateway.stderr.text());
        const refused = await curl(url("context"));
        assert.notEqual(refused.code, 0, "no gateway, no session");
        gateway = spawnDeno("gateway", [
          "-P=gateway",
          "gateway/main.ts",
          "run",
          "--config",
          gatewayFile,
        ]);
        await gateway.waitFor(/^READY/);
        const readyAt = performance.now();
        const ms = await untilWorking(url("context"), stoppedAt, 40_000);
        console.log(
          `gateway stopped and restarted -> working path: ${ms.toFixed(0)} ms ` +
            `(of which after the new gateway was READY: ${
              (performance.now() - readyAt).toFixed(0)
            } ms)`,
        );
      });

      await step(
        "every relay down: bounded retries (backoff), then back when they are",
        async () => {
          const failures = async () => {
            const text = await (await fetch(`http://${edgeConfig.ops}/metrics`)).text();
            return Number(/^nexus_edge_path_failures_total (\d+)$/m.exec(text)![1]);
          };
          for (const relay of relays) relay!.signal("SIGKILL");
          await Promise.all(relays.map((relay) => relay!.status));
          const downAt = performance.now();
          const [before, cpuBefore] = [await failures(), await cpuSeconds(edge.pid)];
          await new Promise((r) => setTimeout(r, 8000));
          const attempts = (await failures()) - before;
          const cpu = (await cpuSeconds(edge.pid)) - cpuBefore;
          console.log(
            `all relays down for 8 s: ${attempts} connection attempts, ${cpu.toFixed(2)} CPU s`,
          );
          // Backoff from 0.5 s doubling, two relays per round: about 5 rounds
          // in 8 s. A tight loop would make thousands.
          assert.ok(attempts <= 20, `${attempts} attempts in 8 s: not backing off`);
          assert.ok(attempts >= 2, "it stopped trying");
          await Promise.all([startRelay(0), startRelay(1)]);
          const back = await untilWorking(url("context"), downAt, 60_000);
          console.log(`relays back (after ${(back / 1000).toFixed(1)} s down) -> working path`);
        },
      );

      await step("edge restart reuses its identity and credential", async () => {
        assert.equal(await edge.stop(), 0, edge.stderr.text());
        edge = startEdge();
        const again = await edge.waitFor(/^READY/);
        assert.equal(again.split(" ")[1], edgeId);
        assert.doesNotMatch(edge.stderr.text(), /enrolled at the authority/);
      });

      await step("revoked edge: channel closed and inlet refused, measured", async () => {
        const session = await Deno.connect({ hostname: "127.0.0.1", port: inletPorts.echo });
        await session.write(new TextEncoder().encode("ping"));
        assert.equal(await session.read(new Uint8Array(4)), 4);
        const ended = readToEnd(session).then(() => performance.now());
        const revokedAt = performance.now();
        const revoke = await fixture.run(["revoke", edgeId]);
        assert.equal(revoke.code, 0, revoke.stderr);
        const closedAt = await Promise.race([
          ended,
          new Promise<null>((r) => setTimeout(() => r(null), 20_000)),
        ]);
        assert.ok(closedAt !== null, "the revoked edge's session stayed open");
        console.log(`revoke command -> session closed: ${(closedAt - revokedAt).toFixed(0)} ms`);
        let refusedAt = 0;
        for (;;) {
          const out = await curl(url("context"));
          if (out.code !== 0) {
            refusedAt = performance.now();
            break;
          }
          assert.ok(performance.now() - revokedAt < 20_000, "still served 20 s after revoke");
          await new Promise((r) => setTimeout(r, 100));
        }
        console.log(
          `revoke command -> inlet connection refused: ${(refusedAt - revokedAt).toFixed(0)} ms`,
        );
        // And it stays refused.
        await new Promise((r) => setTimeout(r, 1500));
        assert.notEqual((await curl(url("context"))).code, 0);
        const status = await (await fetch(`http://${edgeConfig.ops}/status`)).json();
        assert.notEqual(status.state, "up");
      });
    } finally {
      for (const fn of cleanup.reverse()) await Promise.resolve(fn()).catch(() => {});
      await Deno.remove(`${root}${dir}`, { recursive: true }).catch(() => {});
      await fixture.remove();
    }
  },
});
