/**
 * The authority store's conformance suite: what every engine behind
 * `store_core.ts` must do, through the {@link AuthorityStore} facade, on a
 * fresh store per test. `storeConformance(engine, open)` registers the
 * cases as `Deno.test`s named `<engine>: ...`; `authority/store_test.ts` runs
 * them on SQLite (a temporary file per test) and `pg_store_test.ts` on
 * PostgreSQL (a fresh database per test on one server per file).
 *
 * Covered: tickets, licenses, members and their keys, issued credentials,
 * revocation and revocation lists, meta, reopening, the audit log (paging,
 * refusals, and tampering with its rows straight in the database), group
 * commit through the facade, and races between connections and between
 * processes (child processes open the store by its location: separate
 * processes on one SQLite file, or replicas on one PostgreSQL database).
 *
 * What is about one engine only (SQLite's file mode, WAL, busy timeout, a
 * file that is not a store, old indexes) stays in that engine's test file.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createRevocationList } from "../../src/credential/revocation.ts";
import { AuthorityError, CredentialError } from "../../src/errors.ts";
import { assertRejectsWithCode, identityFromByte, NOW } from "../../src/testdata/test_helpers.ts";
import { GENESIS_HASH, nextAuditRow } from "../audit.ts";
import { POSTGRES_ENV } from "../config.ts";
import { AuthorityStore, type CredentialRecord, isPostgresUrl, StoreBatchError } from "../store.ts";

/** One fresh, empty store for one test, and direct access to its database. */
export interface ConformanceStore {
  /** Where the store is, as {@link AuthorityStore.open} takes it: a SQLite path or a PostgreSQL URL. */
  readonly location: string;
  /**
   * Runs SQL statements straight on the database, around the store (another
   * connection, not through any core): to tamper with it. Only SQL both
   * engines accept is given.
   */
  exec(...statements: string[]): Promise<void>;
  /** The rows of a query run straight on the database, as plain objects. */
  query(sql: string): Promise<Record<string, unknown>[]>;
  /**
   * Everything the database keeps, as text, to search for secrets that
   * must never be stored (SQLite: the file and its WAL, byte for byte;
   * PostgreSQL: every row of every table).
   */
  contents(): Promise<string>;
  /** Removes the store (its files, or its database). */
  cleanup(): Promise<void>;
}

/** The member most cases use. */
export const ALICE = "I" + "a1".repeat(32);
const BOB = "I" + "b2".repeat(32);
const CAROL = "I" + "c3".repeat(32);
const CRED = "c3".repeat(16);

/** A distinct identifier per `n`. */
function identifier(n: number): string {
  return "I" + n.toString(16).padStart(64, "0");
}

/** A distinct credential id per `n`. */
export function credentialId(n: number): string {
  return n.toString(16).padStart(32, "0");
}

function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** `text` as an SQL string literal (both engines: quotes doubled, backslashes literal). */
function sqlText(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/**
 * Deep equality after a JSON round trip: attributes are frozen objects
 * without a prototype, which strict deep equality tells apart from literals.
 */
export function assertPlain(actual: unknown, expected: unknown, message?: string): void {
  const plain = (value: unknown) =>
    value === undefined ? undefined : JSON.parse(JSON.stringify(value));
  assert.deepEqual(plain(actual), plain(expected), message);
}

/** A store holding one member (ALICE) and one recorded credential of hers. */
export async function seedMember(
  store: AuthorityStore,
  id = credentialId(1),
): Promise<void> {
  await store.addMember(ALICE, { role: "edge" }, "operator", NOW);
  await store.recordCredential({
    id,
    subject: ALICE,
    issuedAt: NOW,
    expiresAt: NOW + 3600,
    refresh: false,
  });
}

function record(n: number, subject = ALICE): CredentialRecord {
  return { id: credentialId(n), subject, issuedAt: NOW, expiresAt: NOW + 3600, refresh: true };
}

// ---------------------------------------------------------------------------
// Races between processes (each child process opens its own connection)

/**
 * A child process: opens the store, says "ready", then reads one JSON line
 * (the go signal: an op and its arguments), runs it and prints the results.
 */
const CHILD_SOURCE = `
import { AuthorityStore } from ${JSON.stringify(new URL("../store.ts", import.meta.url).href)};
const store = await AuthorityStore.open(Deno.args[0], { busyTimeoutMs: 30000 });
console.log("ready");
let line = "";
const decoder = new TextDecoder();
for await (const chunk of Deno.stdin.readable) {
  line += decoder.decode(chunk, { stream: true });
  if (line.includes("\\n")) break;
}
const { op, args } = JSON.parse(line);
const results = [];
for (const arg of args) {
  try {
    if (op === "redeem") results.push({ ok: await store.redeemTicket(arg.secret, arg.identifier, arg.now) });
    else if (op === "audit") results.push({ ok: (await store.appendAudit("race.entry", arg, 1767225600)).seq });
    else if (op === "revoke") results.push({ ok: (await store.revoke(arg, 1767225600)).serial });
    else throw new Error("unknown op " + op);
  } catch (error) {
    results.push({ code: error?.code ?? String(error) });
  }
}
await store.close();
console.log(JSON.stringify(results));
`;

type RaceResult = { ok?: unknown; code?: string };

/**
 * What a child needs to open the store at `location`, and nothing more: the
 * SQLite file's directory, or the PostgreSQL server's address and the
 * environment the client reads (as the authority service's own set).
 */
function childPermissions(location: string): string[] {
  if (isPostgresUrl(location)) {
    const url = new URL(location);
    return [`--allow-net=${url.hostname}:${url.port}`, `--allow-env=${POSTGRES_ENV.join(",")}`];
  }
  const dir = location.slice(0, location.lastIndexOf("/"));
  return [`--allow-read=${dir}`, `--allow-write=${dir}`];
}

/**
 * Runs `op` in `jobs.length` child processes, each with its own connection
 * to the store at `location` (for PostgreSQL, each a replica of its own)
 * and access to that store only, released together once all have opened
 * the store; returns each child's results.
 */
async function race(location: string, op: string, jobs: unknown[][]): Promise<RaceResult[][]> {
  const main = "data:application/javascript;base64," +
    new TextEncoder().encode(CHILD_SOURCE).toBase64();
  const children = jobs.map(() =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-check",
        "--no-prompt",
        "--config",
        new URL("../../deno.json", import.meta.url).pathname,
        ...childPermissions(location),
        main,
        location,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn()
  );
  const outputs = children.map((child) => ({
    reader: child.stdout.pipeThrough(new TextDecoderStream()).getReader(),
    text: "",
    stderr: new Response(child.stderr).text(),
  }));
  try {
    for (const output of outputs) {
      while (!output.text.includes("ready\n")) {
        const { value, done } = await output.reader.read();
        if (done) throw new Error(`a child failed to start: ${await output.stderr}`);
        output.text += value;
      }
    }
    const writes = children.map(async (child, i) => {
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(JSON.stringify({ op, args: jobs[i] }) + "\n"));
      await writer.close();
    });
    await Promise.all(writes);
    const results: RaceResult[][] = [];
    for (const [i, output] of outputs.entries()) {
      for (;;) {
        const { value, done } = await output.reader.read();
        if (done) break;
        output.text += value;
      }
      const status = await children[i].status;
      assert.equal(status.code, 0, await output.stderr);
      const lines = output.text.trim().split("\n");
      results.push(JSON.parse(lines[lines.length - 1]));
    }
    return results;
  } finally {
    for (const child of children) {
      try {
        child.kill();
      } catch {
        // Already exited.
      }
    }
    for (const output of outputs) {
      await output.reader.cancel().catch(() => {});
      await output.stderr.catch(() => "");
    }
    await Promise.all(children.map((child) => child.status));
  }
}

// ---------------------------------------------------------------------------
// The audit log, tampered with straight in the database

/** Tamperings of a populated log (see `populate`), and the seq each must be caught at. */
const TAMPERING: [string, string[], number][] = [];
for (let seq = 1; seq <= 6; seq++) {
  TAMPERING.push(
    [`time of entry ${seq}`, [`UPDATE audit SET time = time + 1 WHERE seq = ${seq}`], seq],
    [`kind of entry ${seq}`, [`UPDATE audit SET kind = 'forged' WHERE seq = ${seq}`], seq],
    [
      `data of entry ${seq}`,
      [`UPDATE audit SET data = replace(data, '"', '"x') WHERE seq = ${seq}`],
      seq,
    ],
    [
      `prev_hash of entry ${seq}`,
      [`UPDATE audit SET prev_hash = '${"e".repeat(64)}' WHERE seq = ${seq}`],
      seq,
    ],
    [
      `hash of entry ${seq}`,
      [`UPDATE audit SET hash = '${"d".repeat(64)}' WHERE seq = ${seq}`],
      seq,
    ],
  );
}
TAMPERING.push(
  ["data made non-canonical", [`UPDATE audit SET data = data || ' ' WHERE seq = 2`], 2],
  ["entry 3 deleted", ["DELETE FROM audit WHERE seq = 3"], 3],
  ["entry 1 deleted", ["DELETE FROM audit WHERE seq = 1"], 1],
  ["last entry deleted", ["DELETE FROM audit WHERE seq = 6"], 6],
  ["every entry deleted", ["DELETE FROM audit"], 1],
  ["entry 4 renumbered", ["UPDATE audit SET seq = 40 WHERE seq = 4"], 4],
  [
    "entries 2 and 3 swapped",
    [
      "UPDATE audit SET seq = -2 WHERE seq = 2",
      "UPDATE audit SET seq = 2 WHERE seq = 3",
      "UPDATE audit SET seq = 3 WHERE seq = -2",
    ],
    2,
  ],
  ["head row deleted", ["DELETE FROM audit_head"], 1],
  ["head hash edited", [`UPDATE audit_head SET hash = '${"c".repeat(64)}'`], 6],
);

/** An audit row as an INSERT both engines accept. */
function insertAuditRow(row: ReturnType<typeof nextAuditRow>): string {
  return `INSERT INTO audit (seq, time, kind, data, prev_hash, hash) VALUES (${row.seq}, ${row.time}, ${
    sqlText(row.kind)
  }, ${sqlText(row.data)}, ${sqlText(row.prevHash)}, ${sqlText(row.hash)})`;
}

// ---------------------------------------------------------------------------
// The suite

/**
 * Registers the conformance cases for `engine` (named `<engine>: ...`; the
 * name is the facade's `engine`, which each case checks), each on a fresh
 * store from `open`, removed afterwards.
 */
export function storeConformance(
  engine: string,
  open: () => Promise<ConformanceStore>,
): void {
  const test = (name: string, fn: () => Promise<void>) => Deno.test(`${engine}: ${name}`, fn);

  /** Runs `fn` with a fresh, empty store (and its fixture), removed afterwards. */
  async function withFixture(fn: (fixture: ConformanceStore) => Promise<void>): Promise<void> {
    const fixture = await open();
    try {
      await fn(fixture);
    } finally {
      await fixture.cleanup();
    }
  }

  /** Runs `fn` with a fresh store, open, closed afterwards. */
  function withStore(
    fn: (store: AuthorityStore, fixture: ConformanceStore) => Promise<void>,
  ): Promise<void> {
    return withFixture(async (fixture) => {
      const store = await AuthorityStore.open(fixture.location);
      try {
        assert.equal(store.engine, engine, `the store at ${fixture.location} runs on ${engine}`);
        await fn(store, fixture);
      } finally {
        await store.close();
      }
    });
  }

  // -------------------------------------------------------------------------
  // Reopening

  test("open: reopening keeps every kind of data", async () => {
    await withFixture(async ({ location }) => {
      let store = await AuthorityStore.open(location);
      const { secret, ticket } = await store.createTicket({
        attributes: { role: "edge" },
        ttlSeconds: 600,
        now: NOW,
      });
      const spare = await store.createTicket({ attributes: {}, ttlSeconds: 600, now: NOW });
      const { key } = await store.createLicense({ customerId: "cust_001", tier: "pro", now: NOW });
      await store.redeemTicket(secret, ALICE, NOW);
      await store.recordCredential({
        id: credentialId(7),
        subject: ALICE,
        issuedAt: NOW,
        expiresAt: NOW + 60,
        refresh: false,
      });
      const state = await store.revoke(credentialId(7), NOW);
      await store.setMeta("hsm.key_label", "authority-2026");
      const head = await store.auditHead();
      await store.close();
      await store.close(); // harmless

      store = await AuthorityStore.open(location);
      try {
        assertPlain((await store.getMember(ALICE))?.attributes, { role: "edge" });
        assertPlain((await store.getTicket(ticket.id))?.usedBy, ALICE);
        await assertRejectsWithCode(
          store.redeemTicket(secret, BOB, NOW),
          AuthorityError,
          "ticket_used",
        );
        assertPlain(await store.redeemTicket(spare.secret, BOB, NOW), {});
        assert.equal((await store.redeemLicense(key, CAROL, NOW)).customer_id, "cust_001");
        assert.equal(await store.credentialSubject(credentialId(7)), ALICE);
        assertPlain(await store.revocationState(), state);
        assert.equal(await store.getMeta("hsm.key_label"), "authority-2026");
        const result = await store.verifyAudit({ checkpoints: [head] });
        assert.ok(result.ok && result.entries === head.seq + 2);
      } finally {
        await store.close();
      }
    });
  });

  // -------------------------------------------------------------------------
  // Tickets

  test("tickets: the secret is returned once; only its hash is stored", async () => {
    await withStore(async (store, fixture) => {
      const { secret, ticket } = await store.createTicket({
        attributes: { role: "edge", capabilities: ["search", "mcp"], rate_limit_rpm: 2000 },
        ttlSeconds: 900,
        now: NOW,
      });
      assert.match(secret, /^nxt_[A-Za-z0-9_-]{43}$/);
      assert.equal(ticket.id, sha256Hex(secret));
      assertPlain(ticket, {
        id: ticket.id,
        attributes: { role: "edge", capabilities: ["search", "mcp"], rate_limit_rpm: 2000 },
        createdAt: NOW,
        expiresAt: NOW + 900,
        usedAt: null,
        usedBy: null,
      });
      assertPlain(await store.getTicket(ticket.id), ticket);
      assertPlain(await store.listTickets(), [ticket]);
      const { key } = await store.createLicense({ customerId: "c", tier: "t", now: NOW });
      await store.redeemTicket(secret, ALICE, NOW);
      await store.redeemLicense(key, BOB, NOW);
      // Neither the secret nor the key appears anywhere in the database.
      const other = await store.createTicket({ attributes: {}, ttlSeconds: 1, now: NOW });
      const text = await fixture.contents();
      assert.ok(text.includes(ticket.id), "the contents searched hold the ticket's hash");
      for (const needle of [secret, secret.slice(4), key, key.slice(4), other.secret.slice(4)]) {
        assert.ok(!text.includes(needle), "the database holds a secret");
      }
      assert.notEqual(secret, other.secret);
    });
  });

  test("tickets: single use, even by the same identifier", async () => {
    await withStore(async (store) => {
      const { secret, ticket } = await store.createTicket({
        attributes: { role: "edge" },
        ttlSeconds: 600,
        now: NOW,
      });
      const attributes = await store.redeemTicket(secret, ALICE, NOW + 10);
      assertPlain(attributes, { role: "edge" });
      assert.ok(Object.isFrozen(attributes));
      assertPlain(await store.getMember(ALICE), {
        identifier: ALICE,
        attributes: { role: "edge" },
        enrolledAt: NOW + 10,
        revokedAt: null,
        via: "ticket",
      });
      assertPlain(await store.getTicket(ticket.id), {
        ...ticket,
        usedAt: NOW + 10,
        usedBy: ALICE,
      });
      await assertRejectsWithCode(
        store.redeemTicket(secret, ALICE, NOW + 11),
        AuthorityError,
        "ticket_used",
      );
      await assertRejectsWithCode(
        store.redeemTicket(secret, BOB, NOW + 11),
        AuthorityError,
        "ticket_used",
      );
      assert.equal(await store.getMember(BOB), null);
      const enrolls = (await store.auditEntries()).filter((e) => e.kind === "enroll");
      assertPlain(enrolls.map((e) => e.data), [{
        identifier: ALICE,
        via: "ticket",
        ticket: ticket.id,
        attributes: { role: "edge" },
        previous: null,
      }]);
    });
  });

  test("tickets: expire at expiresAt (clock injected)", async () => {
    await withStore(async (store) => {
      const a = await store.createTicket({ attributes: {}, ttlSeconds: 60, now: NOW });
      const b = await store.createTicket({ attributes: {}, ttlSeconds: 60, now: NOW });
      await assertRejectsWithCode(
        store.redeemTicket(a.secret, ALICE, NOW + 60),
        AuthorityError,
        "ticket_expired",
      );
      await assertRejectsWithCode(
        store.redeemTicket(a.secret, ALICE, NOW + 10_000),
        AuthorityError,
        "ticket_expired",
      );
      assert.equal((await store.getTicket(a.ticket.id))?.usedAt, null);
      assertPlain(await store.redeemTicket(b.secret, ALICE, NOW + 59), {});
    });
  });

  test("tickets: unknown, tampered and malformed secrets are ticket_unknown", async () => {
    await withStore(async (store) => {
      const { secret } = await store.createTicket({ attributes: {}, ttlSeconds: 60, now: NOW });
      const last = secret.at(-1) === "A" ? "B" : "A";
      const tampered = [
        secret.slice(0, -1) + last,
        "nxt_" + "A".repeat(43),
        secret.slice(0, -1),
        secret + "A",
        secret.toUpperCase(),
        "nxl_" + secret.slice(4),
        "",
        ` ${secret}`,
      ];
      for (const wrong of tampered) {
        await assertRejectsWithCode(
          store.redeemTicket(wrong, ALICE, NOW),
          AuthorityError,
          "ticket_unknown",
          wrong,
        );
      }
      assert.equal(await store.getMember(ALICE), null);
      assertPlain(await store.redeemTicket(secret, ALICE, NOW), {});
    });
  });

  test("tickets: attributes, ttl and identifier are checked", async () => {
    await withStore(async (store) => {
      await assertRejectsWithCode(
        store.createTicket({ attributes: { "bad key": 1 }, ttlSeconds: 60 }),
        CredentialError,
        "bad_attributes",
      );
      await assertRejectsWithCode(
        store.createTicket({ attributes: { x: 1.5 }, ttlSeconds: 60 }),
        CredentialError,
        "bad_attributes",
      );
      for (const ttl of [0, -1, 1.5, Number.NaN]) {
        await assert.rejects(store.createTicket({ attributes: {}, ttlSeconds: ttl }), RangeError);
      }
      const { secret } = await store.createTicket({ attributes: {}, ttlSeconds: 60, now: NOW });
      for (const bad of ["", "I" + "A".repeat(64), "I" + "a".repeat(63), ALICE.slice(1)]) {
        await assert.rejects(store.redeemTicket(secret, bad, NOW), TypeError);
      }
      assert.equal((await store.listTickets()).length, 1);
    });
  });

  test("tickets: an existing member may redeem a new ticket only with the same attributes", async () => {
    await withStore(async (store) => {
      const first = await store.createTicket({
        attributes: { role: "edge" },
        ttlSeconds: 60,
        now: NOW,
      });
      await store.redeemTicket(first.secret, ALICE, NOW);
      const same = await store.createTicket({
        attributes: { role: "edge" },
        ttlSeconds: 60,
        now: NOW,
      });
      assertPlain(await store.redeemTicket(same.secret, ALICE, NOW + 5), { role: "edge" });
      assert.equal((await store.getTicket(same.ticket.id))?.usedBy, ALICE);
      assert.equal(
        (await store.getMember(ALICE))?.enrolledAt,
        NOW,
        "the first enrollment time stays",
      );

      const admin = await store.createTicket({
        attributes: { role: "admin" },
        ttlSeconds: 60,
        now: NOW,
      });
      await assertRejectsWithCode(
        store.redeemTicket(admin.secret, ALICE, NOW + 6),
        AuthorityError,
        "already_member",
      );
      assertPlain((await store.getMember(ALICE))?.attributes, { role: "edge" });
      assert.equal(
        (await store.getTicket(admin.ticket.id))?.usedAt,
        null,
        "a refused ticket stays unused",
      );
      assertPlain(await store.redeemTicket(admin.secret, BOB, NOW + 7), { role: "admin" });

      // A revoked member cannot come back through a ticket.
      await store.revoke(ALICE, NOW + 8);
      const again = await store.createTicket({
        attributes: { role: "edge" },
        ttlSeconds: 60,
        now: NOW,
      });
      await assertRejectsWithCode(
        store.redeemTicket(again.secret, ALICE, NOW + 9),
        AuthorityError,
        "member_revoked",
      );
      assert.equal((await store.getTicket(again.ticket.id))?.usedAt, null);
      assert.equal((await store.verifyAudit()).ok, true);
    });
  });

  // -------------------------------------------------------------------------
  // Races between processes (replicas) and between connections

  test("race: a ticket is redeemed exactly once across replicas (eight processes at once, three rounds)", async () => {
    await withStore(async (store, { location }) => {
      for (let round = 0; round < 3; round++) {
        const { secret, ticket } = await store.createTicket({
          attributes: { role: "edge" },
          ttlSeconds: 600,
          now: NOW,
        });
        const jobs = Array.from({ length: 8 }, (_, i) => [{
          secret,
          identifier: identifier(round * 100 + i + 1),
          now: NOW + 1,
        }]);
        const results = (await race(location, "redeem", jobs)).flat();
        const winners = results.filter((r) => r.code === undefined);
        assert.equal(winners.length, 1, JSON.stringify(results));
        assertPlain(winners[0].ok, { role: "edge" });
        assertPlain(
          results.filter((r) => r.code !== undefined).map((r) => r.code),
          Array(7).fill("ticket_used"),
        );
        const used = (await store.getTicket(ticket.id))!;
        const members = (await store.listMembers()).filter((m) => m.attributes.role === "edge");
        assert.equal(members.length, round + 1);
        assert.ok(members.some((m) => m.identifier === used.usedBy));
      }
      assert.equal((await store.verifyAudit()).ok, true);
    });
  });

  test("race: audit appends from four processes form one unbroken chain", async () => {
    await withStore(async (store, { location }) => {
      const jobs = Array.from(
        { length: 4 },
        (_, w) => Array.from({ length: 50 }, (_, i) => ({ worker: w, i })),
      );
      const results = await race(location, "audit", jobs);
      const seqs = results.flat().map((r) => r.ok as number).sort((a, b) => a - b);
      assertPlain(seqs, Array.from({ length: 200 }, (_, i) => i + 1));
      const verified = await store.verifyAudit();
      assert.equal(verified.ok && verified.entries, 200);
    });
  });

  test("race: revocations from four processes get distinct, consecutive serials", async () => {
    await withStore(async (store, { location }) => {
      await store.addMember(ALICE, {}, "operator", NOW);
      for (let i = 1; i <= 40; i++) {
        await store.recordCredential({
          id: credentialId(i),
          subject: ALICE,
          issuedAt: NOW,
          expiresAt: NOW + 60,
          refresh: i > 1,
        });
      }
      const jobs = Array.from(
        { length: 4 },
        (_, w) => Array.from({ length: 10 }, (_, i) => credentialId(w * 10 + i + 1)),
      );
      const serials = (await race(location, "revoke", jobs)).flat().map((r) => r.ok as number);
      assertPlain(
        [...serials].sort((a, b) => a - b),
        Array.from({ length: 40 }, (_, i) => i + 1),
      );
      const state = await store.revocationState();
      assert.equal(state.serial, 40);
      assert.equal(state.credentialIds.length, 40);
      assert.equal((await store.verifyAudit()).ok, true);
    });
  });

  test("two connections in one process: the second sees the first's redemption", async () => {
    await withStore(async (store, { location }) => {
      const other = await AuthorityStore.open(location);
      try {
        const { secret } = await store.createTicket({ attributes: {}, ttlSeconds: 60, now: NOW });
        await other.redeemTicket(secret, ALICE, NOW);
        await assertRejectsWithCode(
          store.redeemTicket(secret, BOB, NOW),
          AuthorityError,
          "ticket_used",
        );
        assert.equal((await store.getMember(ALICE))?.via, "ticket");
      } finally {
        await other.close();
      }
    });
  });

  // -------------------------------------------------------------------------
  // Licenses

  test("licenses: reusable, mapped to the customer, only the hash stored", async () => {
    await withStore(async (store) => {
      const { key, id } = await store.createLicense({
        customerId: "cust_001",
        tier: "professional",
        attributes: { capabilities: ["search", "query"], rate_limit_rpm: 2000 },
        now: NOW,
      });
      assert.match(key, /^nxl_[A-Za-z0-9_-]{32}$/);
      assert.equal(id, sha256Hex(key));
      const expected = {
        customer_id: "cust_001",
        tier: "professional",
        role: "edge",
        capabilities: ["search", "query"],
        rate_limit_rpm: 2000,
      };
      assertPlain(await store.redeemLicense(key, ALICE, NOW), expected);
      assertPlain(await store.redeemLicense(key, BOB, NOW + 1), expected);
      assertPlain(await store.redeemLicense(key, ALICE, NOW + 2), expected, "refresh");
      assert.equal((await store.getMember(ALICE))?.via, "license");
      assert.equal((await store.getMember(ALICE))?.enrolledAt, NOW);
      const created = (await store.auditEntries()).find((e) => e.kind === "license.create")!;
      assertPlain(created.data, {
        license: id,
        customer_id: "cust_001",
        tier: "professional",
        attributes: expected,
      });
      const enrolls = (await store.auditEntries()).filter((e) => e.kind === "enroll");
      assert.equal(enrolls.length, 3);
      assert.equal(enrolls[0].data.license, id);

      // attributes may override role, as {customer_id, tier, role, ...attributes} says.
      const gateway = await store.createLicense({
        customerId: "cust_002",
        tier: "basic",
        attributes: { role: "gateway" },
        now: NOW,
      });
      assert.equal((await store.redeemLicense(gateway.key, CAROL, NOW)).role, "gateway");
    });
  });

  test("licenses: a license member is refreshed to another license; others are not", async () => {
    await withStore(async (store) => {
      const a = await store.createLicense({ customerId: "cust_a", tier: "basic", now: NOW });
      const b = await store.createLicense({ customerId: "cust_b", tier: "pro", now: NOW });
      await store.redeemLicense(a.key, ALICE, NOW);
      assert.equal((await store.redeemLicense(b.key, ALICE, NOW + 1)).customer_id, "cust_b");
      assert.equal((await store.getMember(ALICE))?.attributes.customer_id, "cust_b");

      await store.addMember(BOB, { role: "admin" }, "operator", NOW);
      await assertRejectsWithCode(
        store.redeemLicense(a.key, BOB, NOW),
        AuthorityError,
        "already_member",
      );
      assertPlain((await store.getMember(BOB))?.attributes, { role: "admin" });
    });
  });

  test("licenses: revoked by key or id; unknown and malformed keys", async () => {
    await withStore(async (store) => {
      const a = await store.createLicense({ customerId: "cust_a", tier: "basic", now: NOW });
      const b = await store.createLicense({ customerId: "cust_b", tier: "basic", now: NOW });
      await store.redeemLicense(a.key, ALICE, NOW);
      await store.revokeLicense(a.key, NOW + 1);
      await store.revokeLicense(a.key, NOW + 2); // no-op
      await assertRejectsWithCode(
        store.redeemLicense(a.key, BOB, NOW + 3),
        AuthorityError,
        "license_revoked",
      );
      assert.notEqual(await store.getMember(ALICE), null, "members enrolled earlier stay");
      await store.revokeLicense(b.id, NOW + 4);
      await assertRejectsWithCode(
        store.redeemLicense(b.key, BOB, NOW + 5),
        AuthorityError,
        "license_revoked",
      );
      assert.equal(
        (await store.auditEntries()).filter((e) => e.kind === "license.revoke").length,
        2,
      );

      const last = a.key.at(-1) === "A" ? "B" : "A";
      for (const wrong of [a.key.slice(0, -1) + last, "nxl_" + "A".repeat(32), "nxl_x", ""]) {
        await assertRejectsWithCode(
          store.redeemLicense(wrong, BOB, NOW),
          AuthorityError,
          "license_unknown",
        );
        await assertRejectsWithCode(
          store.revokeLicense(wrong, NOW),
          AuthorityError,
          "license_unknown",
        );
      }
      await assertRejectsWithCode(
        store.revokeLicense("0".repeat(64), NOW),
        AuthorityError,
        "license_unknown",
      );
      await assert.rejects(store.createLicense({ customerId: "", tier: "basic" }), TypeError);
      await assert.rejects(store.createLicense({ customerId: "c", tier: "" }), TypeError);
      await assertRejectsWithCode(
        store.createLicense({ customerId: "c", tier: "t", attributes: { x: {} } }),
        CredentialError,
        "bad_attributes",
      );
    });
  });

  // -------------------------------------------------------------------------
  // Members and credentials

  test("members: add, update, get, list", async () => {
    await withStore(async (store) => {
      assert.equal(await store.getMember(ALICE), null);
      assertPlain(await store.listMembers(), []);
      const added = await store.addMember(ALICE, { role: "edge" }, "operator", NOW);
      assertPlain(added, {
        identifier: ALICE,
        attributes: { role: "edge" },
        enrolledAt: NOW,
        revokedAt: null,
        via: "operator",
      });
      await store.addMember(BOB, { role: "gateway" }, "operator", NOW + 1);
      const updated = await store.addMember(ALICE, { role: "admin" }, "operator", NOW + 2);
      assertPlain(updated.attributes, { role: "admin" });
      assert.equal(updated.enrolledAt, NOW);
      assertPlain(await store.getMember(ALICE), updated);
      assertPlain((await store.listMembers()).map((m) => m.identifier), [ALICE, BOB]);
      const last = (await store.auditEntries()).at(-1)!;
      assert.equal(last.kind, "enroll");
      assertPlain(last.data.previous, { role: "edge" });
      await assert.rejects(store.addMember("nobody", {}, "operator"), TypeError);
      await assert.rejects(
        store.addMember(CAROL, {}, "friend" as unknown as "operator"),
        TypeError,
      );
      await store.revoke(BOB, NOW + 3);
      await assertRejectsWithCode(
        store.addMember(BOB, {}, "operator"),
        AuthorityError,
        "member_revoked",
      );
      assert.equal((await store.getMember(BOB))?.revokedAt, NOW + 3);
    });
  });

  test("members: listed in order of enrollment, whatever their identifiers' order", async () => {
    await withStore(async (store) => {
      for (const [i, who] of [CAROL, ALICE, BOB].entries()) {
        await store.addMember(who, {}, "operator", NOW + i);
      }
      assertPlain((await store.listMembers()).map((m) => m.identifier), [CAROL, ALICE, BOB]);
    });
  });

  test("members: a key change is recorded and audited, the same key again is not", async () => {
    await withStore(async (store) => {
      const { secret } = await store.createTicket({
        attributes: { role: "edge" },
        ttlSeconds: 600,
        now: NOW,
      });
      await store.redeemTicket(secret, ALICE, NOW);
      const first = new Uint8Array(32).fill(1);
      const second = new Uint8Array(32).fill(2);
      await store.setMemberKey(ALICE, first);
      await store.setMemberKey(ALICE, first);
      await store.setMemberKey(ALICE, second);
      assert.deepEqual(await store.memberKey(ALICE), second);
      const withKey = await store.memberWithKey(ALICE);
      assert.equal(withKey?.member.identifier, ALICE);
      assert.deepEqual(withKey?.key, second);
      assert.equal(await store.memberWithKey(BOB), null);
      const keyed = (await store.auditEntries()).filter((entry) => entry.kind === "member.key");
      assert.deepEqual(keyed.map((entry) => entry.data), [
        { identifier: ALICE, key: "01".repeat(32), previous: null },
        { identifier: ALICE, key: "02".repeat(32), previous: "01".repeat(32) },
      ]);
      // A stranger's key is not recorded (nor audited).
      await store.setMemberKey(BOB, first);
      assert.equal(await store.memberKey(BOB), null);
    });
  });

  test("credentials: recorded for active members only, audited as issue or refresh", async () => {
    await withStore(async (store) => {
      const base = { subject: ALICE, issuedAt: NOW, expiresAt: NOW + 3600 };
      await assertRejectsWithCode(
        store.recordCredential({ ...base, id: credentialId(1), refresh: false }),
        AuthorityError,
        "not_member",
      );
      await store.addMember(ALICE, {}, "operator", NOW);
      await store.recordCredential({ ...base, id: credentialId(1), refresh: false });
      await store.recordCredential({ ...base, id: credentialId(2), refresh: true });
      assert.equal(await store.credentialSubject(credentialId(1)), ALICE);
      assert.equal(await store.credentialSubject(credentialId(3)), null);
      await assertRejectsWithCode(
        store.recordCredential({ ...base, id: credentialId(1), refresh: true }),
        AuthorityError,
        "bad_request",
      );
      const entries = (await store.auditEntries()).filter((e) => e.kind.startsWith("credential."));
      assertPlain(entries.map((e) => [e.kind, e.data]), [
        ["credential.issue", {
          id: credentialId(1),
          subject: ALICE,
          issued_at: NOW,
          expires_at: NOW + 3600,
        }],
        ["credential.refresh", {
          id: credentialId(2),
          subject: ALICE,
          issued_at: NOW,
          expires_at: NOW + 3600,
        }],
      ]);
      await assert.rejects(
        store.recordCredential({ ...base, id: "XYZ", refresh: false }),
        TypeError,
      );
      await assert.rejects(
        store.recordCredential({
          ...base,
          id: credentialId(4),
          expiresAt: NOW - 1,
          refresh: false,
        }),
        RangeError,
      );
      await store.revoke(ALICE, NOW + 1);
      await assertRejectsWithCode(
        store.recordCredential({ ...base, id: credentialId(5), refresh: true }),
        AuthorityError,
        "member_revoked",
      );
    });
  });

  // -------------------------------------------------------------------------
  // Group commit, through the facade

  /** Runs `fn` with a fresh store holding two members, ALICE and BOB. */
  function withMembers(
    fn: (store: AuthorityStore, fixture: ConformanceStore) => Promise<void>,
  ): Promise<void> {
    return withStore(async (store, fixture) => {
      await store.addMember(ALICE, { role: "edge" }, "operator", NOW);
      await store.addMember(BOB, { role: "edge" }, "operator", NOW);
      await fn(store, fixture);
    });
  }

  /** What a failed batch must leave as it was: the records, the log and its head. */
  async function snapshot(fixture: ConformanceStore) {
    return {
      credentials: await fixture.query("SELECT * FROM credentials ORDER BY id"),
      audit: await fixture.query("SELECT * FROM audit ORDER BY seq"),
      head: await fixture.query("SELECT seq, hash FROM audit_head"),
    };
  }

  test("credential records: concurrent records are one transaction, audited in order and verifiable", async () => {
    await withMembers(async (store) => {
      const before = await store.auditHead();
      const records = Array.from({ length: 12 }, (_, i) => record(i + 1, i % 2 ? BOB : ALICE));
      await Promise.all(records.map((o) => store.submitCredential(o)));
      assert.deepEqual({ ...store.credentialBatches }, {
        batches: 1,
        items: 12,
        failed: 0,
        largest: 12,
      });
      for (const o of records) assert.equal(await store.credentialSubject(o.id), o.subject);
      const entries = await store.auditEntries({ afterSeq: before.seq });
      assert.deepEqual(entries.map((e) => e.data.id), records.map((o) => o.id));
      assert.deepEqual(entries.map((e) => e.seq), records.map((_, i) => before.seq + i + 1));
      let previous = before.hash;
      for (const entry of entries) {
        assert.equal(entry.kind, "credential.refresh");
        assert.equal(entry.prevHash, previous, `entry ${entry.seq} links to the one before`);
        previous = entry.hash;
      }
      assert.deepEqual(await store.auditHead(), { seq: before.seq + 12, hash: previous });
      const verified = await store.verifyAudit({ checkpoints: [before] });
      assert.ok(verified.ok, JSON.stringify(verified));
      // The chain goes on from the batch: a later single write links to its last entry.
      await store.appendAudit("operator.note", { text: "after" }, NOW + 1);
      assert.equal((await store.auditEntries({ afterSeq: before.seq + 12 }))[0].prevHash, previous);
      assert.ok((await store.verifyAudit()).ok);
    });
  });

  test("credential records: a refused record fails alone and writes nothing; the batch goes on", async () => {
    await withMembers(async (store) => {
      await store.revoke(BOB, NOW);
      const before = await store.auditHead();
      const settled = await Promise.allSettled([
        store.submitCredential(record(1)),
        store.submitCredential(record(2, BOB)), // revoked
        store.submitCredential(record(3, CAROL)), // never enrolled
        store.submitCredential(record(1)), // the id of the first, in the same batch
        store.submitCredential({ ...record(4), id: "not hex" }),
        store.submitCredential(record(5)),
      ]);
      const codes = settled.map((s) =>
        s.status === "fulfilled"
          ? "ok"
          : s.reason instanceof AuthorityError
          ? s.reason.code
          : s.reason.name
      );
      assert.deepEqual(codes, [
        "ok",
        "member_revoked",
        "not_member",
        "bad_request",
        "TypeError",
        "ok",
      ]);
      assert.equal(
        store.credentialBatches.batches,
        1,
        "the refusals were checked in one transaction",
      );
      assert.equal(await store.credentialSubject(credentialId(2)), null);
      assert.equal(await store.credentialSubject(credentialId(3)), null);
      const entries = await store.auditEntries({ afterSeq: before.seq });
      assert.deepEqual(entries.map((e) => e.data.id), [credentialId(1), credentialId(5)]);
      assert.ok((await store.verifyAudit({ checkpoints: [before] })).ok);
    });
  });

  test("credential records: a log that does not end at its head fails the batch as store_corrupt", async () => {
    await withMembers(async (store, fixture) => {
      await fixture.exec("UPDATE audit_head SET seq = seq - 1");
      const before = await snapshot(fixture);
      const results = [record(1), record(2, BOB)].map((o) => store.submitCredential(o));
      for (const result of results) {
        await assertRejectsWithCode(result, StoreBatchError, "store_corrupt");
      }
      assert.deepEqual(await snapshot(fixture), before);
    });
  });

  // -------------------------------------------------------------------------
  // Revocation

  test("revoke: by identifier and by credential id, serials growing by one", async () => {
    await withStore(async (store) => {
      assertPlain(await store.revocationState(), {
        serial: 0,
        credentialIds: [],
        identifiers: [],
      });
      await seedMember(store);
      await store.addMember(BOB, {}, "operator", NOW);
      const first = await store.revoke(credentialId(1), NOW + 1);
      assertPlain(first, { serial: 1, credentialIds: [credentialId(1)], identifiers: [] });
      assert.equal(
        (await store.getMember(ALICE))?.revokedAt,
        null,
        "revoking a credential keeps its member",
      );
      const second = await store.revoke(BOB, NOW + 2);
      assertPlain(second, { serial: 2, credentialIds: [credentialId(1)], identifiers: [BOB] });
      assert.equal((await store.getMember(BOB))?.revokedAt, NOW + 2);
      const third = await store.revoke(ALICE.toUpperCase(), NOW + 3);
      assertPlain(third, {
        serial: 3,
        credentialIds: [credentialId(1)],
        identifiers: [ALICE, BOB],
      });
      assertPlain(await store.revoke(BOB, NOW + 4), third, "revoking again changes nothing");
      assertPlain(await store.revoke(credentialId(1).toUpperCase(), NOW + 4), third);
      assertPlain(await store.revocationState(), third);
      const revokes = (await store.auditEntries()).filter((e) => e.kind === "revoke");
      assertPlain(revokes.map((e) => e.data), [
        { target: credentialId(1), kind: "credential", serial: 1 },
        { target: BOB, kind: "identifier", serial: 2 },
        { target: ALICE, kind: "identifier", serial: 3 },
      ]);
    });
  });

  test("revoke: an unknown or malformed target is unknown_target, and changes nothing", async () => {
    await withStore(async (store) => {
      await seedMember(store);
      for (const target of [CAROL, credentialId(99), "", "I123", "alice", credentialId(1) + "0"]) {
        await assertRejectsWithCode(
          store.revoke(target, NOW),
          AuthorityError,
          "unknown_target",
          target,
        );
      }
      assertPlain((await store.revocationState()).serial, 0);
      assert.equal((await store.auditEntries()).filter((e) => e.kind === "revoke").length, 0);
    });
  });

  test("revoke: two connections in turn share one serial sequence", async () => {
    await withStore(async (store, { location }) => {
      await seedMember(store);
      await store.recordCredential({
        id: credentialId(2),
        subject: ALICE,
        issuedAt: NOW,
        expiresAt: NOW + 60,
        refresh: true,
      });
      const other = await AuthorityStore.open(location);
      try {
        assert.equal((await store.revoke(credentialId(1), NOW)).serial, 1);
        assert.equal((await other.revoke(credentialId(2), NOW)).serial, 2);
        assert.equal((await store.revoke(ALICE, NOW)).serial, 3);
        assertPlain(await other.revocationState(), await store.revocationState());
      } finally {
        await other.close();
      }
    });
  });

  test("revocation lists: saved and loaded; only the list matching the state", async () => {
    await withStore(async (store) => {
      const authority = await identityFromByte(1);
      assert.equal(await store.latestRevocationList(), null);
      await seedMember(store);
      await store.recordCredential({
        id: credentialId(2),
        subject: ALICE,
        issuedAt: NOW,
        expiresAt: NOW + 60,
        refresh: true,
      });
      const listFor = (serial: number, credentialIds: string[], identifiers: string[] = []) =>
        createRevocationList(authority, { serial, credentialIds, identifiers, now: NOW });

      // Serial 0, the empty list, may be published before any revocation.
      const empty = await listFor(0, []);
      await store.saveRevocationList(0, empty.encoded, NOW);
      assert.deepEqual(await store.latestRevocationList(), {
        serial: 0,
        encoded: new Uint8Array(empty.encoded),
      });

      const s1 = await store.revoke(credentialId(1), NOW);
      const one = await listFor(1, s1.credentialIds);
      await assertRejectsWithCode(
        store.saveRevocationList(2, one.encoded),
        AuthorityError,
        "bad_request",
      );
      const tooEarly = await listFor(2, s1.credentialIds);
      await assertRejectsWithCode(
        store.saveRevocationList(2, tooEarly.encoded),
        AuthorityError,
        "bad_request",
      );
      const wrong = await listFor(1, [credentialId(2)]);
      await assertRejectsWithCode(
        store.saveRevocationList(1, wrong.encoded),
        AuthorityError,
        "bad_request",
      );
      await store.saveRevocationList(1, one.encoded, NOW);
      await store.saveRevocationList(1, one.encoded, NOW); // same bytes: no-op
      const resigned = await createRevocationList(authority, {
        serial: 1,
        credentialIds: s1.credentialIds,
        now: NOW + 1,
      });
      await assertRejectsWithCode(
        store.saveRevocationList(1, resigned.encoded),
        AuthorityError,
        "bad_request",
      );

      await store.revoke(credentialId(2), NOW);
      const s3 = await store.revoke(ALICE, NOW);
      await assertRejectsWithCode(
        store.saveRevocationList(0, empty.encoded),
        AuthorityError,
        "bad_request",
      );
      const three = await listFor(3, s3.credentialIds, s3.identifiers);
      await store.saveRevocationList(3, three.encoded, NOW);
      const two = await listFor(2, [credentialId(1), credentialId(2)]);
      await assertRejectsWithCode(
        store.saveRevocationList(2, two.encoded),
        AuthorityError,
        "bad_request",
        "older than the kept list",
      );
      const latest = (await store.latestRevocationList())!;
      assert.equal(latest.serial, 3);
      assert.deepEqual(latest.encoded, new Uint8Array(three.encoded));
      assert.ok(latest.encoded instanceof Uint8Array);
      await assert.rejects(store.saveRevocationList(4, new Uint8Array([1, 2, 3])));
      const saves = (await store.auditEntries()).filter((e) => e.kind === "revocation_list.save");
      assertPlain(saves.map((e) => e.data.serial), [0, 1, 3]);
      assert.equal(
        saves[2].data.sha256,
        createHash("sha256").update(three.encoded).digest("hex"),
      );
    });
  });

  // -------------------------------------------------------------------------
  // Meta

  test("meta: set, overwrite, get", async () => {
    await withStore(async (store) => {
      assert.equal(await store.getMeta("hsm.key_label"), null);
      await store.setMeta("hsm.key_label", "a");
      await store.setMeta("hsm.key_label", "b");
      assert.equal(await store.getMeta("hsm.key_label"), "b");
      await assert.rejects(store.setMeta("", "x"), TypeError);
      assert.equal((await store.auditHead()).seq, 0, "meta is not audited");
    });
  });

  // -------------------------------------------------------------------------
  // The audit log

  /** Writes a few entries of each kind the store writes (six in all) and closes the store. */
  async function populate(location: string): Promise<void> {
    const store = await AuthorityStore.open(location);
    try {
      const { secret } = await store.createTicket({
        attributes: { role: "edge" },
        ttlSeconds: 600,
        now: NOW,
      });
      await store.redeemTicket(secret, ALICE, NOW + 1);
      await store.addMember(BOB, { role: "gateway" }, "operator", NOW + 2);
      await store.recordCredential({
        id: CRED,
        subject: ALICE,
        issuedAt: NOW + 3,
        expiresAt: NOW + 3603,
        refresh: false,
      });
      await store.revoke(CRED, NOW + 4);
      await store.appendAudit("operator.note", { text: "done" }, NOW + 5);
      const result = await store.verifyAudit();
      assert.deepEqual(result.ok && result.entries, 6);
    } finally {
      await store.close();
    }
  }

  async function verifyAt(location: string) {
    const store = await AuthorityStore.open(location);
    try {
      return await store.verifyAudit();
    } finally {
      await store.close();
    }
  }

  for (const [name, sql, seq] of TAMPERING) {
    test(`store audit: tampering is detected: ${name}`, async () => {
      await withFixture(async (fixture) => {
        await populate(fixture.location);
        await fixture.exec(...sql);
        const result = await verifyAt(fixture.location);
        assert.equal(result.ok, false, name);
        assert.equal(result.ok === false && result.seq, seq, JSON.stringify(result));
      });
    });
  }

  test("store audit: a forged, correctly hashed entry appended without the head fails", async () => {
    await withFixture(async (fixture) => {
      await populate(fixture.location);
      const [last] = await fixture.query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1");
      const row = nextAuditRow(
        { seq: Number(last.seq), hash: String(last.hash) },
        NOW + 9,
        "credential.issue",
        { id: "f".repeat(32) },
      );
      await fixture.exec(insertAuditRow(row));
      const result = await verifyAt(fixture.location);
      assert.equal(result.ok, false);
      assert.equal(result.ok === false && result.seq, 7);
    });
  });

  test("store audit: a consistent rewrite of the tail is caught by an older checkpoint", async () => {
    await withFixture(async (fixture) => {
      await populate(fixture.location);
      let store = await AuthorityStore.open(fixture.location);
      const checkpoint = await store.auditHead();
      assert.equal(checkpoint.seq, 6);
      await store.close();
      // Rewrite entries 5 and 6 with forged content and recomputed hashes,
      // head included: the chain alone is consistent again.
      const [fourth] = await fixture.query("SELECT seq, hash FROM audit WHERE seq = 4");
      let head = { seq: Number(fourth.seq), hash: String(fourth.hash) };
      const statements = ["DELETE FROM audit WHERE seq >= 5"];
      for (const time of [NOW + 4, NOW + 5]) {
        const row = nextAuditRow(head, time, "operator.note", { text: "nothing happened" });
        statements.push(insertAuditRow(row));
        head = row;
      }
      statements.push(`UPDATE audit_head SET seq = ${head.seq}, hash = ${sqlText(head.hash)}`);
      await fixture.exec(...statements);
      store = await AuthorityStore.open(fixture.location);
      try {
        assert.equal((await store.verifyAudit()).ok, true);
        const result = await store.verifyAudit({ checkpoints: [checkpoint] });
        assert.equal(result.ok, false);
        assert.equal(result.ok === false && result.seq, 6);
      } finally {
        await store.close();
      }
    });
  });

  test("store audit: nothing is appended to a log cut short", async () => {
    await withFixture(async (fixture) => {
      await populate(fixture.location);
      await fixture.exec("DELETE FROM audit WHERE seq = 6");
      const store = await AuthorityStore.open(fixture.location);
      try {
        await assertRejectsWithCode(
          store.appendAudit("operator.note", {}, NOW + 10),
          AuthorityError,
          "store_corrupt",
        );
        await assertRejectsWithCode(
          store.addMember("I" + "0".repeat(64), {}, "operator", NOW + 10),
          AuthorityError,
          "store_corrupt",
        );
        assert.equal(
          await store.getMember("I" + "0".repeat(64)),
          null,
          "the change was rolled back",
        );
      } finally {
        await store.close();
      }
    });
  });

  test("store audit: entries, head, paging", async () => {
    await withFixture(async (fixture) => {
      await populate(fixture.location);
      const store = await AuthorityStore.open(fixture.location);
      try {
        const entries = await store.auditEntries();
        assert.deepEqual(entries.map((e) => e.kind), [
          "ticket.create",
          "enroll",
          "enroll",
          "credential.issue",
          "revoke",
          "operator.note",
        ]);
        assert.deepEqual(entries.map((e) => e.seq), [1, 2, 3, 4, 5, 6]);
        assert.deepEqual(entries.map((e) => e.time), [0, 1, 2, 3, 4, 5].map((t) => NOW + t));
        assert.equal(entries[0].prevHash, GENESIS_HASH);
        for (let i = 1; i < entries.length; i++) {
          assert.equal(entries[i].prevHash, entries[i - 1].hash);
        }
        assert.deepEqual(await store.auditHead(), { seq: 6, hash: entries[5].hash });
        assert.deepEqual(entries[4].data, { target: CRED, kind: "credential", serial: 1 });
        assert.deepEqual(
          (await store.auditEntries({ afterSeq: 2, limit: 2 })).map((e) => e.seq),
          [3, 4],
        );
        assert.deepEqual(await store.auditEntries({ afterSeq: 2, limit: 0 }), []);
        const verified = await store.verifyAudit({
          checkpoints: [{ seq: 3, hash: entries[2].hash }],
        });
        assert.deepEqual(verified, { ok: true, entries: 6, head: entries[5].hash });
      } finally {
        await store.close();
      }
    });
  });

  test("store audit: a log longer than a page of rows verifies, and is read in order", async () => {
    await withStore(async (store) => {
      // More entries than a read fetches at once from a server (500 a page).
      for (let i = 0; i < 1201; i++) await store.appendAudit("test.entry", { i }, NOW);
      const verified = await store.verifyAudit();
      assert.ok(verified.ok && verified.entries === 1201, JSON.stringify(verified));
      const entries = await store.auditEntries({ afterSeq: 1199 });
      assertPlain(entries.map((e) => [e.seq, e.data.i]), [[1200, 1199], [1201, 1200]]);
    });
  });

  test("store audit: an empty log verifies, with the genesis head", async () => {
    await withStore(async (store) => {
      assert.deepEqual(await store.verifyAudit(), { ok: true, entries: 0, head: GENESIS_HASH });
      assert.deepEqual(await store.auditHead(), { seq: 0, hash: GENESIS_HASH });
      assert.deepEqual(await store.auditEntries(), []);
    });
  });

  test("store audit: appendAudit refuses secrets, bad kinds and bad data", async () => {
    await withStore(async (store) => {
      const { secret } = await store.createTicket({ attributes: {}, ttlSeconds: 60, now: NOW });
      const { key } = await store.createLicense({ customerId: "cust_1", tier: "basic", now: NOW });
      await assert.rejects(store.appendAudit("note", { secret }, NOW), TypeError);
      await assert.rejects(store.appendAudit("note", { nested: [`key=${key}`] }, NOW), TypeError);
      await assert.rejects(store.appendAudit("Bad Kind", {}, NOW), TypeError);
      await assert.rejects(store.appendAudit("note", { at: new Date() }, NOW), TypeError);
      await assert.rejects(store.appendAudit("note", {}, -1), RangeError);
      assert.equal((await store.auditHead()).seq, 2, "nothing refused was appended");
      assert.equal((await store.verifyAudit()).ok, true);
    });
  });
}
