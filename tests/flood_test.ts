/**
 * Hostile clients against the real authority, relay and gateway processes
 * (docs/security.md, "Unauthenticated clients" and "A compromised
 * member"): floods of unauthenticated connections, half-sent frames,
 * oversize frame headers, admissions with long change histories, a
 * stalled revocation subscriber, and a member of another customer
 * flooding a gateway with handshakes.
 *
 * For each flood the test shows that the limits hold (the target's own
 * metrics count what it refused or closed, and why), that memory stays
 * bounded (the target's VmRSS before, during and after, printed), that
 * admitted members keep working (an honest edge's session through the
 * gateway, a new enrollment), and that revocation still arrives: a member
 * is revoked during the flood, and the time from `authority revoke`
 * exiting to the gateway closing that member's channel is measured and
 * bounded.
 *
 * Flood connections come from other loopback addresses (127.0.0.2 and
 * up, tests/support/flood.ts), so the per-source limits meet the flood
 * and not the honest members on 127.0.0.1.
 *
 * The figures go to stdout as one table at the end (the closing note of
 * issue 11 quotes them); the assertions are limits and bounds, not
 * timings, except the revocation bound, which is the system's promise.
 */
import assert from "node:assert/strict";
import { AuthorityClient } from "../src/authority_client/authority_client.ts";
import { AUTHORITY_API, encodeRequest } from "../src/authority_client/protocol.ts";
import { createChannelIdentity } from "../src/channel/channel_identity.ts";
import { issueCredential } from "../src/credential/credential.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { AuthorityError, RelayError } from "../src/errors.ts";
import { readIdentityFile } from "../src/identity/identity_file.ts";
import { Identity } from "../src/identity/identity.ts";
import type { VerifiedIdentity } from "../src/identity/change_history.ts";
import { MAX_CHANGES } from "../src/identity/change_history.ts";
import { SoftwareSigner } from "../src/identity/software_signer.ts";
import { connectRelay } from "../src/relay_client/relay_client.ts";
import { Node } from "../src/routing/node.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import { eventually } from "../src/testdata/channel_fixtures.ts";
import { freePort } from "../scripts/support/free_port.ts";
import { cpuSeconds, memoryOf } from "../scripts/support/process_usage.ts";
import { spawnDeno } from "../scripts/support/service_process.ts";
import { authorityFixture } from "../scripts/support/authority_process.ts";
import { type Flood, flood } from "./support/flood.ts";
import { startTestEdge, type TestEdge } from "./support/test_edge.ts";

const root = new URL("..", import.meta.url).pathname;
const ALIAS = "gw-flood";
const CUSTOMER = "cust_001";
const GATEWAY_ATTRIBUTES = { role: "gateway", customer_id: CUSTOMER };
/** The promise measured during every flood: revoke to channel closed, ms. */
const REVOCATION_BOUND_MS = 5000;
/**
 * Rounds of the same floods against the authority and the relay (more with
 * `FLOOD_ROUNDS`, to watch the plateau longer).
 */
const ROUNDS = Math.max(4, Number(Deno.env.get("FLOOD_ROUNDS") ?? 4));
/**
 * Most a target's RSS may grow in its calmest round after the first, KiB.
 * Bounded memory levels off once V8 has sized its heap for the floods'
 * garbage, but when V8 grows its heap is its own: the relay measured here
 * over seven rounds at 117, 154, 156, 163, 168, 173, 173 MiB, and in one
 * CI run under the parallel suite at 122, 136, 178 MiB (a late 42 MiB
 * step), in another at 134, 167, 199, 202 MiB. A target that kept what it kept before these limits (76 to 150
 * KiB per unauthenticated connection, 1,500 of them a round) grows by 110
 * to 220 MiB in every round, so no round after the first is calm.
 */
const PLATEAU_KIB = 48 * 1024;

/**
 * Fails unless some round after the first grew RSS by under
 * {@link PLATEAU_KIB}: one late heap step is V8's, growth in every round
 * is kept state.
 */
function assertPlateau(target: string, rounds: number[]): void {
  const steps = rounds.slice(2).map((kib, i) => kib - rounds[i + 1]);
  assert.ok(
    Math.min(...steps) < PLATEAU_KIB,
    `${target} RSS still growing: ${rounds.map((kib) => (kib / 1024).toFixed(1)).join(", ")} MiB`,
  );
}

/** Connections per flood and source. */
const FLOOD = 500;
/** The authority's per-source limit in this test. */
const AUTHORITY_PER_SOURCE = 200;

/** Every sample of a metric, by its label set (`name{a="b"}`), from a /metrics page. */
async function scrape(address: string): Promise<Map<string, number>> {
  const text = await (await fetch(`http://${address}/metrics`)).text();
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    const match = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (match) samples.set(match[1], Number(match[2]));
  }
  return samples;
}

/** Resolves once `pid` uses under 20 ms of CPU in 500 ms; fails after 60 s. */
async function quiet(pid: number): Promise<void> {
  const until = Date.now() + 60_000;
  let last = await cpuSeconds(pid);
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const now = await cpuSeconds(pid);
    if (now - last < 0.02) return;
    if (Date.now() > until) throw new Error(`process ${pid} still busy after 60 s`);
    last = now;
  }
}

/** Resident memory of `pid` now, KiB. */
async function rss(pid: number): Promise<number> {
  return (await memoryOf([pid])).get(pid)!.rss;
}

/** An echo backend: every connection gets its bytes back. */
function echoBackend() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) {
      (async () => {
        const buffer = new Uint8Array(16 * 1024);
        try {
          for (;;) {
            const n = await conn.read(buffer);
            if (n === null) break;
            for (let w = 0; w < n;) w += await conn.write(buffer.subarray(w, n));
          }
        } catch {
          /* gone */
        } finally {
          try {
            conn.close();
          } catch { /* closed */ }
        }
      })();
    }
  })().catch(() => {});
  return { port: (listener.addr as Deno.NetAddr).port, close: () => listener.close() };
}

/** One round trip through an inlet: what was sent comes back. */
async function roundTrip(port: number, text: string): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(text));
    const buffer = new Uint8Array(1024);
    let got = "";
    const deadline = Date.now() + 10_000;
    while (got.length < text.length) {
      if (Date.now() > deadline) throw new Error("no echo within 10 s");
      const n = await conn.read(buffer);
      if (n === null) break;
      got += new TextDecoder().decode(buffer.subarray(0, n));
    }
    assert.equal(got, text);
  } finally {
    conn.close();
  }
}

interface Row {
  target: string;
  flood: string;
  sent: string;
  before: number;
  /** RSS during each round of the same floods: level once warm if memory is bounded. */
  rounds: number[];
  after: number;
  revocationMs: number;
}

Deno.test({
  name: "floods: the authority, the relay and the gateway hold their limits, stay bounded, " +
    "keep serving members, and revocation arrives within its bound",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const fixture = await authorityFixture();
    const dir = `.state/test-flood-${crypto.randomUUID()}`;
    await Deno.mkdir(`${root}${dir}`, { recursive: true });
    const cleanup: (() => Promise<void> | void)[] = [];
    const rows: Row[] = [];
    const step = (name: string, fn: () => Promise<void>) =>
      t.step({ name, fn, sanitizeOps: false, sanitizeResources: false });
    try {
      // --- the processes ----------------------------------------------------------------
      assert.equal((await fixture.run(["init"])).code, 0);
      const authority = await fixture.serve([
        "--max-per-source",
        String(AUTHORITY_PER_SOURCE),
        "--handshake-timeout",
        "2s",
      ]);
      cleanup.push(() => authority.stop());
      const trustFile = `${fixture.state}/authority.identity.json`;
      const anchor = await readIdentityFile(`${root}${trustFile}`);
      const trust = new TrustStore([anchor]);
      const relayProcess = spawnDeno("the relay", [
        "-P=relay",
        "relay/main.ts",
        ...await fixture.relayArgs(freePort(), authority.port),
        "--metrics",
        "127.0.0.1:0",
      ]);
      cleanup.push(() => void relayProcess.stop());
      const banner = await relayProcess.waitFor(/^LISTENING /, 20_000);
      const relay = {
        pid: relayProcess.pid,
        port: Number(banner.split(" ")[1].split(":").at(-1)),
        metrics: /metrics=(\S+)/.exec(banner)![1],
      };

      const license = async (customer: string) => {
        const out = await fixture.run([
          "license",
          "create",
          "--json",
          "--customer",
          customer,
          "--tier",
          "professional",
        ]);
        assert.equal(out.code, 0, out.stderr);
        return JSON.parse(out.stdout).license as string;
      };
      const ticket = async (...attributes: string[]) => {
        const out = await fixture.run([
          "ticket",
          "create",
          "--json",
          ...attributes.flatMap((a) => ["--attr", a]),
        ]);
        assert.equal(out.code, 0, out.stderr);
        return JSON.parse(out.stdout).ticket as string;
      };
      const customerLicense = await license(CUSTOMER);
      const otherLicense = await license("cust_002");

      const echo = echoBackend();
      cleanup.push(() => echo.close());
      const configFile = `${dir}/gateway.json`;
      await Deno.writeTextFile(
        `${root}${configFile}`,
        JSON.stringify({
          stateDir: `${dir}/gateway`,
          authority: { identityFile: trustFile, address: `127.0.0.1:${authority.port}` },
          relays: [`127.0.0.1:${relay.port}`],
          alias: ALIAS,
          customerId: CUSTOMER,
          ticket: await ticket("role=gateway", `customer_id=${CUSTOMER}`, `relay=${ALIAS}`),
          outlets: [{
            name: "echo",
            backend: `127.0.0.1:${echo.port}`,
            policy: 'subject.role == "edge"',
          }],
          ops: "127.0.0.1:0",
          shutdownGraceMs: 1000,
        }),
        { mode: 0o600 },
      );
      const gatewayProcess = spawnDeno("the gateway", [
        "-P=gateway",
        "gateway/main.ts",
        "run",
        "--config",
        configFile,
      ]);
      cleanup.push(() => void gatewayProcess.stop());
      const ready = await gatewayProcess.waitFor(/\bREADY\b/, 30_000);
      const gateway = {
        pid: gatewayProcess.pid,
        identifier: /\bI[0-9a-f]{64}\b/.exec(ready)![0],
        metrics: /\b(?:metrics|ops)=(\S+)/.exec(ready)![1],
      };

      const edgeOptions = {
        authorityIdentityFile: `${root}${trustFile}`,
        authorityPort: authority.port,
        relayPort: relay.port,
      };
      const edges: TestEdge[] = [];
      const edge = async (name: string, key = customerLicense) => {
        const started = await startTestEdge({ name, license: key, ...edgeOptions });
        edges.push(started);
        return started;
      };
      cleanup.push(async () => {
        for (const e of edges) await e.close().catch(() => {});
      });
      const honest = await edge("edge-honest");
      await honest.connectGateway({
        alias: ALIAS,
        requiredAttributes: GATEWAY_ATTRIBUTES,
        pinned: gateway.identifier,
      });
      const honestInlet = honest.openInlet("echo");
      await roundTrip(honestInlet.addr.port, "before any flood");

      /**
       * Revokes a fresh member connected to the gateway: ms from the
       * command's exit to the gateway closing its channel (the gateway's
       * log line; the member itself may only learn at its idle timeout, as
       * the relay, which follows the list too, may cut it off first).
       */
      const revocationDelay = async (name: string): Promise<number> => {
        const doomed = await edge(name);
        await doomed.connectGateway({
          alias: ALIAS,
          requiredAttributes: GATEWAY_ATTRIBUTES,
          pinned: gateway.identifier,
        });
        const from = gatewayProcess.stderr.lines.length;
        const revoke = await fixture.run(["revoke", doomed.identifier]);
        assert.equal(revoke.code, 0, revoke.stderr);
        const revokedAt = performance.now();
        const closed = new RegExp(`secure channel closed peer=${doomed.identifier}\\b.*revoked`);
        await gatewayProcess.stderr.waitFor(closed, 3 * REVOCATION_BOUND_MS, from).catch(() => {
          throw new Error(
            `${name}: the gateway kept the channel ${3 * REVOCATION_BOUND_MS} ms after revoke\n` +
              gatewayProcess.stderr.text().slice(-3000),
          );
        });
        const ms = performance.now() - revokedAt;
        assert.ok(ms < REVOCATION_BOUND_MS, `${name}: revocation took ${ms.toFixed(0)} ms`);
        return ms;
      };

      /**
       * One round of the three floods (idle, half frames, oversize headers)
       * against `port`, one source each; `inside` runs while they are open.
       * Resolves with the target's RSS sampled after `inside`, once the
       * target has closed every flood connection.
       */
      const floodRound = async (
        pid: number,
        port: number,
        sources: [string, string, string],
        inside: () => Promise<void>,
      ): Promise<number> => {
        const floods: Flood[] = [
          await flood(port, FLOOD, { source: sources[0], opening: "nothing" }),
          await flood(port, FLOOD, { source: sources[1], opening: "half_frame" }),
          await flood(port, FLOOD, { source: sources[2], opening: "oversize_header" }),
        ];
        cleanup.push(() => floods.forEach((f) => f.close()));
        try {
          await inside();
          const during = await rss(pid);
          // Every flood connection is closed by the target: refused on
          // accept, closed at its oversize header, or closed when its time
          // without authentication ran out.
          await eventually(() => floods.every((f) => f.closedByPeer() === f.opened), 15_000)
            .catch(() => {
              throw new Error(
                `flood connections still open: ${floods.map((f) => f.opened - f.closedByPeer())}`,
              );
            });
          return during;
        } finally {
          floods.forEach((f) => f.close());
        }
      };

      // --- the authority ----------------------------------------------------------------
      await step("authority: unauthenticated floods and a stalled subscriber", async () => {
        const before = await rss(authority.pid);
        let revocationMs = 0;
        const rounds: number[] = [];
        rounds.push(
          await floodRound(
            authority.pid,
            authority.port,
            ["127.0.0.2", "127.0.0.3", "127.0.0.4"],
            async () => {
              // A member that subscribes and then stops reading: every reply
              // and push to it goes to a worker that never returns, so its TCP
              // reader stops and the authority's writes to it fill the socket.
              const stalled = await stalledSubscriber(authority.port, anchor, customerLicense);
              cleanup.push(() => stalled.close());
              // The authority works through the requests until its writes to
              // the stalled member block: then it goes quiet (under 20 ms of
              // CPU in 500 ms), and only then is the revocation below pushed.
              await quiet(authority.pid);
              // Held at once: at most the per-source limit from each flooding
              // source (the oversize headers are closed at once), and the
              // honest members' few.
              const held = (await scrape(authority.metrics)).get("nexus_authority_connections")!;
              assert.ok(held <= 2 * AUTHORITY_PER_SOURCE + 16, `${held} connections held`);
              const subscribers = async () =>
                (await scrape(authority.metrics)).get("nexus_authority_subscribers") ?? 0;
              const subscribedBefore = await subscribers();
              // A member not yet enrolled still enrolls, during the flood.
              const late = await edge("edge-late");
              assert.equal(late.credential.attributes.customer_id, CUSTOMER);
              await roundTrip(honestInlet.addr.port, "during the authority flood");
              // A stranger cannot subscribe.
              await assert.rejects(
                strangerSubscribes(authority.port, anchor),
                (e: unknown) => e instanceof AuthorityError && e.code === "not_member",
              );
              revocationMs = await revocationDelay("edge-doomed-authority");
              // The stalled subscriber is dropped once its push times out
              // (5 s); it cannot notice itself, as it reads nothing.
              const dropBy = Date.now() + 15_000;
              while (await subscribers() !== subscribedBefore - 1) {
                if (Date.now() > dropBy) {
                  throw new Error(
                    `the stalled subscriber was not dropped: ${await subscribers()} subscribers, ` +
                      `${subscribedBefore} before`,
                  );
                }
                await new Promise((resolve) => setTimeout(resolve, 100));
              }
            },
          ),
        );
        // The same floods again: memory must not grow with them.
        while (rounds.length < ROUNDS) {
          rounds.push(
            await floodRound(
              authority.pid,
              authority.port,
              ["127.0.0.2", "127.0.0.3", "127.0.0.4"],
              () => roundTrip(honestInlet.addr.port, "during a later authority flood"),
            ),
          );
        }
        const metrics = await scrape(authority.metrics);
        const closed = (reason: string) =>
          metrics.get(`nexus_authority_connections_closed_total{reason="${reason}"}`) ?? 0;
        // Per round: 300 of the idle and 300 of the half-frame flood refused
        // by the per-source limit; the 200 + 200 held closed for carrying no
        // channel after 2 s.
        // (A few of a flood's first connections may already be closed for
        // want of a channel when its last ones arrive, and take their place.)
        assert.ok(
          closed("max_per_source") >= 0.9 * ROUNDS * 2 * (FLOOD - AUTHORITY_PER_SOURCE),
          `refused per source: ${closed("max_per_source")}`,
        );
        assert.ok(
          closed("no_channel") >= ROUNDS * 2 * AUTHORITY_PER_SOURCE,
          `no_channel: ${closed("no_channel")}; ${
            [...metrics].filter(([k]) => k.includes("closed")).map(([k, v]) => `${k} ${v}`)
          }`,
        );
        assertPlateau("authority", rounds);
        rows.push({
          target: "authority",
          flood: "idle + half frames + 256 KiB headers, 3 sources; 1 stalled subscriber",
          sent: `${ROUNDS} × ${3 * FLOOD} connections`,
          before,
          rounds,
          after: await rss(authority.pid),
          revocationMs,
        });
      });

      // --- the relay --------------------------------------------------------------------
      await step("relay: unadmitted floods and long change histories", async () => {
        const before = await rss(relay.pid);
        let revocationMs = 0;
        let perSecond = 0;
        const round = (first: boolean) => async () => {
          // Non-members with the longest history there is (64 changes, 127
          // signatures) and a credential from an authority nobody trusts:
          // each is refused after one signature check.
          const longHistories = await longHistoryAdmissions(relay.port, trust, 200);
          assert.deepEqual([...longHistories.codes.keys()], ["untrusted_issuer"]);
          perSecond = longHistories.perSecond;
          await roundTrip(honestInlet.addr.port, "during the relay flood");
          if (first) revocationMs = await revocationDelay("edge-doomed-relay");
        };
        const sources: [string, string, string] = ["127.0.0.5", "127.0.0.6", "127.0.0.7"];
        const rounds = [await floodRound(relay.pid, relay.port, sources, round(true))];
        while (rounds.length < ROUNDS) {
          rounds.push(await floodRound(relay.pid, relay.port, sources, round(false)));
        }
        const metrics = await scrape(relay.metrics);
        const refused = (reason: string) =>
          metrics.get(`nexus_relay_admissions_refused_total{reason="${reason}"}`) ?? 0;
        // The idle and half-frame floods hold their source's 32 slots for
        // the admission timeout (5 s); the rest of each is refused at once.
        assert.ok(
          refused("too_many_pending") >= ROUNDS * 2 * (FLOOD - 32),
          `too_many_pending: ${refused("too_many_pending")}`,
        );
        assert.equal(refused("untrusted_issuer"), ROUNDS * 200);
        assertPlateau("relay", rounds);
        rows.push({
          target: "relay",
          flood: "idle + half frames + 256 KiB headers, 3 sources; 200 admissions with " +
            `64-change histories (${perSecond.toFixed(0)}/s refused)`,
          sent: `${ROUNDS} × (${3 * FLOOD} connections + 200 admissions)`,
          before,
          rounds,
          after: await rss(relay.pid),
          revocationMs,
        });
      });

      // --- the gateway ------------------------------------------------------------------
      await step("gateway: another customer's member floods it with handshakes", async () => {
        const before = await rss(gateway.pid);
        const attacker = await edge("edge-other-customer", otherLicense);
        const HANDSHAKES = 2000;
        for (let i = 0; i < HANDSHAKES; i++) {
          await attacker.node.route({
            onward: [attacker.relay.address, `forward.${ALIAS}`, "api"],
            return: [`scd.flood${i}`],
            payload: Uint8Array.of(0x01, ...crypto.getRandomValues(new Uint8Array(32))),
          });
        }
        const tooMany = async () =>
          (await scrape(gateway.metrics)).get(
            'nexus_gateway_handshake_failures_total{code="too_many_pending"}',
          ) ?? 0;
        const deadline = Date.now() + 15_000;
        while (await tooMany() < HANDSHAKES - 16) {
          if (Date.now() > deadline) {
            throw new Error(`too_many_pending at the gateway: ${await tooMany()}`);
          }
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        const during = await rss(gateway.pid);
        // An honest member still opens a new channel, and the old one serves.
        const fresh = await edge("edge-fresh");
        await fresh.connectGateway({
          alias: ALIAS,
          requiredAttributes: GATEWAY_ATTRIBUTES,
          pinned: gateway.identifier,
        });
        await roundTrip(fresh.openInlet("echo").addr.port, "a new channel during the flood");
        await roundTrip(honestInlet.addr.port, "during the gateway flood");
        const revocationMs = await revocationDelay("edge-doomed-gateway");
        rows.push({
          target: "gateway",
          flood: "message 1s from a member of another customer, through the relay",
          sent: `${HANDSHAKES} handshakes`,
          before,
          rounds: [during],
          after: await rss(gateway.pid),
          revocationMs,
        });
      });
    } finally {
      for (const undo of cleanup.reverse()) await undo();
      await Deno.remove(`${root}${dir}`, { recursive: true }).catch(() => {});
      await fixture.remove();
      if (rows.length > 0) {
        console.log(
          "\n| target | flood | sent | RSS before | RSS in each round | after | revocation |",
        );
        console.log("|---|---|---|---|---|---|---|");
        for (const r of rows) {
          const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`;
          console.log(
            `| ${r.target} | ${r.flood} | ${r.sent} | ${mib(r.before)} | ${
              r.rounds.map(mib).join(", ")
            } | ${mib(r.after)} | ${r.revocationMs.toFixed(0)} ms |`,
          );
        }
      }
    }
  },
});

/**
 * A member that subscribes to revocation pushes and stops reading: the
 * reply and every push go to a worker that never returns. It then asks
 * for the revocation list {@link REQUESTS} times without reading the
 * answers (about 300 bytes each), so the authority's writes to it fill
 * the socket's buffers (on loopback up to 6 MiB received and 4 MiB sent:
 * tcp_rmem, tcp_wmem).
 */
const REQUESTS = 40_000;

async function stalledSubscriber(port: number, anchor: VerifiedIdentity, license: string) {
  const identity = await Identity.create(await SoftwareSigner.generate());
  const node = new Node({ name: "stalled" });
  const transport = new TcpTransport(node);
  const { address, connection } = await transport.connect({ hostname: "127.0.0.1", port });
  const client = await AuthorityClient.connect({
    node,
    route: [address],
    local: await createChannelIdentity(identity),
    trust: new TrustStore([anchor]),
  });
  await client.enroll({ license });
  node.register("stall", () => new Promise(() => {}));
  const send = (id: number, op: "subscribe" | "revocations") =>
    client.channel.send([AUTHORITY_API], encodeRequest(id, op), ["stall"]).catch(() => {});
  void send(1000, "subscribe");
  for (let i = 0; i < REQUESTS; i++) void send(1001 + i, "revocations");
  return {
    close: () => {
      connection.close("done");
      void transport.close();
    },
  };
}

/** A fresh identity, never enrolled, asking to subscribe. */
async function strangerSubscribes(port: number, anchor: VerifiedIdentity): Promise<void> {
  const identity = await Identity.create(await SoftwareSigner.generate());
  const node = new Node({ name: "stranger" });
  const transport = new TcpTransport(node);
  try {
    const { address } = await transport.connect({ hostname: "127.0.0.1", port });
    const client = await AuthorityClient.connect({
      node,
      route: [address],
      local: await createChannelIdentity(identity),
      trust: new TrustStore([anchor]),
    });
    await client.subscribe(() => {});
  } finally {
    await transport.close();
  }
}

/**
 * `count` admissions, 20 at a time, by one identity whose history has
 * {@link MAX_CHANGES} changes, with a credential from an untrusted
 * authority; the refusal codes and the rate.
 */
async function longHistoryAdmissions(port: number, trust: TrustStore, count: number) {
  let identity = await Identity.create(await SoftwareSigner.generate());
  while (identity.history.changes.length < MAX_CHANGES) {
    identity = await identity.rotate(await SoftwareSigner.generate());
  }
  const stranger = await Identity.create(await SoftwareSigner.generate());
  const credential = await issueCredential(stranger, {
    subject: identity.identifier,
    subjectKey: identity.primaryKey,
    attributes: { role: "edge", customer_id: CUSTOMER },
  });
  const node = new Node({ name: "long-history" });
  const transport = new TcpTransport(node);
  const codes = new Map<string, number>();
  const started = performance.now();
  try {
    for (let i = 0; i < count; i += 20) {
      await Promise.all(Array.from({ length: Math.min(20, count - i) }, async () => {
        try {
          await connectRelay({
            transport,
            hostname: "127.0.0.1",
            port,
            identity,
            credential: credential.encoded,
            trust,
          });
          codes.set("admitted", (codes.get("admitted") ?? 0) + 1);
        } catch (error) {
          // The relay's code is in the message: "the relay refused admission: <code>".
          const code = error instanceof RelayError
            ? /refused admission: (\w+)/.exec(error.message)?.[1] ?? error.code
            : String(error);
          codes.set(code, (codes.get(code) ?? 0) + 1);
        }
      }));
    }
  } finally {
    await transport.close();
  }
  return { codes, perSecond: count / ((performance.now() - started) / 1000) };
}
