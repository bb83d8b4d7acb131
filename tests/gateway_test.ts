/**
 * The gateway across processes (docs/design.md §6, §7): a real authority process
 * (fresh SoftHSM2 token), a real relay process, the gateway as its own CLI
 * process (`-P=gateway`), and an in-process test edge (tests/support/
 * test_edge.ts) that enrolls with a ticket, joins the relay, opens a secure
 * channel to the gateway through it and puts inlets in front of the
 * gateway's outlets. Real clients (`curl`, `redis-cli`, Deno TCP sockets)
 * talk to real backends through inlet -> relay -> gateway -> outlet.
 *
 * The relay is a member of the authority, as in production: it enrolls
 * with a ticket and follows the revocation list. The revocation step
 * measures the gateway's own enforcement (the channel's close), which does
 * not depend on the relay's (covered by relay_authority_test.ts). One
 * Deno.test shares the processes; each property is a step, so one failure
 * does not hide the others.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { toHex } from "../src/encoding/hex.ts";
import { HandshakeError, PolicyError } from "../src/errors.ts";
import { createLogger } from "../src/log.ts";
import { parsePolicy } from "../src/policy/mod.ts";
import { eventually } from "../src/testdata/channel_fixtures.ts";
import { type GatewayConfig, startGateway } from "../gateway/gateway.ts";
import { type AuthorityFixture, authorityFixture } from "../scripts/support/authority_process.ts";
import { freePort } from "../scripts/support/free_port.ts";
import { spawnDeno } from "../scripts/support/service_process.ts";
import { curl } from "./support/curl.ts";
import {
  concat,
  exchange,
  haveCommands,
  randomBytes,
  redisCli,
  redisServer,
  tcpBackend,
  withTimeout,
} from "./support/backends.ts";
import { startTestEdge, type TestEdge } from "./support/test_edge.ts";

const root = new URL("..", import.meta.url).pathname;
const ALIAS = "gw-cust-001";
const CUSTOMER = "cust_001";
const GATEWAY_ATTRIBUTES = { role: "gateway", customer_id: CUSTOMER };
/** A policy with a syntax error: `and and`. */
const BAD_POLICY = 'subject.role == "edge" and and "mcp" in subject.capabilities';

const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/**
 * The gateway's readiness line, parsed tolerantly: a line with the word
 * READY, the identifier anywhere in it (`I` + 64 hex), and the operations
 * address as `metrics=` (or `ops=`) when it has one.
 */
export function parseReady(line: string): { identifier?: string; metrics?: string } | null {
  if (!/\bREADY\b/.test(line)) return null;
  return {
    identifier: line.match(/\bI[0-9a-f]{64}\b/)?.[0],
    metrics: line.match(/\b(?:metrics|ops)=(\S+)/)?.[1],
  };
}

async function runGatewayCli(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "--no-prompt", "-P=gateway", "gateway/main.ts", ...args],
    cwd: root,
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

/**
 * `gateway/main.ts run` as a process, once it printed READY. The ticket goes
 * in a 0600 file beside the config (`--ticket-file`), never on the command
 * line, where `ps` shows it to every user (`--ticket` is refused).
 */
async function gatewayProcess(configFile: string, ticket: string) {
  const ticketFile = `${configFile}.ticket`;
  await Deno.writeTextFile(`${root}${ticketFile}`, `${ticket}\n`, { mode: 0o600 });
  // The mode given to a write does not change a file that was there already.
  await Deno.chmod(`${root}${ticketFile}`, 0o600);
  const gateway = spawnDeno("the gateway", [
    "-P=gateway",
    "gateway/main.ts",
    "run",
    "--config",
    configFile,
    "--ticket-file",
    ticketFile,
  ]);
  let line: string;
  try {
    line = await gateway.waitFor(/\bREADY\b/, 30_000);
  } catch (error) {
    await gateway.stop().catch(() => {});
    throw error;
  }
  const ready = parseReady(line)!;
  assert.ok(ready.identifier, `no identifier in the READY line: ${line}`);
  /** SIGTERM; it must exit within 15 s (it is killed then, and that fails the step). */
  const stop = async (): Promise<{ code: number }> => {
    const started = performance.now();
    const code = await gateway.stop(15_000);
    if (performance.now() - started >= 15_000) {
      throw new Error("the gateway did not exit within 15 s of SIGTERM");
    }
    return { code };
  };
  return {
    line,
    identifier: ready.identifier,
    metrics: ready.metrics,
    stderr: gateway.stderr,
    stop,
  };
}

/**
 * The relay as a process, a member of the authority (enrolled with a
 * ticket; it follows the revocation list too, and the revocation step
 * below checks the gateway's own enforcement all the same).
 */
async function relayProcess(fixture: AuthorityFixture, authorityPort: number) {
  const relay = spawnDeno("the relay", [
    "-P=relay",
    "relay/main.ts",
    ...await fixture.relayArgs(freePort(), authorityPort),
    "--metrics",
    "off",
  ]);
  const banner = await relay.waitFor(/^LISTENING /, 20_000);
  return {
    port: Number(banner.split(" ")[1].split(":").at(-1)),
    stop: async () => void await relay.stop(),
  };
}

async function ticket(fixture: AuthorityFixture, ...attributes: string[]): Promise<string> {
  const out = await fixture.run([
    "ticket",
    "create",
    "--json",
    ...attributes.flatMap((a) => ["--attr", a]),
  ]);
  assert.equal(out.code, 0, out.stderr);
  return JSON.parse(out.stdout).ticket;
}

Deno.test({
  name: "gateway processes: curl and redis-cli through inlet -> relay -> gateway -> outlet, " +
    "100 sessions, half-close, backend down, customers, capabilities, revocation, bad policy",
  // Processes, servers and channels live across the steps; everything is
  // closed in `finally`.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const fixture = await authorityFixture();
    const dir = `.state/test-gateway-${crypto.randomUUID()}`;
    await Deno.mkdir(`${root}${dir}`, { recursive: true });
    const cleanup: (() => Promise<void> | void)[] = [];
    const edges: TestEdge[] = [];
    const step = (name: string, fn: (t: Deno.TestContext) => Promise<void>, ignore = false) =>
      t.step({ name, fn, ignore, sanitizeOps: false, sanitizeResources: false });
    try {
      // --- the processes and backends ---------------------------------------------------
      const init = await fixture.run(["init"]);
      assert.equal(init.code, 0, init.stderr);
      const authority = await fixture.serve();
      cleanup.push(() => authority.stop());
      const trustFile = `${fixture.state}/authority.identity.json`;
      const relay = await relayProcess(fixture, authority.port);
      cleanup.push(() => relay.stop());

      const blob = tcpBackend();
      cleanup.push(() => blob.close());
      const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
        const url = new URL(req.url);
        if (url.pathname === "/hello") return new Response("hello from the backend\n");
        if (url.pathname === "/sha256" && req.method === "POST") {
          return new Response(sha(new Uint8Array(await req.arrayBuffer())) + "\n");
        }
        return new Response("not found\n", { status: 404 });
      });
      cleanup.push(() => http.shutdown());
      const downPort = freePort();
      const haveRedis = await haveCommands("redis-server", "redis-cli");
      let redis: Awaited<ReturnType<typeof redisServer>> | null = null;
      if (haveRedis) {
        redis = await redisServer();
        cleanup.push(() => redis!.stop());
      }

      const config: GatewayConfig = {
        stateDir: `${dir}/state`,
        authority: { identityFile: trustFile, address: `127.0.0.1:${authority.port}` },
        relays: [`127.0.0.1:${relay.port}`],
        alias: ALIAS,
        customerId: CUSTOMER,
        outlets: [
          {
            name: "http",
            backend: `127.0.0.1:${http.addr.port}`,
            policy: 'subject.role == "edge"',
          },
          { name: "blob", backend: `127.0.0.1:${blob.port}`, policy: 'subject.role == "edge"' },
          {
            name: "mcp",
            backend: `127.0.0.1:${blob.port}`,
            policy: 'subject.role == "edge" and "mcp" in subject.capabilities',
          },
          { name: "down", backend: `127.0.0.1:${downPort}`, policy: 'subject.role == "edge"' },
          ...(redis
            ? [{
              name: "redis",
              backend: `127.0.0.1:${redis.port}`,
              policy: '"redis" in subject.capabilities',
            }]
            : []),
        ],
        ops: "127.0.0.1:0",
        shutdownGraceMs: 2000,
      };
      const configFile = `${dir}/gateway.json`;
      await Deno.writeTextFile(`${root}${configFile}`, JSON.stringify(config, null, 2));

      const gatewayTicket = await ticket(
        fixture,
        "role=gateway",
        `customer_id=${CUSTOMER}`,
        `relay=${ALIAS}`,
      );
      const edgeTicket = await ticket(
        fixture,
        "role=edge",
        `customer_id=${CUSTOMER}`,
        "capabilities=[http,redis]",
      );
      const otherTicket = await ticket(fixture, "role=edge", "customer_id=cust_002");
      const doomedTicket = await ticket(fixture, "role=edge", `customer_id=${CUSTOMER}`);

      const started = performance.now();
      const gateway = await gatewayProcess(configFile, gatewayTicket);
      console.log(
        `gateway process READY after ${
          (performance.now() - started).toFixed(0)
        } ms: ${gateway.line}`,
      );
      let gatewayStopped = false;
      cleanup.push(async () => {
        if (!gatewayStopped) await gateway.stop().catch(() => {});
      });

      const edgeOptions = {
        authorityIdentityFile: `${root}${trustFile}`,
        authorityPort: authority.port,
        relayPort: relay.port,
      };
      const edge = await startTestEdge({ name: "edge", ticket: edgeTicket, ...edgeOptions });
      edges.push(edge);
      const channel = await edge.connectGateway({
        alias: ALIAS,
        requiredAttributes: GATEWAY_ATTRIBUTES,
        pinned: gateway.identifier,
      });
      assert.equal(channel.peer.identifier, gateway.identifier);
      const httpInlet = edge.openInlet("http");
      const blobInlet = edge.openInlet("blob");

      // --- the properties ---------------------------------------------------------------
      await step(
        "HTTP with curl: GET, a 1 MiB POST checked by SHA-256, two requests on one connection",
        async () => {
          const base = `http://127.0.0.1:${httpInlet.addr.port}`;
          const hello = await curl(`${base}/hello`);
          assert.equal(hello.code, 0, hello.stderr);
          assert.equal(hello.stdout, "hello from the backend\n");
          const body = randomBytes(1024 * 1024);
          const file = await Deno.makeTempFile({ prefix: "nexus-gateway-test-" });
          try {
            await Deno.writeFile(file, body);
            const posted = await curl("--data-binary", `@${file}`, `${base}/sha256`);
            assert.equal(posted.code, 0, posted.stderr);
            assert.equal(posted.stdout, sha(body) + "\n");
          } finally {
            await Deno.remove(file);
          }
          // Keep-alive: both requests on one connection, i.e. one portal session.
          const two = await curl("-v", `${base}/hello`, `${base}/hello`);
          assert.equal(two.code, 0, two.stderr);
          assert.equal(two.stdout, "hello from the backend\n".repeat(2));
          assert.match(two.stderr, /Re-using existing connection|Reusing existing/i);
        },
      );

      await step("redis-cli through the portal", async () => {
        const port = edge.openInlet("redis").addr.port;
        assert.equal(await redisCli(port, ["PING"]), "PONG");
        assert.equal(await redisCli(port, ["SET", "nexus:greeting", "hello"]), "OK");
        assert.equal(await redisCli(port, ["GET", "nexus:greeting"]), "hello");
        // 256 KiB value through stdin (-x): several DATA messages and credit grants.
        const value = new TextEncoder().encode("x".repeat(256 * 1024));
        assert.equal(await redisCli(port, ["-x", "SET", "nexus:big"], value), "OK");
        assert.equal(await redisCli(port, ["STRLEN", "nexus:big"]), String(value.length));
        assert.equal(
          (await redisCli(port, ["GET", "nexus:big"])).length,
          value.length,
        );
      }, !haveRedis);
      if (!haveRedis) {
        console.log(
          "SKIPPED redis-cli through the portal: redis-server and/or redis-cli are not " +
            "installed (Debian packages: redis-server, redis-tools)",
        );
      }

      await step(
        "100 concurrent sessions, random payloads checked by SHA-256 both ways",
        async () => {
          const sessionsBefore = blob.stats.connections;
          const begin = performance.now();
          let bytes = 0;
          const results = await Promise.all(Array.from({ length: 100 }, async (_, i) => {
            // Sizes from 0 to ~320 KiB; session 0 carries nothing at all.
            const payload = randomBytes(i === 0 ? 0 : Math.floor(Math.random() * 320 * 1024));
            bytes += payload.length;
            const reply = await exchange(
              blobInlet.addr.port,
              concat([Uint8Array.of(0x52), payload]),
            );
            const upstream = toHex(reply.subarray(0, 32));
            const downstream = sha(reply.subarray(32));
            return {
              i,
              length: payload.length,
              upstream: upstream === sha(payload),
              downstream: downstream === sha(payload.slice().reverse()) &&
                reply.length === payload.length + 32,
            };
          }));
          const ms = performance.now() - begin;
          const bad = results.filter((r) => !r.upstream || !r.downstream);
          assert.deepEqual(bad, [], `${bad.length} of 100 sessions corrupted or cut short`);
          assert.equal(blob.stats.connections - sessionsBefore, 100);
          console.log(
            `100 sessions, ${(bytes / 2 ** 20).toFixed(1)} MiB each way, in ${ms.toFixed(0)} ms`,
          );
          await eventually(() => blobInlet.stats.open === 0, 5000);
        },
      );

      await step(
        "half-close: the client shuts its write side and still receives the whole reply",
        async () => {
          const eofs = blob.stats.eofs;
          const size = 4 * 1024 * 1024;
          const reply = await exchange(
            blobInlet.addr.port,
            new TextEncoder().encode(`G${size}`),
          );
          // The backend saw the FIN (it answers only after end of stream)...
          assert.equal(blob.stats.eofs, eofs + 1);
          // ...and every byte of its reply came back after it.
          assert.equal(reply.length, 32 + size);
          assert.equal(toHex(reply.subarray(0, 32)), sha(reply.subarray(32)));
        },
      );

      await step(
        "backend down: the client's connection is closed promptly, with a logged reason",
        async () => {
          const inlet = edge.openInlet("down");
          const begin = performance.now();
          const reply = await exchange(inlet.addr.port, new TextEncoder().encode("hello?"), 5000);
          const ms = performance.now() - begin;
          assert.equal(reply.length, 0);
          console.log(`backend down: client connection closed after ${ms.toFixed(0)} ms`);
          assert.ok(ms < 3000, `took ${ms.toFixed(0)} ms`);
          await eventually(
            () => edge.logs.some((l) => /session refused/.test(l) && /unreachable/.test(l)),
            2000,
          ).catch(() => {
            throw new Error(`the edge logged no reason:\n${edge.logs.join("\n")}`);
          });
          assert.ok(
            await gateway.stderr.waitFor(/unreachable/, 2000).catch(() => null),
            `the gateway logged no reason:\n${gateway.stderr.text()}`,
          );
        },
      );

      await step("another customer's edge is refused at the channel", async () => {
        const other = await startTestEdge({
          name: "edge-cust-002",
          ticket: otherTicket,
          ...edgeOptions,
        });
        edges.push(other);
        assert.equal(other.credential.attributes.customer_id, "cust_002");
        // It asks only for role=gateway, so the refusal is the gateway's.
        await assert.rejects(
          other.connectGateway({ alias: ALIAS, requiredAttributes: { role: "gateway" } }),
          (e: unknown) => e instanceof HandshakeError && e.code === "refused",
        );
        assert.equal(other.channel, null);
        assert.ok(
          await gateway.stderr.waitFor(/handshake failed.*customer_id/, 2000).catch(() => null),
          `the gateway logged no reason for the refusal:\n${gateway.stderr.text()}`,
        );
      });

      await step("a missing capability is refused at that outlet only", async () => {
        const before = blob.stats.connections;
        const inlet = edge.openInlet("mcp");
        const reply = await exchange(
          inlet.addr.port,
          concat([Uint8Array.of(0x52), randomBytes(100)]),
        );
        assert.equal(reply.length, 0);
        assert.equal(blob.stats.connections, before, "the mcp backend was reached");
        await eventually(() => edge.logs.some((l) => /denied by policy/.test(l)), 2000);
        assert.ok(
          await gateway.stderr.waitFor(/denied by policy.*outlet=mcp/, 2000).catch(() => null),
          `the gateway logged no denial:\n${gateway.stderr.text()}`,
        );
        // The channel stays; the other outlets on it still work.
        assert.equal(channel.isClosed, false);
        const hello = await curl(`http://127.0.0.1:${httpInlet.addr.port}/hello`);
        assert.equal(hello.stdout, "hello from the backend\n", hello.stderr);
        const payload = randomBytes(10_000);
        const back = await exchange(blobInlet.addr.port, concat([Uint8Array.of(0x52), payload]));
        assert.equal(toHex(back.subarray(0, 32)), sha(payload));
      });

      await step("policy check (what-if) from the gateway CLI", async () => {
        const file = `${dir}/edge.credential`;
        await Deno.writeFile(`${root}${file}`, edge.credential.encoded);
        const allow = await runGatewayCli([
          "policy",
          "check",
          "--policy",
          `subject.customer_id == "${CUSTOMER}" and "redis" in subject.capabilities`,
          "--credential",
          file,
          "--trust",
          trustFile,
        ]);
        assert.equal(allow.code, 0, allow.stdout + allow.stderr);
        assert.match(allow.stdout, /^allow/);
        const deny = await runGatewayCli([
          "policy",
          "check",
          "--policy",
          '"mcp" in subject.capabilities',
          "--credential",
          file,
        ]);
        assert.equal(deny.code, 1, deny.stdout + deny.stderr);
        assert.match(deny.stdout, /^deny/);
        assert.match(deny.stdout, /mcp/);
      });

      await step("/readyz and /metrics on the operations address", async () => {
        assert.ok(gateway.metrics, `no metrics= in the READY line: ${gateway.line}`);
        const ready = await fetch(`http://${gateway.metrics}/readyz`);
        await ready.body?.cancel();
        assert.equal(ready.status, 200);
        const scrape = await (await fetch(`http://${gateway.metrics}/metrics`)).text();
        assert.match(scrape, /nexus_gateway_/);
      });

      await step(
        "a revoked member is cut off; the time from `authority revoke` is measured",
        async (s) => {
          const doomed = await startTestEdge({
            name: "edge-doomed",
            ticket: doomedTicket,
            ...edgeOptions,
          });
          edges.push(doomed);
          const doomedChannel = await doomed.connectGateway({
            alias: ALIAS,
            requiredAttributes: GATEWAY_ATTRIBUTES,
            pinned: gateway.identifier,
          });
          const inlet = doomed.openInlet("blob");
          // A live echo session through the portal.
          const echoIndex = blob.echoEnded.length;
          const live = await Deno.connect({ hostname: "127.0.0.1", port: inlet.addr.port });
          cleanup.push(() => {
            try {
              live.close();
            } catch { /* closed */ }
          });
          await live.write(new TextEncoder().encode("Eping"));
          const buffer = new Uint8Array(1024);
          const n = await withTimeout(live.read(buffer), 5000, "echo through the portal");
          assert.equal(new TextDecoder().decode(buffer.subarray(0, n ?? 0)), "ping");
          let channelClosedAt = 0;
          let closeReason = "";
          doomedChannel.closed.then((info) => {
            channelClosedAt = performance.now();
            closeReason = `${info.reason} (by peer: ${info.byPeer})`;
          });
          // The client keeps writing (every 50 ms, never waiting for an echo
          // that may be lost with the channel) and reading; it is cut off when
          // its connection ends. An idle client's connection is the portal's
          // business at the edge; the backend side is checked below.
          let clientCutAt = 0;
          let writing = true;
          const writer = (async () => {
            try {
              while (writing) {
                await live.write(new TextEncoder().encode("."));
                await new Promise((r) => setTimeout(r, 50));
              }
            } catch { /* reset or closed */ }
          })();
          const talking = (async () => {
            try {
              while (await live.read(buffer) !== null) { /* echoes */ }
            } catch { /* reset or closed */ }
            clientCutAt = performance.now();
            writing = false;
            await writer;
          })();
          await new Promise((r) => setTimeout(r, 300));
          assert.equal(clientCutAt, 0, "the live session ended before the revocation");

          const revokedAt = performance.now();
          const revoke = await fixture.run(["revoke", doomed.identifier]);
          assert.equal(revoke.code, 0, revoke.stderr);
          await s.step({
            name: "the gateway closes the member's channel",
            sanitizeOps: false,
            sanitizeResources: false,
            fn: async () => {
              await eventually(() => channelClosedAt > 0, 10_000).catch(() => {
                throw new Error("the channel was still open 10 s after the revoke command");
              });
              const ms = channelClosedAt - revokedAt;
              console.log(
                `revoke command to closed channel: ${ms.toFixed(0)} ms (reason: ${closeReason})`,
              );
              assert.ok(ms < 5000, `took ${ms.toFixed(0)} ms`);
            },
          });
          await s.step({
            name: "the member's client connection ends (it keeps writing)",
            sanitizeOps: false,
            sanitizeResources: false,
            fn: async () => {
              await withTimeout(talking, 10_000, "the revoked member's client connection ending");
              console.log(
                `revoke command to the client's connection closed: ${
                  (clientCutAt - revokedAt).toFixed(0)
                } ms`,
              );
            },
          });
          await s.step({
            name: "the gateway closes the member's backend connection",
            sanitizeOps: false,
            sanitizeResources: false,
            fn: async () => {
              // The backend is quiet (an echo with nothing left to echo): only
              // the gateway ending the member's sessions closes it.
              await eventually(() => blob.echoEnded[echoIndex] !== null, 5000).catch(() => {
                throw new Error(
                  "the gateway kept the revoked member's backend connection open 5 s after " +
                    "the revoke command (the outlet session outlives its channel)",
                );
              });
              console.log(
                `revoke command to the backend connection closed: ${
                  (blob.echoEnded[echoIndex]! - revokedAt).toFixed(0)
                } ms`,
              );
            },
          });
          await s.step({
            name: "the revoked member cannot open a new channel",
            sanitizeOps: false,
            sanitizeResources: false,
            fn: async () => {
              await assert.rejects(
                doomed.connectGateway({ alias: ALIAS, requiredAttributes: GATEWAY_ATTRIBUTES }),
                HandshakeError,
              );
            },
          });
          // The other member is untouched.
          assert.equal(channel.isClosed, false);
          const hello = await curl(`http://127.0.0.1:${httpInlet.addr.port}/hello`);
          assert.equal(hello.stdout, "hello from the backend\n", hello.stderr);
        },
      );

      await step(
        "a policy parse error stops the start, with the position in the message",
        async (s) => {
          let position = -1;
          try {
            parsePolicy(BAD_POLICY);
          } catch (error) {
            assert.ok(error instanceof PolicyError);
            position = error.position;
          }
          assert.ok(position > 0);
          const bad: GatewayConfig = {
            ...config,
            stateDir: `${root}${dir}/bad-state`,
            authority: { ...config.authority, identityFile: `${root}${trustFile}` },
            alias: "gw-bad",
            ops: undefined,
            outlets: [...config.outlets ?? [], {
              name: "broken",
              backend: "127.0.0.1:1",
              policy: BAD_POLICY,
            }],
          };
          await s.step({
            name: "startGateway in-process",
            sanitizeOps: false,
            sanitizeResources: false,
            fn: async () => {
              const logs: string[] = [];
              const logger = createLogger({
                component: "gateway-bad",
                level: "debug",
                write: (line) => void logs.push(line),
              });
              let error: unknown = null;
              try {
                const running = await withTimeout(
                  startGateway(bad, { logger }),
                  15_000,
                  "startGateway",
                );
                await running.close();
              } catch (e) {
                error = e;
              }
              assert.ok(error instanceof Error, "the gateway started with a broken policy");
              console.log(`startGateway refused: ${error.message.split("\n")[0]}`);
              assert.match(error.message, new RegExp(`offset ${position}\\b`));
              assert.match(error.message, /^outlet "broken": /, "the outlet is named");
            },
          });
          await s.step({
            name: "the CLI exits non-zero and says where",
            sanitizeOps: false,
            sanitizeResources: false,
            fn: async () => {
              const file = `${dir}/bad.json`;
              await Deno.writeTextFile(
                `${root}${file}`,
                JSON.stringify({
                  ...bad,
                  stateDir: `${dir}/bad-state`,
                  authority: config.authority,
                }),
              );
              const out = await withTimeout(
                runGatewayCli(["run", "--config", file]),
                20_000,
                "gateway run with a broken policy",
              );
              assert.notEqual(out.code, 0, `it started:\n${out.stdout}`);
              assert.doesNotMatch(out.stdout, /\bREADY\b/);
              assert.match(out.stderr, new RegExp(`offset ${position}\\b`), out.stderr);
              assert.match(out.stderr, /outlet "broken"/, out.stderr);
              // A malformed relay address: a configuration error (exit status 4,
              // src/cli/exit_codes.ts) naming the file, the field and the value,
              // no stack trace.
              await Deno.writeTextFile(
                `${root}${file}`,
                JSON.stringify({
                  ...config,
                  stateDir: `${dir}/bad-state`,
                  relays: [...config.relays, "relay-without-port"],
                }),
              );
              const relay = await runGatewayCli(["run", "--config", file]);
              assert.equal(relay.code, 4, relay.stderr);
              assert.match(
                relay.stderr,
                /bad\.json: "relays\[\d\]" must be HOST:PORT, got "relay-without-port"/,
              );
              assert.doesNotMatch(relay.stderr, /\n\s+at /, "no stack trace");
            },
          });
        },
      );

      await step("SIGTERM: the gateway process exits 0", async () => {
        for (const e of edges.splice(0)) await e.close();
        const status = await gateway.stop();
        gatewayStopped = true;
        assert.equal(status.code, 0, gateway.stderr.text());
        assert.match(gateway.stderr.text(), /shutting down/);
      });
    } finally {
      for (const e of edges) await e.close().catch(() => {});
      for (const fn of cleanup.reverse()) await Promise.resolve(fn()).catch(() => {});
      await Deno.remove(`${root}${dir}`, { recursive: true }).catch(() => {});
      await fixture.remove();
    }
  },
});
