/**
 * End to end to the backend (docs/architecture.md §5.10, docs/security.md
 * "Gateway compromise"), across real processes: the authority (fresh
 * SoftHSM2 token), a relay, the gateway in routing-only mode for the
 * service `orchestrator` (and one Phase 2 outlet of its own, the control),
 * the service agent next to the backends, and edges, with real clients
 * (curl, redis-cli, psql, Deno sockets).
 *
 * The gateway reaches the relay through a tap (a TCP proxy that keeps
 * every byte; the relay's credential names the tap's address too), and its
 * Phase 2 backend through another. A marker sent end to end must appear at
 * the backend and nowhere in what the gateway sent or received, logged, or
 * holds in memory (/proc/<pid>/mem); the same kind of marker through the
 * Phase 2 outlet must appear in the gateway's backend tap and memory: the
 * control that shows the tap and the scan would have seen it.
 *
 * One Deno.test shares the processes; each property is a step.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { checkEdgeConfig, type EdgeConfig, edgePermissionFlags } from "../edge/config.ts";
import type { GatewayConfig } from "../gateway/gateway.ts";
import type { AgentConfig } from "../agent/config.ts";
import { freePort } from "../scripts/support/free_port.ts";
import { memoryOf } from "../scripts/support/process_usage.ts";
import { type ServiceProcess, spawnDeno } from "../scripts/support/service_process.ts";
import { authorityFixture } from "../scripts/support/authority_process.ts";
import {
  concat,
  exchange,
  haveCommands,
  randomBytes,
  redisCli,
  redisServer,
  tcpBackend,
} from "./support/backends.ts";
import { curl } from "./support/curl.ts";
import { startPostgres } from "./support/postgres.ts";
import { scanMemoryOf, startTap } from "./support/tap.ts";

const root = new URL("..", import.meta.url).pathname;
const CUSTOMER = "cust_001";
const GATEWAY_ALIAS = "gw-cust-001";
const AGENT_ALIAS = "svc-orchestrator-cust-001";
/** Revocation bound at the agent (revoke command's exit to the inner channel's close). */
const REVOCATION_BOUND_MS = 5000;

const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** An HTTP backend that keeps what it received and answers with what it saw. */
function httpBackend(service: string) {
  const received: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const body = await req.text();
    received.push(`${req.method} ${new URL(req.url).pathname}\n${body}`);
    return Response.json({
      service,
      path: new URL(req.url).pathname,
      licenseId: req.headers.get("x-license-id"),
      bytes: body.length,
    });
  });
  return {
    port: server.addr.port,
    received,
    saw: (text: string) => received.some((r) => r.includes(text)),
    close: () => server.shutdown(),
  };
}

/** A TCP backend that accepts connections and reads nothing from them. */
function stallBackend() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  (async () => {
    for await (const conn of listener) held.push(conn);
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close() {
      listener.close();
      for (const conn of held) {
        try {
          conn.close();
        } catch { /* closed */ }
      }
    },
  };
}

async function ticket(fixture: Awaited<ReturnType<typeof authorityFixture>>, ...attrs: string[]) {
  const out = await fixture.run([
    "ticket",
    "create",
    "--json",
    ...attrs.flatMap((a) => ["--attr", a]),
  ]);
  assert.equal(out.code, 0, out.stderr);
  return JSON.parse(out.stdout).ticket as string;
}

Deno.test({
  name: "end to end: curl, redis-cli and psql through a routing-only gateway that sees " +
    "ciphertext only; sessions, half-close, backpressure; revocation of an edge and of the agent",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const fixture = await authorityFixture();
    const dir = `.state/test-e2e-${crypto.randomUUID()}`;
    await Deno.mkdir(`${root}${dir}`, { recursive: true });
    const cleanup: (() => Promise<unknown> | unknown)[] = [];
    const step = (name: string, fn: () => Promise<void>) =>
      t.step({ name, fn, sanitizeOps: false, sanitizeResources: false });
    try {
      assert.equal((await fixture.run(["init"])).code, 0);
      const authority = await fixture.serve();
      cleanup.push(() => authority.stop());
      const trustFile = `${fixture.state}/authority.identity.json`;
      const authorityAddress = `127.0.0.1:${authority.port}`;

      // The relay, and the tap the gateway reaches it through.
      const relayPort = freePort();
      const tapPort = freePort();
      const relay = spawnDeno("relay", [
        "-P=relay",
        "relay/main.ts",
        ...await fixture.relayArgs(relayPort, authority.port, [`127.0.0.1:${tapPort}`]),
        "--metrics",
        "off",
      ]);
      cleanup.push(() => relay.stop());
      await relay.waitFor(/^LISTENING/, 20_000);
      const relayTap = startTap(relayPort, tapPort);
      cleanup.push(() => relayTap.close());

      // Backends next to the agent, and the gateway's own (Phase 2) one behind a tap.
      const orchestrator = httpBackend("orchestrator");
      const control = httpBackend("control");
      const controlTap = startTap(control.port);
      // A backend that accepts and reads nothing: sessions to it stall with
      // their data in flight, so it sits in the memory of whoever carries it.
      const stall = stallBackend();
      const stallTap = startTap(stall.port);
      cleanup.push(() => stall.close(), () => stallTap.close());
      const blob = tcpBackend();
      cleanup.push(() => orchestrator.close(), () => control.close(), () => controlTap.close());
      cleanup.push(() => blob.close());
      const haveRedis = await haveCommands("redis-server", "redis-cli");
      const redis = haveRedis ? await redisServer() : null;
      if (redis) cleanup.push(() => redis.stop());
      const havePsql = await haveCommands("psql");
      const postgres = havePsql ? await startPostgres() : null;
      if (postgres) cleanup.push(() => postgres.stop());

      // The agent, next to the backends.
      const agentConfig: AgentConfig = {
        stateDir: `${dir}/agent`,
        authority: { identityFile: trustFile, address: authorityAddress },
        relays: [`127.0.0.1:${relayPort}`],
        alias: AGENT_ALIAS,
        customerId: CUSTOMER,
        service: "orchestrator",
        ticket: await ticket(
          fixture,
          "role=service",
          `customer_id=${CUSTOMER}`,
          "service=orchestrator",
          `relay=${AGENT_ALIAS}`,
        ),
        outlets: [
          {
            name: "orchestrator",
            backend: `127.0.0.1:${orchestrator.port}`,
            policy: 'subject.role == "edge"',
          },
          { name: "blob", backend: `127.0.0.1:${blob.port}`, policy: 'subject.role == "edge"' },
          { name: "stall", backend: `127.0.0.1:${stall.port}`, policy: 'subject.role == "edge"' },
          ...(redis
            ? [{
              name: "redis",
              backend: `127.0.0.1:${redis.port}`,
              policy: 'subject.role == "edge"',
            }]
            : []),
          ...(postgres
            ? [{
              name: "postgres",
              backend: `127.0.0.1:${postgres.port}`,
              policy: 'subject.role == "edge"',
            }]
            : []),
        ],
        ops: `127.0.0.1:${freePort()}`,
        shutdownGraceMs: 1000,
      };
      await Deno.writeTextFile(`${root}${dir}/agent.json`, JSON.stringify(agentConfig), {
        mode: 0o600,
      });
      const agent = spawnDeno("agent", [
        "-P=agent",
        "agent/main.ts",
        "run",
        "--config",
        `${dir}/agent.json`,
      ]);
      cleanup.push(() => agent.stop());
      const agentId = (await agent.waitFor(/^READY/, 30_000)).split(" ")[1];

      // The gateway: routing only for the service; one Phase 2 outlet as the control.
      const gatewayConfig: GatewayConfig = {
        stateDir: `${dir}/gateway`,
        authority: { identityFile: trustFile, address: authorityAddress },
        relays: [`127.0.0.1:${tapPort}`],
        alias: GATEWAY_ALIAS,
        customerId: CUSTOMER,
        ticket: await ticket(
          fixture,
          "role=gateway",
          `customer_id=${CUSTOMER}`,
          `relay=${GATEWAY_ALIAS}`,
        ),
        services: [{
          name: "orchestrator",
          alias: AGENT_ALIAS,
          policy: 'subject.role == "edge"',
          identifier: agentId,
        }],
        outlets: [
          {
            name: "control",
            backend: `127.0.0.1:${controlTap.port}`,
            policy: 'subject.role == "edge"',
          },
          {
            name: "stall",
            backend: `127.0.0.1:${stallTap.port}`,
            policy: 'subject.role == "edge"',
          },
        ],
        ops: `127.0.0.1:${freePort()}`,
        shutdownGraceMs: 1000,
      };
      await Deno.writeTextFile(`${root}${dir}/gateway.json`, JSON.stringify(gatewayConfig), {
        mode: 0o600,
      });
      const gateway = spawnDeno("gateway", [
        "-P=gateway",
        "gateway/main.ts",
        "run",
        "--config",
        `${dir}/gateway.json`,
      ]);
      cleanup.push(() => gateway.stop());
      const gatewayReady = await gateway.waitFor(/^READY/, 30_000);
      const gatewayId = gatewayReady.split(" ")[1];
      const gatewayMetrics = /metrics=(\S+)/.exec(gatewayReady)![1];

      // Edges: A carries everything; B is revoked to measure the agent's cut-off.
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
      await Deno.writeTextFile(`${root}${dir}/edge.license`, `${license}\n`, { mode: 0o600 });
      const edges: ServiceProcess[] = [];
      cleanup.push(() => Promise.all(edges.map((e) => e.stop())));
      const startEdge = async (name: string, inlets: EdgeConfig["inlets"]) => {
        const config: EdgeConfig = {
          stateDir: `${dir}/${name}`,
          authority: { identityFile: trustFile, address: authorityAddress },
          relays: [`127.0.0.1:${relayPort}`],
          gateway: { alias: GATEWAY_ALIAS, customerId: CUSTOMER, identifier: gatewayId },
          licenseFile: `${dir}/edge.license`,
          inlets,
          ops: `127.0.0.1:${freePort()}`,
          idleTimeoutMs: 5000,
        };
        const file = `${dir}/${name}.json`;
        await Deno.writeTextFile(`${root}${file}`, JSON.stringify(config));
        const edge = spawnDeno(name, [
          "-P=edge",
          ...edgePermissionFlags(checkEdgeConfig(config), file),
          "edge/main.ts",
          "run",
          "--config",
          file,
        ]);
        edges.push(edge);
        const ready = await edge.waitFor(/^READY/, 30_000);
        return { process: edge, identifier: ready.split(" ")[1] };
      };
      const ports = {
        orchestrator: freePort(),
        blob: freePort(),
        redis: freePort(),
        postgres: freePort(),
        control: freePort(),
        stallE2e: freePort(),
        stallPhase2: freePort(),
      };
      const edgeA = await startEdge("edge-a", [
        { listen: `127.0.0.1:${ports.orchestrator}`, service: "orchestrator", mode: "http" },
        { listen: `127.0.0.1:${ports.blob}`, service: "orchestrator", outlet: "blob" },
        { listen: `127.0.0.1:${ports.redis}`, service: "orchestrator", outlet: "redis" },
        { listen: `127.0.0.1:${ports.postgres}`, service: "orchestrator", outlet: "postgres" },
        { listen: `127.0.0.1:${ports.control}`, outlet: "control", mode: "http" },
        { listen: `127.0.0.1:${ports.stallE2e}`, service: "orchestrator", outlet: "stall" },
        { listen: `127.0.0.1:${ports.stallPhase2}`, outlet: "stall" },
      ]);

      const e2eMarker = `E2E-MARKER-${crypto.randomUUID()}`;
      const controlMarker = `PHASE2-MARKER-${crypto.randomUUID()}`;

      await step("curl end to end: the agent's backend answers, with the license id", async () => {
        const out = await curl(
          "-f",
          "--data-binary",
          e2eMarker.repeat(200),
          `http://127.0.0.1:${ports.orchestrator}/v1/run`,
        );
        assert.equal(out.code, 0, out.stderr);
        const answer = JSON.parse(out.stdout);
        assert.equal(answer.service, "orchestrator");
        assert.match(answer.licenseId, /^[0-9a-f]{64}$/);
        assert.ok(orchestrator.saw(e2eMarker), "the backend did not get the marker");
        // And the Phase 2 control, through the gateway's own outlet.
        const phase2 = await curl(
          "-f",
          "--data-binary",
          controlMarker.repeat(200),
          `http://127.0.0.1:${ports.control}/v1/control`,
        );
        assert.equal(phase2.code, 0, phase2.stderr);
        assert.ok(control.saw(controlMarker));
      });

      await step("redis-cli end to end", async () => {
        if (redis === null) {
          console.error("e2e_test: redis-server or redis-cli missing; step skipped");
          return;
        }
        assert.equal(await redisCli(ports.redis, ["SET", "e2e", e2eMarker]), "OK");
        assert.equal(await redisCli(ports.redis, ["GET", "e2e"]), e2eMarker);
      });

      await step("psql end to end", async () => {
        if (postgres === null) {
          console.error("e2e_test: psql missing; step skipped");
          return;
        }
        const psql = (sql: string) =>
          new Deno.Command("psql", {
            args: [
              "-h",
              "127.0.0.1",
              "-p",
              String(ports.postgres),
              "-U",
              postgres.user,
              "-d",
              postgres.database,
              "-Atc",
              sql,
            ],
            env: { PGCONNECT_TIMEOUT: "10" },
            stdout: "piped",
            stderr: "piped",
          }).output();
        const created = await psql(
          `create table e2e (note text); insert into e2e values ('${e2eMarker}');`,
        );
        assert.equal(created.code, 0, new TextDecoder().decode(created.stderr));
        const read = await psql("select note from e2e");
        assert.equal(new TextDecoder().decode(read.stdout).trim(), e2eMarker);
      });

      await step(
        "100 concurrent sessions, random payloads checked by SHA-256 both ways",
        async () => {
          const results = await Promise.all(
            Array.from({ length: 100 }, async (_, i) => {
              const payload = randomBytes(1000 + i * 997);
              const reply = await exchange(
                ports.blob,
                concat([new TextEncoder().encode("R"), payload]),
              );
              return {
                digest:
                  sha(reply.subarray(0, 32)) === sha(createHash("sha256").update(payload).digest()),
                reversed: sha(reply.subarray(32)) === sha(payload.slice().reverse()),
              };
            }),
          );
          assert.ok(results.every((r) => r.digest && r.reversed));
        },
      );

      await step(
        "half-close: the client shuts its write side and still receives the whole reply",
        async () => {
          const reply = await exchange(ports.blob, new TextEncoder().encode("G300000"));
          assert.equal(reply.length, 32 + 300_000);
          assert.equal(
            sha(reply.subarray(0, 32)),
            sha(createHash("sha256").update(reply.subarray(32)).digest()),
          );
        },
      );

      await step(
        "backpressure: a slow reader of 32 MiB gets every byte; memory stays bounded",
        async () => {
          const pids = [gateway.pid, agent.pid];
          const before = await memoryOf(pids);
          const size = 32 * 1024 * 1024;
          const conn = await Deno.connect({ hostname: "127.0.0.1", port: ports.blob });
          await conn.write(new TextEncoder().encode(`G${size}`));
          await conn.closeWrite();
          const hash = createHash("sha256");
          const buffer = new Uint8Array(64 * 1024);
          let got = 0;
          let head: Uint8Array | null = null;
          let peak = 0;
          for (;;) {
            const n = await conn.read(buffer);
            if (n === null) break;
            let chunk = buffer.subarray(0, n);
            if (head === null || head.length < 32) {
              const need = 32 - (head?.length ?? 0);
              head = concat([head ?? new Uint8Array(0), chunk.subarray(0, need)]);
              chunk = chunk.subarray(need);
            }
            hash.update(chunk);
            got += chunk.length;
            // Slow: 64 KiB, then 2 ms; and sample the processes' memory now and then.
            await new Promise((r) => setTimeout(r, 2));
            if (got % (4 * 1024 * 1024) < n) {
              const now = await memoryOf(pids);
              peak = Math.max(peak, ...pids.map((p) => now.get(p)!.rss - before.get(p)!.rss));
            }
          }
          conn.close();
          assert.equal(got, size);
          assert.equal(
            hash.digest("hex"),
            [...head!].map((b) => b.toString(16).padStart(2, "0")).join(""),
          );
          console.log(
            `backpressure: gateway and agent RSS grew at most ${(peak / 1024).toFixed(1)} MiB`,
          );
          assert.ok(peak < 64 * 1024, `memory grew by ${peak} KiB`);
        },
      );

      await step(
        "the gateway never saw the end-to-end marker; the control shows it would have",
        async () => {
          // 4 MiB of each marker into a stalled session, end to end and
          // Phase 2: whatever the gateway holds of them sits in its memory now.
          const writers = await Promise.all(
            [[ports.stallE2e, e2eMarker], [ports.stallPhase2, controlMarker]].map(
              async ([port, marker]) => {
                const conn = await Deno.connect({ hostname: "127.0.0.1", port: port as number });
                const bytes = new TextEncoder().encode((marker as string).repeat(64 * 1024 / 60));
                const writing = (async () => {
                  try {
                    for (let i = 0; i < 64; i++) await conn.write(bytes);
                  } catch { /* closed at the end */ }
                })();
                return { conn, writing };
              },
            ),
          );
          await new Promise((resolve) => setTimeout(resolve, 1000));
          const memory = await scanMemoryOf(gateway.pid, [e2eMarker, controlMarker]);
          // The scan's own control: the edge read both markers from its
          // clients, so its memory holds them (its inlet read buffers are
          // reused, not wiped). The gateway's Phase 2 plaintext is no longer
          // a reliable control: its received records are wiped once written
          // (src/channel/plaintext_pool.ts), so little lingers.
          const edgeMemory = await scanMemoryOf(edgeA.process.pid, [e2eMarker, controlMarker]);
          for (const { conn, writing } of writers) {
            conn.close();
            await writing;
          }
          const logs = gateway.stderr.text() + gateway.stdout.text();
          console.log(
            `gateway: ${relayTap.bytes()} bytes through its relay tap, ${controlTap.bytes()} ` +
              `through its backend tap; in memory: e2e ${memory.get(e2eMarker)}, ` +
              `control ${memory.get(controlMarker)}; in the edge's: e2e ${
                edgeMemory.get(e2eMarker)
              }, control ${edgeMemory.get(controlMarker)}`,
          );
          assert.equal(relayTap.count(e2eMarker), 0, "the marker crossed the gateway's relay link");
          assert.equal(controlTap.count(e2eMarker), 0);
          assert.ok(!logs.includes(e2eMarker), "the gateway logged the marker");
          assert.equal(memory.get(e2eMarker), 0, "the marker is in the gateway's memory");
          // The control: the Phase 2 marker is plaintext at the gateway.
          assert.ok(
            controlTap.count(controlMarker) + stallTap.count(controlMarker) > 0,
            "the backend taps saw nothing",
          );
          assert.equal(stallTap.count(e2eMarker), 0);
          assert.ok(
            edgeMemory.get(e2eMarker)! > 0 && edgeMemory.get(controlMarker)! > 0,
            "the memory scan found neither marker in the edge, which read both",
          );
          // And the relay link never carried either in the clear.
          assert.equal(relayTap.count(controlMarker), 0);
          const metrics = await (await fetch(`http://${gatewayMetrics}/metrics`)).text();
          assert.match(
            metrics,
            /nexus_gateway_service_messages_total\{service="orchestrator",direction="to_service"\} [1-9]/,
          );
        },
      );

      await step("revoking an edge closes its end-to-end channel at the agent", async () => {
        const port = freePort();
        const edgeB = await startEdge("edge-b", [
          { listen: `127.0.0.1:${port}`, service: "orchestrator", outlet: "blob" },
        ]);
        // A session opens its inner channel; a live one is held open across the revocation.
        const reply = await exchange(port, new TextEncoder().encode("G1000"));
        assert.equal(reply.length, 32 + 1000);
        const live = await Deno.connect({ hostname: "127.0.0.1", port });
        cleanup.push(() => {
          try {
            live.close();
          } catch { /* closed */ }
        });
        await live.write(new TextEncoder().encode("Eping"));
        const buffer = new Uint8Array(16);
        assert.equal(await live.read(buffer), 4);
        const from = agent.stderr.lines.length;
        const revoke = await fixture.run(["revoke", edgeB.identifier]);
        assert.equal(revoke.code, 0, revoke.stderr);
        const revokedAt = performance.now();
        await agent.stderr.waitFor(
          new RegExp(`secure channel closed peer=${edgeB.identifier}\\b.*revoked`),
          3 * REVOCATION_BOUND_MS,
          from,
        );
        const ms = performance.now() - revokedAt;
        console.log(`revoke to the agent closing the edge's inner channel: ${ms.toFixed(0)} ms`);
        assert.ok(ms < REVOCATION_BOUND_MS, `took ${ms.toFixed(0)} ms`);
        // The live session ends with it.
        const ended = await Promise.race([
          live.read(buffer).then(() => true, () => true),
          new Promise<boolean>((r) => setTimeout(() => r(false), 5000)),
        ]);
        assert.ok(ended, "the revoked edge's session is still open");
      });

      await step("revoking the agent makes the edge refuse it; Phase 2 still works", async () => {
        const from = edgeA.process.stderr.lines.length;
        const revoke = await fixture.run(["revoke", agentId]);
        assert.equal(revoke.code, 0, revoke.stderr);
        const revokedAt = performance.now();
        // The edge closes its inner channel when the revocation list arrives.
        await edgeA.process.stderr.waitFor(
          new RegExp(`secure channel closed peer=${agentId}\\b.*revoked`),
          3 * REVOCATION_BOUND_MS,
          from,
        );
        const ms = performance.now() - revokedAt;
        console.log(`revoke to the edge closing its channel to the agent: ${ms.toFixed(0)} ms`);
        assert.ok(ms < REVOCATION_BOUND_MS, `took ${ms.toFixed(0)} ms`);
        // No new session reaches it (the gateway dropped its path too).
        const out = await curl("--max-time", "10", `http://127.0.0.1:${ports.orchestrator}/`);
        assert.notEqual(out.code, 0, "a session reached the revoked agent");
        const phase2 = await curl("-f", `http://127.0.0.1:${ports.control}/`);
        assert.equal(phase2.code, 0, phase2.stderr);
      });
    } finally {
      for (const undo of cleanup.reverse()) await undo();
      await Deno.remove(`${root}${dir}`, { recursive: true }).catch(() => {});
      await fixture.remove();
    }
  },
});
