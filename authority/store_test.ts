/**
 * The authority store: file creation and mode, schema, tickets, licenses,
 * members, credentials, revocation and revocation lists, and races between
 * connections in separate threads on one file.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { DatabaseSync } from "node:sqlite";
import { createRevocationList } from "../src/credential/revocation.ts";
import { AuthorityError, CredentialError } from "../src/errors.ts";
import {
  assertThrowsWithCode,
  identityFromByte,
  NOW,
  withTempDir as withPrefixedTempDir,
} from "../src/testdata/test_helpers.ts";
import { AuthorityStore, SCHEMA_VERSION } from "./store.ts";

/** Runs `fn` with a fresh temporary directory, removed afterwards. */
function withTempDir(fn: (dir: string) => void | Promise<void>): Promise<void> {
  return withPrefixedTempDir("nexus-store-test-", async (dir) => {
    await fn(dir);
  });
}

const ALICE = "I" + "a1".repeat(32);
const BOB = "I" + "b2".repeat(32);
const CAROL = "I" + "c3".repeat(32);

/** A distinct identifier per `n`. */
function identifier(n: number): string {
  return "I" + n.toString(16).padStart(64, "0");
}

/** A distinct credential id per `n`. */
function credentialId(n: number): string {
  return n.toString(16).padStart(32, "0");
}

function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/**
 * Deep equality after a JSON round trip: attributes are frozen objects
 * without a prototype, which strict deep equality tells apart from literals.
 */
function assertPlain(actual: unknown, expected: unknown, message?: string): void {
  const plain = (value: unknown) =>
    value === undefined ? undefined : JSON.parse(JSON.stringify(value));
  assert.deepEqual(plain(actual), plain(expected), message);
}

async function modeOf(path: string): Promise<number> {
  const info = await Deno.stat(path);
  assert.notEqual(info.mode, null, "this test needs a POSIX file system");
  return info.mode! & 0o777;
}

/** Runs `fn` with a store in a fresh temporary directory. */
function withStore(fn: (store: AuthorityStore, path: string) => void | Promise<void>) {
  return withTempDir(async (dir) => {
    const path = `${dir}/authority.db`;
    const store = AuthorityStore.open(path);
    try {
      await fn(store, path);
    } finally {
      store.close();
    }
  });
}

/** A store holding one member (ALICE) and one recorded credential of hers. */
function seedMember(store: AuthorityStore, id = credentialId(1)): void {
  store.addMember(ALICE, { role: "edge" }, "operator", NOW);
  store.recordCredential({
    id,
    subject: ALICE,
    issuedAt: NOW,
    expiresAt: NOW + 3600,
    refresh: false,
  });
}

// ---------------------------------------------------------------------------
// File and schema

Deno.test("open: creates a 0600 file in WAL mode with a schema version", async () => {
  await withStore(async (store, path) => {
    store.addMember(ALICE, {}, "operator", NOW);
    assert.equal(await modeOf(path), 0o600);
    assert.equal(await modeOf(`${path}-wal`), 0o600);
    const db = new DatabaseSync(path);
    try {
      assert.equal(
        (db.prepare("PRAGMA journal_mode").get() as { journal_mode: string })
          .journal_mode,
        "wal",
      );
      assertPlain(
        { ...db.prepare("SELECT version FROM schema_version").get() },
        { version: SCHEMA_VERSION },
      );
    } finally {
      db.close();
    }
  });
});

Deno.test("open: refuses a file group or others may access", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/authority.db`;
    AuthorityStore.open(path).close();
    for (const mode of [0o640, 0o604, 0o660]) {
      await Deno.chmod(path, mode);
      assertThrowsWithCode(() => AuthorityStore.open(path), AuthorityError, "store_permissions");
    }
    await Deno.chmod(path, 0o600);
    AuthorityStore.open(path).close();
  });
});

Deno.test("open: refuses a file that is not an authority store", async () => {
  await withTempDir(async (dir) => {
    const garbage = `${dir}/garbage.db`;
    await Deno.writeFile(garbage, new TextEncoder().encode("x".repeat(4096)), { mode: 0o600 });
    await Deno.chmod(garbage, 0o600);
    assertThrowsWithCode(() => AuthorityStore.open(garbage), AuthorityError, "store_corrupt");

    const other = `${dir}/other.db`;
    const db = new DatabaseSync(other);
    db.exec("CREATE TABLE things (x INTEGER)");
    db.close();
    await Deno.chmod(other, 0o600);
    assertThrowsWithCode(() => AuthorityStore.open(other), AuthorityError, "store_corrupt");

    const newer = `${dir}/newer.db`;
    AuthorityStore.open(newer).close();
    const db2 = new DatabaseSync(newer);
    db2.exec(`UPDATE schema_version SET version = ${SCHEMA_VERSION + 1}`);
    db2.close();
    assertThrowsWithCode(() => AuthorityStore.open(newer), AuthorityError, "store_version");
  });
});

Deno.test("open: reopening keeps every kind of data", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/authority.db`;
    let store = AuthorityStore.open(path);
    const { secret, ticket } = store.createTicket({
      attributes: { role: "edge" },
      ttlSeconds: 600,
      now: NOW,
    });
    const spare = store.createTicket({ attributes: {}, ttlSeconds: 600, now: NOW });
    const { key } = store.createLicense({ customerId: "cust_001", tier: "pro", now: NOW });
    store.redeemTicket(secret, ALICE, NOW);
    store.recordCredential({
      id: credentialId(7),
      subject: ALICE,
      issuedAt: NOW,
      expiresAt: NOW + 60,
      refresh: false,
    });
    const state = store.revoke(credentialId(7), NOW);
    store.setMeta("hsm.key_label", "authority-2026");
    const head = store.auditHead();
    store.close();
    store.close(); // harmless

    store = AuthorityStore.open(path);
    try {
      assertPlain(store.getMember(ALICE)?.attributes, { role: "edge" });
      assertPlain(store.getTicket(ticket.id)?.usedBy, ALICE);
      assertThrowsWithCode(
        () => store.redeemTicket(secret, BOB, NOW),
        AuthorityError,
        "ticket_used",
      );
      assertPlain(store.redeemTicket(spare.secret, BOB, NOW), {});
      assert.equal(store.redeemLicense(key, CAROL, NOW).customer_id, "cust_001");
      assert.equal(store.credentialSubject(credentialId(7)), ALICE);
      assertPlain(store.revocationState(), state);
      assert.equal(store.getMeta("hsm.key_label"), "authority-2026");
      const result = store.verifyAudit({ checkpoints: [head] });
      assert.ok(result.ok && result.entries === head.seq + 2);
    } finally {
      store.close();
    }
  });
});

Deno.test("open: an earlier file's unused index by subject is dropped, its data and version kept", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/authority.db`;
    let store = AuthorityStore.open(path);
    seedMember(store);
    store.close();
    const indexes = () => {
      const db = new DatabaseSync(path);
      try {
        return db.prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?")
          .all("credentials").map((row) => row.name);
      } finally {
        db.close();
      }
    };
    // A new file never has it.
    assert.ok(!indexes().includes("credentials_by_subject"));
    const db = new DatabaseSync(path);
    db.exec("CREATE INDEX credentials_by_subject ON credentials (subject)");
    db.close();
    assert.ok(indexes().includes("credentials_by_subject"));

    store = AuthorityStore.open(path);
    try {
      assert.equal(store.credentialSubject(credentialId(1)), ALICE);
      assert.ok(store.verifyAudit().ok);
    } finally {
      store.close();
    }
    assert.ok(!indexes().includes("credentials_by_subject"));
    const check = new DatabaseSync(path);
    try {
      assertPlain(check.prepare("SELECT version FROM schema_version").get(), {
        version: SCHEMA_VERSION,
      });
    } finally {
      check.close();
    }
  });
});

// ---------------------------------------------------------------------------
// Tickets

Deno.test("tickets: the secret is returned once; only its hash is stored", async () => {
  await withStore(async (store, path) => {
    const { secret, ticket } = store.createTicket({
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
    assertPlain(store.getTicket(ticket.id), ticket);
    assertPlain(store.listTickets(), [ticket]);
    const { key } = store.createLicense({ customerId: "c", tier: "t", now: NOW });
    store.redeemTicket(secret, ALICE, NOW);
    store.redeemLicense(key, BOB, NOW);
    // Neither the secret nor the key appears anywhere in the files.
    const other = store.createTicket({ attributes: {}, ttlSeconds: 1, now: NOW });
    for (const file of [path, `${path}-wal`]) {
      const text = new TextDecoder("latin1").decode(await Deno.readFile(file));
      for (const needle of [secret, secret.slice(4), key, key.slice(4), other.secret.slice(4)]) {
        assert.ok(!text.includes(needle), `${file} holds a secret`);
      }
    }
    assert.notEqual(secret, other.secret);
  });
});

Deno.test("tickets: single use, even by the same identifier", async () => {
  await withStore((store) => {
    const { secret, ticket } = store.createTicket({
      attributes: { role: "edge" },
      ttlSeconds: 600,
      now: NOW,
    });
    const attributes = store.redeemTicket(secret, ALICE, NOW + 10);
    assertPlain(attributes, { role: "edge" });
    assert.ok(Object.isFrozen(attributes));
    assertPlain(store.getMember(ALICE), {
      identifier: ALICE,
      attributes: { role: "edge" },
      enrolledAt: NOW + 10,
      revokedAt: null,
      via: "ticket",
    });
    assertPlain(store.getTicket(ticket.id), { ...ticket, usedAt: NOW + 10, usedBy: ALICE });
    assertThrowsWithCode(
      () => store.redeemTicket(secret, ALICE, NOW + 11),
      AuthorityError,
      "ticket_used",
    );
    assertThrowsWithCode(
      () => store.redeemTicket(secret, BOB, NOW + 11),
      AuthorityError,
      "ticket_used",
    );
    assert.equal(store.getMember(BOB), null);
    const enrolls = store.auditEntries().filter((e) => e.kind === "enroll");
    assertPlain(enrolls.map((e) => e.data), [{
      identifier: ALICE,
      via: "ticket",
      ticket: ticket.id,
      attributes: { role: "edge" },
      previous: null,
    }]);
  });
});

Deno.test("tickets: expire at expiresAt (clock injected)", async () => {
  await withStore((store) => {
    const a = store.createTicket({ attributes: {}, ttlSeconds: 60, now: NOW });
    const b = store.createTicket({ attributes: {}, ttlSeconds: 60, now: NOW });
    assertThrowsWithCode(
      () => store.redeemTicket(a.secret, ALICE, NOW + 60),
      AuthorityError,
      "ticket_expired",
    );
    assertThrowsWithCode(
      () => store.redeemTicket(a.secret, ALICE, NOW + 10_000),
      AuthorityError,
      "ticket_expired",
    );
    assert.equal(store.getTicket(a.ticket.id)?.usedAt, null);
    assertPlain(store.redeemTicket(b.secret, ALICE, NOW + 59), {});
  });
});

Deno.test("tickets: unknown, tampered and malformed secrets are ticket_unknown", async () => {
  await withStore((store) => {
    const { secret } = store.createTicket({ attributes: {}, ttlSeconds: 60, now: NOW });
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
      assertThrowsWithCode(
        () => store.redeemTicket(wrong, ALICE, NOW),
        AuthorityError,
        "ticket_unknown",
        wrong,
      );
    }
    assert.equal(store.getMember(ALICE), null);
    assertPlain(store.redeemTicket(secret, ALICE, NOW), {});
  });
});

Deno.test("tickets: attributes, ttl and identifier are checked", async () => {
  await withStore((store) => {
    assertThrowsWithCode(
      () => store.createTicket({ attributes: { "bad key": 1 }, ttlSeconds: 60 }),
      CredentialError,
      "bad_attributes",
    );
    assertThrowsWithCode(
      () => store.createTicket({ attributes: { x: 1.5 }, ttlSeconds: 60 }),
      CredentialError,
      "bad_attributes",
    );
    for (const ttl of [0, -1, 1.5, Number.NaN]) {
      assert.throws(() => store.createTicket({ attributes: {}, ttlSeconds: ttl }), RangeError);
    }
    const { secret } = store.createTicket({ attributes: {}, ttlSeconds: 60, now: NOW });
    for (const bad of ["", "I" + "A".repeat(64), "I" + "a".repeat(63), ALICE.slice(1)]) {
      assert.throws(() => store.redeemTicket(secret, bad, NOW), TypeError);
    }
    assert.equal(store.listTickets().length, 1);
  });
});

Deno.test("tickets: an existing member may redeem a new ticket only with the same attributes", async () => {
  await withStore((store) => {
    const first = store.createTicket({ attributes: { role: "edge" }, ttlSeconds: 60, now: NOW });
    store.redeemTicket(first.secret, ALICE, NOW);
    const same = store.createTicket({ attributes: { role: "edge" }, ttlSeconds: 60, now: NOW });
    assertPlain(store.redeemTicket(same.secret, ALICE, NOW + 5), { role: "edge" });
    assert.equal(store.getTicket(same.ticket.id)?.usedBy, ALICE);
    assert.equal(store.getMember(ALICE)?.enrolledAt, NOW, "the first enrollment time stays");

    const admin = store.createTicket({ attributes: { role: "admin" }, ttlSeconds: 60, now: NOW });
    assertThrowsWithCode(
      () => store.redeemTicket(admin.secret, ALICE, NOW + 6),
      AuthorityError,
      "already_member",
    );
    assertPlain(store.getMember(ALICE)?.attributes, { role: "edge" });
    assert.equal(store.getTicket(admin.ticket.id)?.usedAt, null, "a refused ticket stays unused");
    assertPlain(store.redeemTicket(admin.secret, BOB, NOW + 7), { role: "admin" });

    // A revoked member cannot come back through a ticket.
    store.revoke(ALICE, NOW + 8);
    const again = store.createTicket({ attributes: { role: "edge" }, ttlSeconds: 60, now: NOW });
    assertThrowsWithCode(
      () => store.redeemTicket(again.secret, ALICE, NOW + 9),
      AuthorityError,
      "member_revoked",
    );
    assert.equal(store.getTicket(again.ticket.id)?.usedAt, null);
    assert.equal(store.verifyAudit().ok, true);
  });
});

// ---------------------------------------------------------------------------
// Races between processes (each child process opens its own connection)

/**
 * A child process: opens the store, says "ready", then reads one JSON line
 * (the go signal: an op and its arguments), runs it and prints the results.
 */
const CHILD_SOURCE = `
import { AuthorityStore } from ${JSON.stringify(new URL("./store.ts", import.meta.url).href)};
const store = AuthorityStore.open(Deno.args[0], { busyTimeoutMs: 30000 });
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
    if (op === "redeem") results.push({ ok: store.redeemTicket(arg.secret, arg.identifier, arg.now) });
    else if (op === "audit") results.push({ ok: store.appendAudit("race.entry", arg, 1767225600).seq });
    else if (op === "revoke") results.push({ ok: store.revoke(arg, 1767225600).serial });
    else throw new Error("unknown op " + op);
  } catch (error) {
    results.push({ code: error?.code ?? String(error) });
  }
}
store.close();
console.log(JSON.stringify(results));
`;

type RaceResult = { ok?: unknown; code?: string };

/**
 * Runs `op` in `jobs.length` child processes, each with its own connection
 * to the store at `path` and access to its directory only, released
 * together once all have opened the store; returns each child's results.
 */
async function race(path: string, op: string, jobs: unknown[][]): Promise<RaceResult[][]> {
  const dir = path.slice(0, path.lastIndexOf("/"));
  const main = "data:application/javascript;base64," +
    new TextEncoder().encode(CHILD_SOURCE).toBase64();
  const children = jobs.map(() =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-check",
        "--no-prompt",
        "--config",
        new URL("../deno.json", import.meta.url).pathname,
        `--allow-read=${dir}`,
        `--allow-write=${dir}`,
        main,
        path,
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

Deno.test("race: one ticket redeemed at once by eight processes: exactly one wins", async () => {
  await withStore(async (store, path) => {
    for (let round = 0; round < 3; round++) {
      const { secret, ticket } = store.createTicket({
        attributes: { role: "edge" },
        ttlSeconds: 600,
        now: NOW,
      });
      const jobs = Array.from({ length: 8 }, (_, i) => [{
        secret,
        identifier: identifier(round * 100 + i + 1),
        now: NOW + 1,
      }]);
      const results = (await race(path, "redeem", jobs)).flat();
      const winners = results.filter((r) => r.code === undefined);
      assert.equal(winners.length, 1, JSON.stringify(results));
      assertPlain(winners[0].ok, { role: "edge" });
      assertPlain(
        results.filter((r) => r.code !== undefined).map((r) => r.code),
        Array(7).fill("ticket_used"),
      );
      const used = store.getTicket(ticket.id)!;
      const members = store.listMembers().filter((m) => m.attributes.role === "edge");
      assert.equal(members.length, round + 1);
      assert.ok(members.some((m) => m.identifier === used.usedBy));
    }
    assert.equal(store.verifyAudit().ok, true);
  });
});

Deno.test("race: audit appends from four processes form one unbroken chain", async () => {
  await withStore(async (store, path) => {
    const jobs = Array.from(
      { length: 4 },
      (_, w) => Array.from({ length: 50 }, (_, i) => ({ worker: w, i })),
    );
    const results = await race(path, "audit", jobs);
    const seqs = results.flat().map((r) => r.ok as number).sort((a, b) => a - b);
    assertPlain(seqs, Array.from({ length: 200 }, (_, i) => i + 1));
    const verified = store.verifyAudit();
    assert.equal(verified.ok && verified.entries, 200);
  });
});

Deno.test("race: revocations from four processes get distinct, consecutive serials", async () => {
  await withStore(async (store, path) => {
    store.addMember(ALICE, {}, "operator", NOW);
    for (let i = 1; i <= 40; i++) {
      store.recordCredential({
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
    const serials = (await race(path, "revoke", jobs)).flat().map((r) => r.ok as number);
    assertPlain([...serials].sort((a, b) => a - b), Array.from({ length: 40 }, (_, i) => i + 1));
    const state = store.revocationState();
    assert.equal(state.serial, 40);
    assert.equal(state.credentialIds.length, 40);
    assert.equal(store.verifyAudit().ok, true);
  });
});

Deno.test("two connections in one thread: the second sees the first's redemption", async () => {
  await withStore((store, path) => {
    const other = AuthorityStore.open(path);
    try {
      const { secret } = store.createTicket({ attributes: {}, ttlSeconds: 60, now: NOW });
      other.redeemTicket(secret, ALICE, NOW);
      assertThrowsWithCode(
        () => store.redeemTicket(secret, BOB, NOW),
        AuthorityError,
        "ticket_used",
      );
      assert.equal(store.getMember(ALICE)?.via, "ticket");
    } finally {
      other.close();
    }
  });
});

Deno.test("a connection waits for another's write lock, and gives up after busyTimeoutMs", async () => {
  await withStore((store, path) => {
    const { secret } = store.createTicket({ attributes: {}, ttlSeconds: 60, now: NOW });
    const impatient = AuthorityStore.open(path, { busyTimeoutMs: 50 });
    const locker = new DatabaseSync(path);
    try {
      locker.exec("BEGIN IMMEDIATE");
      assert.throws(() => impatient.redeemTicket(secret, ALICE, NOW), /locked|busy/i);
      locker.exec("ROLLBACK");
      assertPlain(impatient.redeemTicket(secret, ALICE, NOW), {});
    } finally {
      locker.close();
      impatient.close();
    }
  });
});

// ---------------------------------------------------------------------------
// Licenses

Deno.test("licenses: reusable, mapped to the customer, only the hash stored", async () => {
  await withStore((store) => {
    const { key, id } = store.createLicense({
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
    assertPlain(store.redeemLicense(key, ALICE, NOW), expected);
    assertPlain(store.redeemLicense(key, BOB, NOW + 1), expected);
    assertPlain(store.redeemLicense(key, ALICE, NOW + 2), expected, "refresh");
    assert.equal(store.getMember(ALICE)?.via, "license");
    assert.equal(store.getMember(ALICE)?.enrolledAt, NOW);
    const created = store.auditEntries().find((e) => e.kind === "license.create")!;
    assertPlain(created.data, {
      license: id,
      customer_id: "cust_001",
      tier: "professional",
      attributes: expected,
    });
    const enrolls = store.auditEntries().filter((e) => e.kind === "enroll");
    assert.equal(enrolls.length, 3);
    assert.equal(enrolls[0].data.license, id);

    // attributes may override role, as {customer_id, tier, role, ...attributes} says.
    const gateway = store.createLicense({
      customerId: "cust_002",
      tier: "basic",
      attributes: { role: "gateway" },
      now: NOW,
    });
    assert.equal(store.redeemLicense(gateway.key, CAROL, NOW).role, "gateway");
  });
});

Deno.test("licenses: a license member is refreshed to another license; others are not", async () => {
  await withStore((store) => {
    const a = store.createLicense({ customerId: "cust_a", tier: "basic", now: NOW });
    const b = store.createLicense({ customerId: "cust_b", tier: "pro", now: NOW });
    store.redeemLicense(a.key, ALICE, NOW);
    assert.equal(store.redeemLicense(b.key, ALICE, NOW + 1).customer_id, "cust_b");
    assert.equal(store.getMember(ALICE)?.attributes.customer_id, "cust_b");

    store.addMember(BOB, { role: "admin" }, "operator", NOW);
    assertThrowsWithCode(
      () => store.redeemLicense(a.key, BOB, NOW),
      AuthorityError,
      "already_member",
    );
    assertPlain(store.getMember(BOB)?.attributes, { role: "admin" });
  });
});

Deno.test("licenses: revoked by key or id; unknown and malformed keys", async () => {
  await withStore((store) => {
    const a = store.createLicense({ customerId: "cust_a", tier: "basic", now: NOW });
    const b = store.createLicense({ customerId: "cust_b", tier: "basic", now: NOW });
    store.redeemLicense(a.key, ALICE, NOW);
    store.revokeLicense(a.key, NOW + 1);
    store.revokeLicense(a.key, NOW + 2); // no-op
    assertThrowsWithCode(
      () => store.redeemLicense(a.key, BOB, NOW + 3),
      AuthorityError,
      "license_revoked",
    );
    assert.notEqual(store.getMember(ALICE), null, "members enrolled earlier stay");
    store.revokeLicense(b.id, NOW + 4);
    assertThrowsWithCode(
      () => store.redeemLicense(b.key, BOB, NOW + 5),
      AuthorityError,
      "license_revoked",
    );
    assert.equal(store.auditEntries().filter((e) => e.kind === "license.revoke").length, 2);

    const last = a.key.at(-1) === "A" ? "B" : "A";
    for (const wrong of [a.key.slice(0, -1) + last, "nxl_" + "A".repeat(32), "nxl_x", ""]) {
      assertThrowsWithCode(
        () => store.redeemLicense(wrong, BOB, NOW),
        AuthorityError,
        "license_unknown",
      );
      assertThrowsWithCode(
        () => store.revokeLicense(wrong, NOW),
        AuthorityError,
        "license_unknown",
      );
    }
    assertThrowsWithCode(
      () => store.revokeLicense("0".repeat(64), NOW),
      AuthorityError,
      "license_unknown",
    );
    assert.throws(() => store.createLicense({ customerId: "", tier: "basic" }), TypeError);
    assert.throws(() => store.createLicense({ customerId: "c", tier: "" }), TypeError);
    assertThrowsWithCode(
      () => store.createLicense({ customerId: "c", tier: "t", attributes: { x: {} } }),
      CredentialError,
      "bad_attributes",
    );
  });
});

// ---------------------------------------------------------------------------
// Members and credentials

Deno.test("members: add, update, get, list", async () => {
  await withStore((store) => {
    assert.equal(store.getMember(ALICE), null);
    assertPlain(store.listMembers(), []);
    const added = store.addMember(ALICE, { role: "edge" }, "operator", NOW);
    assertPlain(added, {
      identifier: ALICE,
      attributes: { role: "edge" },
      enrolledAt: NOW,
      revokedAt: null,
      via: "operator",
    });
    store.addMember(BOB, { role: "gateway" }, "operator", NOW + 1);
    const updated = store.addMember(ALICE, { role: "admin" }, "operator", NOW + 2);
    assertPlain(updated.attributes, { role: "admin" });
    assert.equal(updated.enrolledAt, NOW);
    assertPlain(store.getMember(ALICE), updated);
    assertPlain(store.listMembers().map((m) => m.identifier), [ALICE, BOB]);
    const last = store.auditEntries().at(-1)!;
    assert.equal(last.kind, "enroll");
    assertPlain(last.data.previous, { role: "edge" });
    assert.throws(() => store.addMember("nobody", {}, "operator"), TypeError);
    assert.throws(
      () => store.addMember(CAROL, {}, "friend" as unknown as "operator"),
      TypeError,
    );
    store.revoke(BOB, NOW + 3);
    assertThrowsWithCode(
      () => store.addMember(BOB, {}, "operator"),
      AuthorityError,
      "member_revoked",
    );
    assert.equal(store.getMember(BOB)?.revokedAt, NOW + 3);
  });
});

Deno.test("credentials: recorded for active members only, audited as issue or refresh", async () => {
  await withStore((store) => {
    const base = { subject: ALICE, issuedAt: NOW, expiresAt: NOW + 3600 };
    assertThrowsWithCode(
      () => store.recordCredential({ ...base, id: credentialId(1), refresh: false }),
      AuthorityError,
      "not_member",
    );
    store.addMember(ALICE, {}, "operator", NOW);
    store.recordCredential({ ...base, id: credentialId(1), refresh: false });
    store.recordCredential({ ...base, id: credentialId(2), refresh: true });
    assert.equal(store.credentialSubject(credentialId(1)), ALICE);
    assert.equal(store.credentialSubject(credentialId(3)), null);
    assertThrowsWithCode(
      () => store.recordCredential({ ...base, id: credentialId(1), refresh: true }),
      AuthorityError,
      "bad_request",
    );
    const entries = store.auditEntries().filter((e) => e.kind.startsWith("credential."));
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
    assert.throws(
      () => store.recordCredential({ ...base, id: "XYZ", refresh: false }),
      TypeError,
    );
    assert.throws(
      () =>
        store.recordCredential({
          ...base,
          id: credentialId(4),
          expiresAt: NOW - 1,
          refresh: false,
        }),
      RangeError,
    );
    store.revoke(ALICE, NOW + 1);
    assertThrowsWithCode(
      () => store.recordCredential({ ...base, id: credentialId(5), refresh: true }),
      AuthorityError,
      "member_revoked",
    );
  });
});

// ---------------------------------------------------------------------------
// Revocation

Deno.test("revoke: by identifier and by credential id, serials growing by one", async () => {
  await withStore((store) => {
    assertPlain(store.revocationState(), { serial: 0, credentialIds: [], identifiers: [] });
    seedMember(store);
    store.addMember(BOB, {}, "operator", NOW);
    const first = store.revoke(credentialId(1), NOW + 1);
    assertPlain(first, { serial: 1, credentialIds: [credentialId(1)], identifiers: [] });
    assert.equal(store.getMember(ALICE)?.revokedAt, null, "revoking a credential keeps its member");
    const second = store.revoke(BOB, NOW + 2);
    assertPlain(second, { serial: 2, credentialIds: [credentialId(1)], identifiers: [BOB] });
    assert.equal(store.getMember(BOB)?.revokedAt, NOW + 2);
    const third = store.revoke(ALICE.toUpperCase(), NOW + 3);
    assertPlain(third, {
      serial: 3,
      credentialIds: [credentialId(1)],
      identifiers: [ALICE, BOB],
    });
    assertPlain(store.revoke(BOB, NOW + 4), third, "revoking again changes nothing");
    assertPlain(store.revoke(credentialId(1).toUpperCase(), NOW + 4), third);
    assertPlain(store.revocationState(), third);
    const revokes = store.auditEntries().filter((e) => e.kind === "revoke");
    assertPlain(revokes.map((e) => e.data), [
      { target: credentialId(1), kind: "credential", serial: 1 },
      { target: BOB, kind: "identifier", serial: 2 },
      { target: ALICE, kind: "identifier", serial: 3 },
    ]);
  });
});

Deno.test("revoke: an unknown or malformed target is unknown_target, and changes nothing", async () => {
  await withStore((store) => {
    seedMember(store);
    for (const target of [CAROL, credentialId(99), "", "I123", "alice", credentialId(1) + "0"]) {
      assertThrowsWithCode(
        () => store.revoke(target, NOW),
        AuthorityError,
        "unknown_target",
        target,
      );
    }
    assertPlain(store.revocationState().serial, 0);
    assert.equal(store.auditEntries().filter((e) => e.kind === "revoke").length, 0);
  });
});

Deno.test("revoke: two connections in turn share one serial sequence", async () => {
  await withStore((store, path) => {
    seedMember(store);
    store.recordCredential({
      id: credentialId(2),
      subject: ALICE,
      issuedAt: NOW,
      expiresAt: NOW + 60,
      refresh: true,
    });
    const other = AuthorityStore.open(path);
    try {
      assert.equal(store.revoke(credentialId(1), NOW).serial, 1);
      assert.equal(other.revoke(credentialId(2), NOW).serial, 2);
      assert.equal(store.revoke(ALICE, NOW).serial, 3);
      assertPlain(other.revocationState(), store.revocationState());
    } finally {
      other.close();
    }
  });
});

Deno.test("revocation lists: saved and loaded; only the list matching the state", async () => {
  await withStore(async (store) => {
    const authority = await identityFromByte(1);
    assert.equal(store.latestRevocationList(), null);
    seedMember(store);
    store.recordCredential({
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
    store.saveRevocationList(0, empty.encoded, NOW);
    assert.deepEqual(store.latestRevocationList(), {
      serial: 0,
      encoded: new Uint8Array(empty.encoded),
    });

    const s1 = store.revoke(credentialId(1), NOW);
    const one = await listFor(1, s1.credentialIds);
    assertThrowsWithCode(
      () => store.saveRevocationList(2, one.encoded),
      AuthorityError,
      "bad_request",
    );
    const tooEarly = await listFor(2, s1.credentialIds);
    assertThrowsWithCode(
      () => store.saveRevocationList(2, tooEarly.encoded),
      AuthorityError,
      "bad_request",
    );
    const wrong = await listFor(1, [credentialId(2)]);
    assertThrowsWithCode(
      () => store.saveRevocationList(1, wrong.encoded),
      AuthorityError,
      "bad_request",
    );
    store.saveRevocationList(1, one.encoded, NOW);
    store.saveRevocationList(1, one.encoded, NOW); // same bytes: no-op
    const resigned = await createRevocationList(authority, {
      serial: 1,
      credentialIds: s1.credentialIds,
      now: NOW + 1,
    });
    assertThrowsWithCode(
      () => store.saveRevocationList(1, resigned.encoded),
      AuthorityError,
      "bad_request",
    );

    store.revoke(credentialId(2), NOW);
    const s3 = store.revoke(ALICE, NOW);
    assertThrowsWithCode(
      () => store.saveRevocationList(0, empty.encoded),
      AuthorityError,
      "bad_request",
    );
    const three = await listFor(3, s3.credentialIds, s3.identifiers);
    store.saveRevocationList(3, three.encoded, NOW);
    const two = await listFor(2, [credentialId(1), credentialId(2)]);
    assertThrowsWithCode(
      () => store.saveRevocationList(2, two.encoded),
      AuthorityError,
      "bad_request",
      "older than the kept list",
    );
    const latest = store.latestRevocationList()!;
    assert.equal(latest.serial, 3);
    assert.deepEqual(latest.encoded, new Uint8Array(three.encoded));
    assert.ok(latest.encoded instanceof Uint8Array);
    assert.throws(() => store.saveRevocationList(4, new Uint8Array([1, 2, 3])));
    const saves = store.auditEntries().filter((e) => e.kind === "revocation_list.save");
    assertPlain(saves.map((e) => e.data.serial), [0, 1, 3]);
    assert.equal(saves[2].data.sha256, createHash("sha256").update(three.encoded).digest("hex"));
  });
});

// ---------------------------------------------------------------------------
// Meta

Deno.test("meta: set, overwrite, get", async () => {
  await withStore((store) => {
    assert.equal(store.getMeta("hsm.key_label"), null);
    store.setMeta("hsm.key_label", "a");
    store.setMeta("hsm.key_label", "b");
    assert.equal(store.getMeta("hsm.key_label"), "b");
    assert.throws(() => store.setMeta("", "x"), TypeError);
    assert.equal(store.auditHead().seq, 0, "meta is not audited");
  });
});

Deno.test("members: a key change is recorded and audited, the same key again is not", async () => {
  await withStore((store) => {
    const { secret } = store.createTicket({
      attributes: { role: "edge" },
      ttlSeconds: 600,
      now: NOW,
    });
    store.redeemTicket(secret, ALICE, NOW);
    const first = new Uint8Array(32).fill(1);
    const second = new Uint8Array(32).fill(2);
    store.setMemberKey(ALICE, first);
    store.setMemberKey(ALICE, first);
    store.setMemberKey(ALICE, second);
    assert.deepEqual(store.memberKey(ALICE), second);
    const keyed = store.auditEntries().filter((entry) => entry.kind === "member.key");
    assert.deepEqual(keyed.map((entry) => entry.data), [
      { identifier: ALICE, key: "01".repeat(32), previous: null },
      { identifier: ALICE, key: "02".repeat(32), previous: "01".repeat(32) },
    ]);
    // A stranger's key is not recorded (nor audited).
    store.setMemberKey(BOB, first);
    assert.equal(store.memberKey(BOB), null);
  });
});
