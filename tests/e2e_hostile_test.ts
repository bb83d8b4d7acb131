/**
 * A compromised gateway in the end-to-end mode (docs/security.md,
 * "Gateway compromise"): real authority, relay and service agents
 * (processes), the edge in this process, and a gateway that means harm:
 *
 * - our gateway with a hostile hook on every inner record it forwards:
 *   it flips bits, replays, reorders and injects, both ways. The backend
 *   gets exactly what the edge sent or an exact prefix of it (the session
 *   ending with an error); nothing else ever reaches it;
 * - a router that holds both customers' gateway credentials and sends the
 *   edge's inner channel to the other customer's agent: the edge refuses
 *   that agent (serviceRule), and no session opens there.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { AgentConfig } from "../agent/config.ts";
import { startEdge } from "../edge/edge.ts";
import type { ForwardedFrame } from "../gateway/service_router.ts";
import { ServiceRouter } from "../gateway/service_router.ts";
import { startGateway } from "../gateway/gateway.ts";
import { connectSecureChannel, listenSecureChannels } from "../src/channel/handshake.ts";
import { INNER_LISTENER } from "../src/channel/service_routes.ts";
import { HandshakeError } from "../src/errors.ts";
import { connectRelay } from "../src/relay_client/relay_client.ts";
import { DEFAULT_WINDOW } from "../src/portal/portal.ts";
import { creditMessage, decodePortalMessage, PORTAL } from "../src/portal/portal_message.ts";
import { eventually } from "../src/testdata/channel_fixtures.ts";
import { WIRE } from "../src/channel/secure_channel.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { readIdentityFile } from "../src/identity/identity_file.ts";
import { Identity } from "../src/identity/identity.ts";
import { SoftwareSigner } from "../src/identity/software_signer.ts";
import { createLogger, type Logger } from "../src/log.ts";
import { AliasPath } from "../src/member/alias_path.ts";
import { startMember } from "../src/member/member.ts";
import { RelayPresence } from "../src/member/relay_presence.ts";
import { parsePolicy } from "../src/policy/policy.ts";
import { Node } from "../src/routing/node.ts";
import type { RoutedMessage } from "../src/routing/routed_message.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import { freePort } from "../scripts/support/free_port.ts";
import { spawnDeno } from "../scripts/support/service_process.ts";
import { authorityFixture } from "../scripts/support/authority_process.ts";
import { randomBytes } from "./support/backends.ts";

const root = new URL("..", import.meta.url).pathname;
const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** A backend that keeps every connection's bytes and answers "stored" at the end. */
function recordingBackend() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const received: Uint8Array[][] = [];
  const ended: Promise<void>[] = [];
  (async () => {
    for await (const conn of listener) {
      const chunks: Uint8Array[] = [];
      received.push(chunks);
      ended.push((async () => {
        const buffer = new Uint8Array(65536);
        try {
          for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
            chunks.push(buffer.slice(0, n));
          }
          await conn.write(new TextEncoder().encode("stored\n"));
        } catch { /* reset */ }
        try {
          conn.close();
        } catch { /* closed */ }
      })());
    }
  })().catch(() => {});
  const all = (i: number) => {
    const chunks = received[i] ?? [];
    const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of chunks) out.set(c, at), at += c.length;
    return out;
  };
  return {
    port: (listener.addr as Deno.NetAddr).port,
    received,
    ended,
    all,
    close: () => listener.close(),
  };
}

/** The reply pattern: byte i is i mod 251 (a prime, so no power-of-two period). */
function pattern(length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = i % 251;
  return out;
}

/** A backend that answers "<n>\n" with n bytes of {@link pattern}, then closes. */
function patternBackend() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) {
      (async () => {
        const buffer = new Uint8Array(64);
        const n = await conn.read(buffer);
        const size = Number(new TextDecoder().decode(buffer.subarray(0, n ?? 0)).trim());
        const reply = pattern(size);
        try {
          for (let w = 0; w < reply.length;) w += await conn.write(reply.subarray(w));
        } catch { /* reset */ }
        try {
          conn.close();
        } catch { /* closed */ }
      })();
    }
  })().catch(() => {});
  return { port: (listener.addr as Deno.NetAddr).port, close: () => listener.close() };
}

/** Sends `request`, half-closes, and reads everything that comes back (or until a reset). */
async function download(port: number, request: string): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const chunks: Uint8Array[] = [];
  try {
    await conn.write(new TextEncoder().encode(request));
    await conn.closeWrite();
    const buffer = new Uint8Array(65536);
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
      chunks.push(buffer.slice(0, n));
    }
  } catch {
    /* reset */
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) out.set(c, at), at += c.length;
  return out;
}

/** Uploads `bytes`, half-closes, and reads the answer (or the reset). */
async function upload(port: number, bytes: Uint8Array): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let reply = "";
  try {
    for (let at = 0; at < bytes.length; at += 100_000) {
      await conn.write(bytes.subarray(at, Math.min(bytes.length, at + 100_000)));
    }
    await conn.closeWrite();
    const buffer = new Uint8Array(1024);
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
      reply += new TextDecoder().decode(buffer.subarray(0, n));
    }
  } catch {
    /* reset: the session ended with an error */
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
  return reply;
}

Deno.test({
  name: "end to end, a compromised gateway: flipped, replayed, reordered and injected inner " +
    "records never reach the backend; an edge sent to another customer's agent refuses it",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const fixture = await authorityFixture();
    const dir = `.state/test-e2e-hostile-${crypto.randomUUID()}`;
    await Deno.mkdir(`${root}${dir}`, { recursive: true });
    const cleanup: (() => Promise<unknown> | unknown)[] = [];
    const logs: string[] = [];
    const logger = (component: string): Logger =>
      createLogger({ component, level: "debug", write: (line) => void logs.push(line) });
    const step = (name: string, fn: () => Promise<void>) =>
      t.step({ name, fn, sanitizeOps: false, sanitizeResources: false });
    const ticket = async (...attrs: string[]) => {
      const out = await fixture.run([
        "ticket",
        "create",
        "--json",
        ...attrs.flatMap((a) => ["--attr", a]),
      ]);
      assert.equal(out.code, 0, out.stderr);
      return JSON.parse(out.stdout).ticket as string;
    };
    try {
      assert.equal((await fixture.run(["init"])).code, 0);
      const authority = await fixture.serve();
      cleanup.push(() => authority.stop());
      const trustFile = `${fixture.state}/authority.identity.json`;
      const authorityAddress = `127.0.0.1:${authority.port}`;
      const relayPort = freePort();
      const relay = spawnDeno("relay", [
        "-P=relay",
        "relay/main.ts",
        ...await fixture.relayArgs(relayPort, authority.port),
        "--metrics",
        "off",
      ]);
      cleanup.push(() => relay.stop());
      await relay.waitFor(/^LISTENING/, 20_000);
      const relays = [`127.0.0.1:${relayPort}`];

      // Two agents, one per customer, each with a recording backend.
      const backends = { cust_001: recordingBackend(), cust_002: recordingBackend() };
      const replies = patternBackend();
      cleanup.push(() => replies.close());
      cleanup.push(() => backends.cust_001.close(), () => backends.cust_002.close());
      for (const customer of ["cust_001", "cust_002"] as const) {
        const alias = `svc-orchestrator-${customer}`;
        const config: AgentConfig = {
          stateDir: `${dir}/agent-${customer}`,
          authority: { identityFile: trustFile, address: authorityAddress },
          relays,
          alias,
          customerId: customer,
          service: "orchestrator",
          ticket: await ticket(
            "role=service",
            `customer_id=${customer}`,
            "service=orchestrator",
            `relay=${alias}`,
          ),
          outlets: [
            { name: "store", backend: `127.0.0.1:${backends[customer].port}`, policy: "true" },
            { name: "replies", backend: `127.0.0.1:${replies.port}`, policy: "true" },
          ],
          shutdownGraceMs: 500,
        };
        await Deno.writeTextFile(`${root}${dir}/agent-${customer}.json`, JSON.stringify(config), {
          mode: 0o600,
        });
        const agent = spawnDeno(`agent ${customer}`, [
          "-P=agent",
          "agent/main.ts",
          "run",
          "--config",
          `${dir}/agent-${customer}.json`,
        ]);
        cleanup.push(() => agent.stop());
        await agent.waitFor(/^READY/, 30_000);
      }

      // The hostile gateway: ours, with a hook that does what `mode` says.
      let mode: "honest" | "flip" | "replay" | "reorder" | "inject" | "flip_back" = "honest";
      let count = 0;
      let held: RoutedMessage | null = null;
      const hook = (frame: ForwardedFrame): RoutedMessage[] => {
        const { message, direction } = frame;
        const isRecord = message.payload[0] === WIRE.record;
        const big = isRecord && message.payload.length > 10_000;
        if (!big) return [message];
        count++;
        const copy = (payload: Uint8Array) => ({ ...message, payload });
        if (mode === "flip" && direction === "toService" && count === 5) {
          const flipped = message.payload.slice();
          flipped[flipped.length - 100] ^= 0x10;
          return [copy(flipped)];
        }
        if (mode === "flip_back" && direction === "toEdge" && count === 3) {
          const flipped = message.payload.slice();
          flipped[40] ^= 0x01;
          return [copy(flipped)];
        }
        if (direction !== "toService") return [message];
        if (mode === "replay") return [message, copy(message.payload.slice())];
        if (mode === "reorder") {
          // Records 3 and 4 swapped, 7 and 9 too (held across two others).
          if (count === 3 || count === 7) {
            held = copy(message.payload.slice());
            return [];
          }
          if ((count === 4 || count === 9) && held !== null) {
            const out = [message, held];
            held = null;
            return out;
          }
          return [message];
        }
        if (mode === "inject") {
          const forged = message.payload.slice();
          forged.set(crypto.getRandomValues(new Uint8Array(64)), 9); // after the counter
          const random = Uint8Array.of(WIRE.record, ...randomBytes(2000));
          return [message, copy(forged), copy(random)];
        }
        return [message];
      };
      const gatewayAlias = "gw-cust-001";
      const gateway = await startGateway({
        stateDir: `${root}${dir}/gateway`,
        authority: { identityFile: `${root}${trustFile}`, address: authorityAddress },
        relays,
        alias: gatewayAlias,
        customerId: "cust_001",
        ticket: await ticket("role=gateway", "customer_id=cust_001", `relay=${gatewayAlias}`),
        services: [{ name: "orchestrator", alias: "svc-orchestrator-cust_001", policy: "true" }],
        shutdownGraceMs: 500,
      }, { logger: logger("gateway"), hook });
      cleanup.push(() => gateway.close());
      while (!gateway.ready()) await new Promise((r) => setTimeout(r, 50));

      const inlet = freePort();
      const replyInlet = freePort();
      const edge = await startEdge({
        stateDir: `${root}${dir}/edge`,
        authority: { identityFile: `${root}${trustFile}`, address: authorityAddress },
        relays,
        gateway: { alias: gatewayAlias, customerId: "cust_001" },
        ticket: await ticket("role=edge", "customer_id=cust_001"),
        inlets: [
          { listen: `127.0.0.1:${inlet}`, service: "orchestrator", outlet: "store" },
          { listen: `127.0.0.1:${replyInlet}`, service: "orchestrator", outlet: "replies" },
        ],
        ops: "off",
      }, { logger: logger("edge") });
      cleanup.push(() => edge.close());
      await edge.firstPath;
      const backend = backends.cust_001;

      /** One upload in `how` mode; what the backend got, against what was sent. */
      const attempt = async (how: typeof mode) => {
        mode = how;
        count = 0;
        held = null;
        const index = backend.received.length;
        const sent = randomBytes(2 * 1024 * 1024);
        const reply = await upload(inlet, sent);
        await backend.ended[index];
        mode = "honest";
        return { reply, sent, got: backend.all(index) };
      };

      await step("honest first: the stream arrives whole", async () => {
        const { reply, sent, got } = await attempt("honest");
        assert.equal(reply, "stored\n");
        assert.equal(sha(got), sha(sent));
      });

      for (const how of ["replay", "reorder", "inject"] as const) {
        await step(`${how}ed inner records: the stream arrives whole and in order`, async () => {
          const { reply, sent, got } = await attempt(how);
          assert.equal(sha(got), sha(sent), `the backend got ${got.length} of ${sent.length}`);
          assert.equal(reply, "stored\n");
        });
      }

      await step(
        "a flipped inner record: the session ends; the backend holds an exact prefix",
        async () => {
          const { reply, sent, got } = await attempt("flip");
          assert.notEqual(reply, "stored\n", "the client must not see success");
          assert.ok(got.length < sent.length);
          assert.equal(
            sha(got),
            sha(sent.subarray(0, got.length)),
            "the backend's bytes are a prefix",
          );
        },
      );

      await step(
        "a flipped record on the way back: the client gets an exact prefix, never other bytes",
        async () => {
          const size = 2 * 1024 * 1024;
          const whole = await download(replyInlet, `${size}\n`);
          assert.equal(sha(whole), sha(pattern(size)), "the honest download is whole");
          mode = "flip_back";
          count = 0;
          const got = await download(replyInlet, `${size}\n`);
          mode = "honest";
          assert.ok(got.length < size, "the tampered download cannot be whole");
          assert.equal(sha(got), sha(pattern(size).subarray(0, got.length)), "an exact prefix");
        },
      );

      await step(
        "a router that sends the edge to the other customer's agent is refused by the edge; " +
          "the router gets nothing at that agent either",
        async () => {
          // The attacker holds a gateway credential of each customer.
          const trust = new TrustStore([await readIdentityFile(`${root}${trustFile}`)]);
          const node = new Node({ name: "evil" });
          const transport = new TcpTransport(node);
          cleanup.push(() => transport.close());
          const member = async (customer: string) => {
            const started = await startMember({
              role: "gateway",
              identity: await Identity.create(await SoftwareSigner.generate()),
              trust,
              node,
              transport,
              authorities: [{ hostname: "127.0.0.1", port: authority.port }],
              enrollment: () => ({ ticket: tickets[customer] }),
              logger: logger(`evil.${customer}`),
            });
            await started.firstCredential;
            cleanup.push(() => started.close());
            return started;
          };
          const evilAlias = "gw-evil";
          const tickets: Record<string, string> = {
            cust_001: await ticket("role=gateway", "customer_id=cust_001", `relay=${evilAlias}`),
            cust_002: await ticket("role=gateway", "customer_id=cust_002"),
          };
          const mine = await member("cust_001");
          const theirs = await member("cust_002");
          const edges = listenSecureChannels({
            node,
            address: "api",
            local: mine.local,
            policy: { trust },
          });
          const presence = new RelayPresence({
            node,
            transport,
            relays,
            alias: evilAlias,
            identity: mine.identity,
            trust,
            member: mine,
            logger: logger("evil"),
          });
          cleanup.push(() => presence.close());
          const foreign = new AliasPath({
            node,
            transport,
            relays,
            alias: "svc-orchestrator-cust_002",
            policy: { trust },
            connectWaitMs: 10_000,
            idleTimeoutMs: 30_000,
            logger: logger("evil.path"),
          });
          foreign.start(theirs);
          cleanup.push(() => foreign.close());
          await foreign.channel();
          const router = new ServiceRouter({
            node,
            edges,
            services: [{
              name: "orchestrator",
              policy: parsePolicy("true"),
              channel: () => foreign.current?.channel ?? null,
            }],
            logger: logger("evil.router"),
          });
          cleanup.push(() => router.close());
          while (!presence.ready()) await new Promise((r) => setTimeout(r, 50));

          const misled = freePort();
          const victim = await startEdge({
            stateDir: `${root}${dir}/victim`,
            authority: { identityFile: `${root}${trustFile}`, address: authorityAddress },
            relays,
            gateway: { alias: evilAlias, customerId: "cust_001" },
            ticket: await ticket("role=edge", "customer_id=cust_001"),
            inlets: [{ listen: `127.0.0.1:${misled}`, service: "orchestrator", outlet: "store" }],
            ops: "off",
          }, { logger: logger("victim") });
          cleanup.push(() => victim.close());
          await victim.firstPath;
          const before = backends.cust_002.received.length;
          const reply = await upload(misled, new TextEncoder().encode("for cust_001 only"));
          assert.equal(reply, "");
          // The handshake reached the other agent (the router forwarded it)...
          assert.ok(router.stats.get("orchestrator")!.toService > 0);
          // ...and the edge refused what answered: not its customer's agent.
          assert.ok(
            logs.some((l) => l.includes("victim") && l.includes("refused by policy")),
            `the edge did not refuse the other customer's agent:\n${
              logs.filter((l) => l.includes("victim")).slice(-10).join("\n")
            }`,
          );
          assert.equal(
            backends.cust_002.received.length,
            before,
            "a session opened at the other agent",
          );

          // The router itself, a gateway of that customer, gets nothing at its agent:
          // no inner channel as itself (edges only), no session through its own channel.
          const path = foreign.current!.channel;
          await assert.rejects(
            connectSecureChannel({
              node,
              route: [path.address, INNER_LISTENER],
              local: theirs.local,
              policy: { trust },
              handshakeTimeoutMs: 3000,
            }),
            (e: unknown) => e instanceof HandshakeError && e.code === "refused",
          );
          const answers: Uint8Array[] = [];
          const inbox = node.registerRandom("in", (m) => void answers.push(m.payload.slice()));
          await path.send(["outlet.store"], creditMessage(PORTAL.open, 0, DEFAULT_WINDOW), [inbox]);
          await eventually(() => answers.length === 1, 5000);
          assert.equal(decodePortalMessage(answers[0]).kind, PORTAL.refused);
          assert.equal(backends.cust_002.received.length, before, "the gateway got a session");

          // And the agent's inner listener takes nothing that does not come through a
          // gateway's channel: an edge of that customer straight through the relay.
          const strangerTicket = await ticket("role=edge", "customer_id=cust_002");
          const stranger = await startMember({
            role: "edge",
            identity: await Identity.create(await SoftwareSigner.generate()),
            trust,
            node,
            transport,
            authorities: [{ hostname: "127.0.0.1", port: authority.port }],
            enrollment: () => ({ ticket: strangerTicket }),
            logger: logger("stranger"),
          });
          await stranger.firstCredential;
          cleanup.push(() => stranger.close());
          const direct = await connectRelay({
            transport,
            hostname: "127.0.0.1",
            port: relayPort,
            identity: stranger.identity,
            credential: stranger.credential!.encoded,
            trust,
          });
          await assert.rejects(
            connectSecureChannel({
              node,
              route: [direct.address, "forward.svc-orchestrator-cust_002", INNER_LISTENER],
              local: stranger.local,
              policy: { trust },
              handshakeTimeoutMs: 1500,
            }),
            (e: unknown) => e instanceof HandshakeError && e.code === "timeout",
          );
        },
      );
    } finally {
      for (const undo of cleanup.reverse()) await undo();
      await Deno.remove(`${root}${dir}`, { recursive: true }).catch(() => {});
      await fixture.remove();
    }
  },
});
