/**
 * The credential authority as three replicas on one PostgreSQL database and
 * one SoftHSM2 token, each a real `authority serve` process under the
 * `authority` permission set, with members as real secure channels:
 *
 * - under load from many members (enrollment, then refreshes), SIGKILL one
 *   replica, then the leader: the members keep getting credentials through
 *   the remaining replica (the time is measured and bounded), no
 *   credential id is issued twice, the audit chain verifies with no fork or
 *   gap, and a revocation made just after the leader is killed is signed by
 *   the next leader and reaches a subscriber (time measured and bounded);
 * - one ticket presented at the same moment to three replicas by three
 *   members: exactly one enrolls;
 * - the member runtime, given the three endpoints, moves on when the one it
 *   uses is killed, with its backoff.
 *
 * One PostgreSQL server per file (tests/support/postgres.ts), one database
 * per test. Timings are printed for the closing notes; the bounds asserted
 * are generous (what a failover must never exceed), not benchmarks.
 */
import assert from "node:assert/strict";
import { AuthorityClient } from "../src/authority_client/authority_client.ts";
import { createChannelIdentity } from "../src/channel/channel_identity.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { AuthorityError } from "../src/errors.ts";
import { readIdentityFile } from "../src/identity/identity_file.ts";
import { Identity } from "../src/identity/identity.ts";
import { SoftwareSigner } from "../src/identity/software_signer.ts";
import { startMember } from "../src/member/member.ts";
import { Node } from "../src/routing/node.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import { AuthorityStore } from "../authority/store.ts";
import {
  type AuthorityClientAt,
  authorityClientAt,
  type AuthorityFixture,
  authorityFixture,
  statePath,
} from "../scripts/support/authority_process.ts";
import { type PostgresServer, startPostgres } from "./support/postgres.ts";
import { freePort } from "../scripts/support/free_port.ts";
import { ROOT, spawnDeno } from "../scripts/support/service_process.ts";

type Replica = Awaited<ReturnType<AuthorityFixture["serve"]>>;

/** A fresh database on the file's server, its URL, and an authority initialised in it. */
async function deployment(pg: PostgresServer, name: string) {
  await pg.psql(`CREATE DATABASE ${name}`);
  const url = `postgresql://${pg.user}@127.0.0.1:${pg.port}/${name}`;
  const fixture = await authorityFixture();
  const init = await fixture.run(["init", "--json", "--database", url]);
  assert.equal(init.code, 0, init.stderr);
  const trust = new TrustStore([
    await readIdentityFile(statePath(fixture, "authority.identity.json")),
  ]);
  const store = await AuthorityStore.open(url);
  return { url, fixture, trust, store };
}

async function metric(replica: Replica, name: string): Promise<number | null> {
  try {
    const text = await (await fetch(`http://${replica.metrics}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(`${name} `));
    return line === undefined ? null : Number(line.split(" ")[1]);
  } catch {
    return null;
  }
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  while (!await condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A new member's client (its own identity, node and connection) at the replica on `port`. */
async function clientAt(
  port: number,
  trust: TrustStore,
  closers: (() => Promise<void>)[],
): Promise<AuthorityClient> {
  const at = await authorityClientAt(
    port,
    trust,
    await Identity.create(await SoftwareSigner.generate()),
  );
  closers.push(at.close);
  return at.client;
}

/**
 * A member driving load: its own identity and node, a secure channel to one
 * replica at a time, moving to the next endpoint (after a short pause) when
 * a request fails for any reason but a refusal of its own.
 */
class LoadMember {
  readonly identity: Identity;
  readonly ids: string[] = [];
  /** When each credential arrived (ms). */
  readonly times: number[] = [];
  refusal: AuthorityError | null = null;
  #ports: () => number[];
  #trust: TrustStore;
  #stop = false;
  #done: Promise<void> | null = null;

  constructor(identity: Identity, ports: () => number[], trust: TrustStore) {
    this.identity = identity;
    this.#ports = ports;
    this.#trust = trust;
  }

  static async create(ports: () => number[], trust: TrustStore): Promise<LoadMember> {
    return new LoadMember(await Identity.create(await SoftwareSigner.generate()), ports, trust);
  }

  /** Enrolls with `ticket` (through any replica), then refreshes until stopped. */
  start(ticket: string, first: number): void {
    this.#done = this.#run(ticket, first);
  }

  async #run(ticket: string, first: number): Promise<void> {
    const local = await createChannelIdentity(this.identity);
    let enrolled = false;
    for (let at = first; !this.#stop; at++) {
      const ports = this.#ports();
      const port = ports[at % ports.length];
      let link: AuthorityClientAt | null = null;
      try {
        link = await authorityClientAt(port, this.#trust, this.identity, local);
        const { client } = link;
        // As the member runtime does: a dead connection fails the request at once.
        link.connection.closed.then(() => client.close().catch(() => {}));
        while (!this.#stop) {
          const credential = enrolled ? await client.credential() : await client.enroll({ ticket });
          enrolled = true;
          this.ids.push(credential.id);
          this.times.push(Date.now());
        }
      } catch (error) {
        if (
          error instanceof AuthorityError &&
          ["member_revoked", "ticket_used", "not_member"].includes(error.code)
        ) {
          this.refusal = error;
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      } finally {
        await link?.close();
      }
    }
  }

  /** The first credential that arrived at or after `t`, or null. */
  firstAfter(t: number): number | null {
    return this.times.find((time) => time >= t) ?? null;
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await this.#done;
  }
}

let server: PostgresServer | null = null;
let databases = 0;
/** The file's PostgreSQL server, started by the first test that needs it. */
async function postgres(): Promise<PostgresServer> {
  return server ??= await startPostgres({ settings: { max_connections: "100" } });
}

Deno.test({
  name:
    "replicas: SIGKILL one, then the leader, under load; credentials keep coming, ids unique, chain intact, revocation signed by the next leader",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const pg = await postgres();
  const { url, fixture, trust, store } = await deployment(pg, `failover${++databases}`);
  const replicas: Replica[] = [];
  const members: LoadMember[] = [];
  const closers: (() => Promise<void>)[] = [];
  try {
    for (let i = 0; i < 3; i++) replicas.push(await fixture.serve(["--database", url]));
    const alive = new Set(replicas);
    const ports = () => replicas.filter((r) => alive.has(r)).map((r) => r.port);

    // Exactly one leader among the three.
    let leaders: Replica[] = [];
    await until(
      async () => {
        const flags = await Promise.all(replicas.map((r) => metric(r, "nexus_authority_leader")));
        leaders = replicas.filter((_, i) => flags[i] === 1);
        return leaders.length === 1 && flags.every((f) => f === 0 || f === 1);
      },
      5000,
      "one leader",
    );
    const leader = leaders[0];
    const [first, survivor] = replicas.filter((r) => r !== leader);

    // A real relay process following all three replicas (`--authority a,b,c`),
    // enrolled with a one-time ticket: its member runtime fails over too.
    const relayPort = freePort();
    const relayMetrics = `127.0.0.1:${freePort()}`;
    const relayTicket = await store.createTicket({
      attributes: { role: "relay", relay_addresses: [`127.0.0.1:${relayPort}`] },
      ttlSeconds: 600,
    });
    const ticketFile = `${fixture.state}/relay.ticket`;
    await Deno.writeTextFile(`${ROOT}${ticketFile}`, relayTicket.secret, { mode: 0o600 });
    const relay = spawnDeno("relay", [
      "-P=relay",
      "relay/main.ts",
      "--state",
      `${fixture.state}/relay`,
      "--ticket-file",
      ticketFile,
      "--listen",
      `127.0.0.1:${relayPort}`,
      "--metrics",
      relayMetrics,
      "--trust",
      `${fixture.state}/authority.identity.json`,
      "--authority",
      replicas.map((r) => `127.0.0.1:${r.port}`).join(","),
    ]);
    closers.push(() => relay.stop().then(() => {}));
    await relay.waitFor(/^LISTENING /, 30_000);
    const relaySerial = async () => {
      try {
        const text = await (await fetch(`http://${relayMetrics}/metrics`)).text();
        const line = text.split("\n").find((l) => l.startsWith("nexus_relay_revocation_serial "));
        return line === undefined ? 0 : Number(line.split(" ")[1]);
      } catch {
        return 0;
      }
    };

    // A watcher subscribed at the replica that survives both kills.
    const watcherTicket = await store.createTicket({
      attributes: { role: "gateway" },
      ttlSeconds: 600,
    });
    const watcher = await clientAt(survivor.port, trust, closers);
    await watcher.enroll({ ticket: watcherTicket.secret });
    const lists: { serial: number; identifiers: readonly string[]; at: number }[] = [];
    await watcher.subscribe((list) => void lists.push({ ...list, at: Date.now() }));

    // Load: 12 members spread over the three replicas, enrolling then refreshing.
    for (let i = 0; i < 12; i++) {
      const member = await LoadMember.create(ports, trust);
      const { secret } = await store.createTicket({
        attributes: { role: "edge" },
        ttlSeconds: 600,
      });
      member.start(secret, i);
      members.push(member);
    }
    await until(() => members.every((m) => m.ids.length >= 3), 20_000, "load started");

    // 1. SIGKILL a replica that does not lead.
    const kill1 = Date.now();
    Deno.kill(first.pid, "SIGKILL");
    alive.delete(first);
    await until(
      () => members.every((m) => m.firstAfter(kill1 + 100) !== null),
      15_000,
      "credentials after the first kill",
    );
    const failover1 = Math.max(...members.map((m) => m.firstAfter(kill1 + 100)! - kill1));

    // 2. SIGKILL the leader, and revoke a member at once: the survivor must
    // take the leadership and sign the list.
    const victim = members[0];
    const kill2 = Date.now();
    Deno.kill(leader.pid, "SIGKILL");
    alive.delete(leader);
    await store.revoke(victim.identity.identifier);
    await until(
      () => lists.some((l) => l.identifiers.includes(victim.identity.identifier)),
      15_000,
      "the revocation pushed by the next leader",
    );
    const revocationDelay = lists.find((l) =>
      l.identifiers.includes(victim.identity.identifier)
    )!.at - kill2;
    // And the relay process, wherever its authority connection was.
    await until(async () => await relaySerial() >= 1, 15_000, "the relay at serial 1");
    const relayDelay = Date.now() - kill2;
    assert.equal(await metric(survivor, "nexus_authority_leader"), 1);
    const others = members.slice(1);
    await until(
      () => others.every((m) => m.firstAfter(kill2 + 100) !== null),
      15_000,
      "credentials after the leader's kill",
    );
    const failover2 = Math.max(...others.map((m) => m.firstAfter(kill2 + 100)! - kill2));
    await until(() => victim.refusal !== null, 10_000, "the revoked member refused");
    assert.equal(victim.refusal!.code, "member_revoked");

    await Promise.all(members.map((m) => m.stop()));

    // No id twice; every credential handed out is recorded; the chain is whole.
    const ids = members.flatMap((m) => m.ids);
    assert.equal(new Set(ids).size, ids.length, "a credential id was issued twice");
    for (const id of ids) {
      assert.notEqual(await store.credentialSubject(id), null, `credential ${id} not recorded`);
    }
    const verification = await store.verifyAudit();
    assert.ok(verification.ok, JSON.stringify(verification));
    const entries = await store.auditEntries();
    const issued = entries.filter((e) =>
      e.kind === "credential.issue" || e.kind === "credential.refresh"
    );
    // Every recorded credential has its entry, and only once (no fork replayed a batch).
    assert.ok(issued.length >= ids.length);
    assert.equal(new Set(issued.map((e) => e.data.id)).size, issued.length);
    const saved = entries.filter((e) => e.kind === "revocation_list.save");
    assert.deepEqual(saved.map((e) => e.data.serial), [1], "one list per serial");

    const figures =
      `replicas: ${ids.length} credentials; first kill → every member served again in ${failover1} ms; ` +
      `leader kill → ${failover2} ms; revocation pushed ${revocationDelay} ms after the leader's kill, at the relay process within ${relayDelay} ms`;
    console.log(figures);
    assert.ok(
      failover1 < 10_000 && failover2 < 10_000 && revocationDelay < 10_000 && relayDelay < 15_000,
      figures,
    );
  } finally {
    await Promise.all(members.map((m) => m.stop()));
    for (const close of closers) await close();
    for (const replica of replicas) await replica.stop().catch(() => {});
    await store.close();
    await fixture.remove();
  }
});

Deno.test({
  name:
    "replicas: one ticket at three replicas at once is redeemed exactly once; a revocation is signed once and pushed by every replica",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const pg = await postgres();
  const { url, fixture, trust, store } = await deployment(pg, `ticket${++databases}`);
  const replicas: Replica[] = [];
  const closers: (() => Promise<void>)[] = [];
  try {
    for (let i = 0; i < 3; i++) replicas.push(await fixture.serve(["--database", url]));
    for (let round = 0; round < 5; round++) {
      const { secret } = await store.createTicket({
        attributes: { role: "edge" },
        ttlSeconds: 600,
      });
      const clients = await Promise.all(
        replicas.map((replica) => clientAt(replica.port, trust, closers)),
      );
      const outcomes = await Promise.allSettled(clients.map((c) => c.enroll({ ticket: secret })));
      const won = outcomes.filter((o) => o.status === "fulfilled");
      const lost = outcomes.filter((o): o is PromiseRejectedResult => o.status === "rejected");
      assert.equal(won.length, 1, `round ${round}: ${won.length} enrollments`);
      for (const o of lost) {
        assert.ok(
          o.reason instanceof AuthorityError && o.reason.code === "ticket_used",
          String(o.reason),
        );
      }
    }
    assert.equal((await store.listMembers()).length, 5);

    // A revocation with all three up: signed once (by the leader), pushed by every replica.
    const [member] = await store.listMembers();
    await store.revoke(member.identifier);
    await until(
      async () => {
        const serials = await Promise.all(
          replicas.map((r) => metric(r, "nexus_authority_revocation_serial")),
        );
        return serials.every((serial) => serial === 1);
      },
      5000,
      "every replica at serial 1",
    );
    const signed = await Promise.all(
      replicas.map((r) => metric(r, "nexus_authority_revocation_lists_total")),
    );
    assert.deepEqual(signed.toSorted(), [0, 0, 1], "one signature for one serial");
  } finally {
    for (const close of closers) await close();
    for (const replica of replicas) await replica.stop().catch(() => {});
    await store.close();
    await fixture.remove();
  }
});

Deno.test({
  name: "replicas: the member runtime moves to the next endpoint when its replica is killed",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const pg = await postgres();
  const { url, fixture, trust, store } = await deployment(pg, `runtime${++databases}`);
  const replicas: Replica[] = [];
  const node = new Node({ name: "edge" });
  const transport = new TcpTransport(node);
  let member: Awaited<ReturnType<typeof startMember>> | null = null;
  try {
    for (let i = 0; i < 3; i++) replicas.push(await fixture.serve(["--database", url]));
    const identity = await Identity.create(await SoftwareSigner.generate());
    const { secret } = await store.createTicket({ attributes: { role: "edge" }, ttlSeconds: 600 });
    member = await startMember({
      role: "edge",
      identity,
      trust,
      node,
      transport,
      authorities: replicas.map((r) => ({ hostname: "127.0.0.1", port: r.port })),
      enrollment: () => ({ ticket: secret }),
    });
    await member.firstCredential;
    const credentials: number[] = [];
    member.onCredential(() => void credentials.push(Date.now()));
    const first = member.status().authority.address;
    const used = replicas.find((r) => first === `127.0.0.1:${r.port}`)!;
    assert.ok(used !== undefined, `connected to ${first}`);
    const killed = Date.now();
    Deno.kill(used.pid, "SIGKILL");
    await until(() => credentials.length > 0, 15_000, "a credential from another replica");
    assert.notEqual(member.status().authority.address, first);
    console.log(
      `member runtime: a credential from the next replica ${
        credentials[0] - killed
      } ms after the kill`,
    );
  } finally {
    await member?.close();
    await transport.close();
    for (const replica of replicas) await replica.stop().catch(() => {});
    await store.close();
    await fixture.remove();
  }
});

Deno.test({
  name:
    "replicas: PostgreSQL stopped: requests refused with store_unavailable, channels kept, /readyz not ready; resumed without a restart",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  // A server of its own: this test stops it.
  const pg = await startPostgres();
  const { url, fixture, trust, store } = await deployment(pg, "outage");
  const replicas: Replica[] = [];
  const closers: (() => Promise<void>)[] = [];
  try {
    for (let i = 0; i < 2; i++) replicas.push(await fixture.serve(["--database", url]));
    const clients = await Promise.all(replicas.map(async (replica) => {
      const client = await clientAt(replica.port, trust, closers);
      const { secret } = await store.createTicket({
        attributes: { role: "edge" },
        ttlSeconds: 600,
      });
      await client.enroll({ ticket: secret });
      return client;
    }));
    await store.close();

    await pg.pause();
    const stoppedAt = Date.now();
    for (const client of clients) {
      await assert.rejects(
        client.credential(),
        (e: unknown) => e instanceof AuthorityError && e.code === "store_unavailable",
      );
      assert.equal(client.channel.isClosed, false, "the channel was kept");
    }
    const refusedIn = Date.now() - stoppedAt;
    await until(
      async () => {
        const response = await fetch(`http://${replicas[0].metrics}/readyz`);
        await response.body?.cancel();
        return response.status === 503;
      },
      5000,
      "/readyz not ready during the outage",
    );

    await pg.resume();
    const resumedAt = Date.now();
    // The same processes and the same channels: no restart, no reconnection.
    for (const client of clients) {
      await until(
        () => client.credential().then(() => true, () => false),
        15_000,
        "a credential after PostgreSQL returned",
      );
    }
    const backIn = Date.now() - resumedAt;
    await until(
      async () => {
        const response = await fetch(`http://${replicas[0].metrics}/readyz`);
        await response.body?.cancel();
        return response.status === 200;
      },
      5000,
      "/readyz ready again",
    );
    console.log(
      `outage: refused in ${refusedIn} ms after the stop; served again ${backIn} ms after the restart`,
    );
  } finally {
    for (const close of closers) await close();
    for (const replica of replicas) await replica.stop().catch(() => {});
    await store.close();
    await fixture.remove();
    await pg.stop();
  }
});

// Last: the file's server goes with the file.
Deno.test(
  { name: "replicas: (the file's PostgreSQL server stopped)", sanitizeResources: false },
  async () => {
    await server?.stop();
    server = null;
  },
);
