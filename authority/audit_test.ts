/**
 * The audit chain: the pure functions of `audit.ts`, and the store's log
 * under tampering of its SQLite file (every column, deleted, reordered,
 * inserted and cut rows, a consistent rewrite caught by a checkpoint).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { DatabaseSync } from "node:sqlite";
import { AuthorityError } from "../src/errors.ts";
import {
  assertThrowsWithCode,
  NOW,
  withTempDir as withPrefixedTempDir,
} from "../src/testdata/test_helpers.ts";
import {
  AUDIT_DOMAIN,
  auditHash,
  type AuditRow,
  canonicalJson,
  decodeAuditRow,
  GENESIS_HASH,
  MAX_AUDIT_DATA_DEPTH,
  nextAuditRow,
  verifyChain,
} from "./audit.ts";
import { AuthorityStore } from "./store.ts";

/** Runs `fn` with a fresh temporary directory, removed afterwards. */
function withTempDir(fn: (dir: string) => void | Promise<void>): Promise<void> {
  return withPrefixedTempDir("nexus-audit-test-", async (dir) => {
    await fn(dir);
  });
}

const ALICE = "I" + "a1".repeat(32);
const BOB = "I" + "b2".repeat(32);
const CRED = "c3".repeat(16);

function chain(n: number): AuditRow[] {
  const rows: AuditRow[] = [];
  let head = { seq: 0, hash: GENESIS_HASH };
  for (let i = 0; i < n; i++) {
    const row = nextAuditRow(head, NOW + i, "test.entry", { i, note: `entry ${i}` });
    rows.push(row);
    head = row;
  }
  return rows;
}

/** The hash of an entry, computed independently with node:crypto. */
function referenceHash(row: AuditRow): string {
  const u32 = (n: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n);
    return b;
  };
  const u64 = (n: number) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(n));
    return b;
  };
  const kind = new TextEncoder().encode(row.kind);
  const data = new TextEncoder().encode(row.data);
  return createHash("sha256")
    .update(AUDIT_DOMAIN + "\0")
    .update(Buffer.from(row.prevHash, "hex"))
    .update(u64(row.seq))
    .update(u64(row.time))
    .update(u32(kind.length))
    .update(kind)
    .update(u32(data.length))
    .update(data)
    .digest("hex");
}

// ---------------------------------------------------------------------------
// Pure functions

Deno.test("canonicalJson: sorted keys at every level, no whitespace", () => {
  assert.equal(
    canonicalJson({ b: 1, a: { d: [true, null, "x"], c: -2 } }),
    '{"a":{"c":-2,"d":[true,null,"x"]},"b":1}',
  );
  const bare = Object.create(null);
  bare.z = "1";
  bare.__proto__ = "data";
  assert.equal(canonicalJson(bare), '{"__proto__":"data","z":"1"}');
});

Deno.test("canonicalJson: refuses what JSON cannot carry exactly", () => {
  for (
    const value of [
      { a: undefined },
      { a: Number.NaN },
      { a: Infinity },
      { a: 1n },
      { a: () => 1 },
      { a: new Uint8Array(2) },
      { a: new Date(0) },
      { a: Symbol("s") },
    ]
  ) {
    assert.throws(() => canonicalJson(value), TypeError);
  }
  let deep: unknown = {};
  for (let i = 0; i < MAX_AUDIT_DATA_DEPTH + 1; i++) deep = { d: deep };
  assert.throws(() => canonicalJson(deep), RangeError);
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  assert.throws(() => canonicalJson(cycle), RangeError);
});

Deno.test("auditHash: matches an independent computation of the documented encoding", () => {
  for (const row of chain(3)) assert.equal(row.hash, referenceHash(row));
});

Deno.test("auditHash: non-ASCII text and 64-bit fields are encoded as documented", () => {
  // The hash writes ASCII byte by byte and other text through the encoder,
  // and 64-bit integers as two halves: each path against the reference.
  const cases: [number, number, string, string][] = [
    [1, NOW, "test.entry", '{"note":"caf\u00e9 \u2603 \u{1f600}"}'],
    [2 ** 32 + 5, 2 ** 40 + 1, "test.entry", '{"lone":"\ud800x"}'],
    [Number.MAX_SAFE_INTEGER, 0, "k\u00e9nd", "{}"],
    [7, NOW, "", ""],
  ];
  for (const [seq, time, kind, data] of cases) {
    const prevHash = "9f".repeat(32);
    const hash = auditHash(prevHash, seq, time, kind, data);
    assert.equal(hash, referenceHash({ seq, time, kind, data, prevHash, hash }), `${seq} ${kind}`);
  }
});

Deno.test("auditHash: every field counts, and moving bytes between fields changes it", () => {
  const base = auditHash(GENESIS_HASH, 1, NOW, "ab", '{"c":1}');
  const variants = [
    auditHash("1".repeat(64), 1, NOW, "ab", '{"c":1}'),
    auditHash(GENESIS_HASH, 2, NOW, "ab", '{"c":1}'),
    auditHash(GENESIS_HASH, 1, NOW + 1, "ab", '{"c":1}'),
    auditHash(GENESIS_HASH, 1, NOW, "a", '{"c":1}'),
    auditHash(GENESIS_HASH, 1, NOW, "ab", '{"c":2}'),
    auditHash(GENESIS_HASH, 1, NOW, "a", 'b{"c":1}'),
  ];
  assert.equal(new Set([base, ...variants]).size, variants.length + 1);
  assert.throws(() => auditHash("xyz", 1, NOW, "a", "{}"), TypeError);
  assert.throws(() => auditHash(GENESIS_HASH, 0, NOW, "a", "{}"), RangeError);
  assert.throws(() => auditHash(GENESIS_HASH, 1, -1, "a", "{}"), RangeError);
});

Deno.test("nextAuditRow: links to the head; checks kind and data", () => {
  const [first, second] = chain(2);
  assert.equal(first.seq, 1);
  assert.equal(first.prevHash, GENESIS_HASH);
  assert.equal(second.seq, 2);
  assert.equal(second.prevHash, first.hash);
  assert.deepEqual(decodeAuditRow(first).data, { i: 0, note: "entry 0" });
  const head = { seq: 0, hash: GENESIS_HASH };
  for (const kind of ["", "Upper", "1x", "a b", "x".repeat(65)]) {
    assert.throws(() => nextAuditRow(head, NOW, kind, {}), TypeError, kind);
  }
  assert.throws(() => nextAuditRow(head, NOW, "k", [] as unknown as Record<string, unknown>));
  assert.throws(() => nextAuditRow(head, 1.5, "k", {}), RangeError);
});

Deno.test("verifyChain: an intact chain verifies; an empty one too", () => {
  assert.deepEqual(verifyChain([]), { ok: true, entries: 0, head: GENESIS_HASH });
  const rows = chain(5);
  assert.deepEqual(verifyChain(rows), { ok: true, entries: 5, head: rows[4].hash });
  assert.deepEqual(verifyChain(rows, { head: { seq: 5, hash: rows[4].hash } }).ok, true);
  assert.deepEqual(verifyChain(rows, { checkpoints: [{ seq: 2, hash: rows[1].hash }] }).ok, true);
});

Deno.test("verifyChain: each field of each entry, gaps, order, head and checkpoints", () => {
  const rows = chain(4);
  const edits: [string, (row: AuditRow) => AuditRow][] = [
    ["time", (r) => ({ ...r, time: r.time + 1 })],
    ["kind", (r) => ({ ...r, kind: "other.kind" })],
    ["data", (r) => ({ ...r, data: r.data.replace("entry", "Entry") })],
    ["prevHash", (r) => ({ ...r, prevHash: "f".repeat(64) })],
    ["hash", (r) => ({ ...r, hash: "0".repeat(63) + "1" })],
  ];
  for (let i = 0; i < rows.length; i++) {
    for (const [field, edit] of edits) {
      const copy = [...rows];
      copy[i] = edit(rows[i]);
      const result = verifyChain(copy);
      assert.equal(result.ok, false, `${field} of entry ${i + 1}`);
      assert.equal(result.ok === false && result.seq, i + 1, `${field} of entry ${i + 1}`);
    }
  }
  // Non-canonical data whose hash was recomputed over it.
  const spaced = { ...rows[0], data: rows[0].data.replace(":", ": ") };
  spaced.hash = auditHash(spaced.prevHash, 1, spaced.time, spaced.kind, spaced.data);
  const result = verifyChain([spaced]);
  assert.ok(!result.ok && /canonical/.test(result.reason));

  assert.deepEqual(verifyChain([rows[0], rows[2], rows[3]]).ok, false);
  assert.deepEqual(verifyChain([rows[1], rows[0], rows[2]]).ok, false);
  assert.deepEqual(verifyChain(rows.slice(1)).ok, false);
  assert.deepEqual(verifyChain(rows.slice(0, 3), { head: { seq: 4, hash: rows[3].hash } }), {
    ok: false,
    seq: 4,
    reason: "the log ends at entry 3 but its head records entry 4",
  });
  assert.equal(verifyChain(rows, { head: { seq: 4, hash: rows[2].hash } }).ok, false);
  assert.equal(verifyChain(rows, { checkpoints: [{ seq: 2, hash: rows[2].hash }] }).ok, false);
  assert.equal(
    verifyChain(rows.slice(0, 2), { checkpoints: [{ seq: 3, hash: rows[2].hash }] }).ok,
    false,
  );
});

Deno.test("verifyChain: an entry rewritten with its own hash recomputed breaks the next one's link", () => {
  const rows = chain(4);
  // Entry 2 replaced by a consistent forgery: its hash matches its new content.
  const forged = nextAuditRow({ seq: 1, hash: rows[0].hash }, rows[1].time, "test.entry", {
    i: 1,
    note: "forged",
  });
  assert.equal(verifyChain([rows[0], forged]).ok, true, "the forgery is consistent by itself");
  const result = verifyChain([rows[0], forged, rows[2], rows[3]]);
  assert.equal(result.ok, false);
  assert.ok(!result.ok && result.seq === 3 && /does not link/.test(result.reason), String(result));
});

// ---------------------------------------------------------------------------
// The store's log, tampered with through SQLite directly

/** A store with a few entries of each kind the store writes; returns its path. */
function populate(dir: string): string {
  const path = `${dir}/authority.db`;
  const store = AuthorityStore.open(path);
  try {
    const { secret } = store.createTicket({
      attributes: { role: "edge" },
      ttlSeconds: 600,
      now: NOW,
    });
    store.redeemTicket(secret, ALICE, NOW + 1);
    store.addMember(BOB, { role: "gateway" }, "operator", NOW + 2);
    store.recordCredential({
      id: CRED,
      subject: ALICE,
      issuedAt: NOW + 3,
      expiresAt: NOW + 3603,
      refresh: false,
    });
    store.revoke(CRED, NOW + 4);
    store.appendAudit("operator.note", { text: "done" }, NOW + 5);
    const result = store.verifyAudit();
    assert.deepEqual(result.ok && result.entries, 6);
  } finally {
    store.close();
  }
  return path;
}

function tamper(path: string, ...sql: string[]): void {
  const db = new DatabaseSync(path);
  try {
    for (const statement of sql) db.exec(statement);
  } finally {
    db.close();
  }
}

function verifyAt(path: string) {
  const store = AuthorityStore.open(path);
  try {
    return store.verifyAudit();
  } finally {
    store.close();
  }
}

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

for (const [name, sql, seq] of TAMPERING) {
  Deno.test(`store audit: tampering is detected: ${name}`, async () => {
    await withTempDir((dir) => {
      const path = populate(dir);
      tamper(path, ...sql);
      const result = verifyAt(path);
      assert.equal(result.ok, false, name);
      assert.equal(result.ok === false && result.seq, seq, JSON.stringify(result));
    });
  });
}

Deno.test("store audit: a forged, correctly hashed entry appended without the head fails", async () => {
  await withTempDir((dir) => {
    const path = populate(dir);
    const db = new DatabaseSync(path);
    const last = db.prepare("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").get() as {
      seq: number;
      hash: string;
    };
    const row = nextAuditRow(last, NOW + 9, "credential.issue", { id: "f".repeat(32) });
    db.prepare("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?)")
      .run(row.seq, row.time, row.kind, row.data, row.prevHash, row.hash);
    db.close();
    const result = verifyAt(path);
    assert.equal(result.ok, false);
    assert.equal(result.ok === false && result.seq, 7);
  });
});

Deno.test("store audit: a consistent rewrite of the tail is caught by an older checkpoint", async () => {
  await withTempDir((dir) => {
    const path = populate(dir);
    let store = AuthorityStore.open(path);
    const checkpoint = store.auditHead();
    assert.equal(checkpoint.seq, 6);
    store.close();
    // Rewrite entries 5 and 6 with forged content and recomputed hashes,
    // head included: the chain alone is consistent again.
    const db = new DatabaseSync(path);
    db.exec("DELETE FROM audit WHERE seq >= 5");
    let head = db.prepare("SELECT seq, hash FROM audit WHERE seq = 4").get() as {
      seq: number;
      hash: string;
    };
    for (const time of [NOW + 4, NOW + 5]) {
      const row = nextAuditRow(head, time, "operator.note", { text: "nothing happened" });
      db.prepare("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?)")
        .run(row.seq, row.time, row.kind, row.data, row.prevHash, row.hash);
      head = row;
    }
    db.prepare("UPDATE audit_head SET seq = ?, hash = ?").run(head.seq, head.hash);
    db.close();
    store = AuthorityStore.open(path);
    try {
      assert.equal(store.verifyAudit().ok, true);
      const result = store.verifyAudit({ checkpoints: [checkpoint] });
      assert.equal(result.ok, false);
      assert.equal(result.ok === false && result.seq, 6);
    } finally {
      store.close();
    }
  });
});

Deno.test("store audit: nothing is appended to a log cut short", async () => {
  await withTempDir((dir) => {
    const path = populate(dir);
    tamper(path, "DELETE FROM audit WHERE seq = 6");
    const store = AuthorityStore.open(path);
    try {
      assertThrowsWithCode(
        () => store.appendAudit("operator.note", {}, NOW + 10),
        AuthorityError,
        "store_corrupt",
      );
      assertThrowsWithCode(
        () => store.addMember("I" + "0".repeat(64), {}, "operator", NOW + 10),
        AuthorityError,
        "store_corrupt",
      );
      assert.equal(store.getMember("I" + "0".repeat(64)), null, "the change was rolled back");
    } finally {
      store.close();
    }
  });
});

Deno.test("store audit: entries, head, paging", async () => {
  await withTempDir((dir) => {
    const store = AuthorityStore.open(populate(dir));
    try {
      const entries = store.auditEntries();
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
      assert.deepEqual(store.auditHead(), { seq: 6, hash: entries[5].hash });
      assert.deepEqual(entries[4].data, { target: CRED, kind: "credential", serial: 1 });
      assert.deepEqual(
        store.auditEntries({ afterSeq: 2, limit: 2 }).map((e) => e.seq),
        [3, 4],
      );
      const verified = store.verifyAudit({ checkpoints: [{ seq: 3, hash: entries[2].hash }] });
      assert.deepEqual(verified, { ok: true, entries: 6, head: entries[5].hash });
    } finally {
      store.close();
    }
  });
});

Deno.test("store audit: an empty log verifies, with the genesis head", async () => {
  await withTempDir((dir) => {
    const store = AuthorityStore.open(`${dir}/a.db`);
    try {
      assert.deepEqual(store.verifyAudit(), { ok: true, entries: 0, head: GENESIS_HASH });
      assert.deepEqual(store.auditHead(), { seq: 0, hash: GENESIS_HASH });
      assert.deepEqual(store.auditEntries(), []);
    } finally {
      store.close();
    }
  });
});

Deno.test("store audit: appendAudit refuses secrets, bad kinds and bad data", async () => {
  await withTempDir((dir) => {
    const store = AuthorityStore.open(`${dir}/a.db`);
    try {
      const { secret } = store.createTicket({ attributes: {}, ttlSeconds: 60, now: NOW });
      const { key } = store.createLicense({ customerId: "cust_1", tier: "basic", now: NOW });
      assert.throws(() => store.appendAudit("note", { secret }, NOW), TypeError);
      assert.throws(() => store.appendAudit("note", { nested: [`key=${key}`] }, NOW), TypeError);
      assert.throws(() => store.appendAudit("Bad Kind", {}, NOW), TypeError);
      assert.throws(() => store.appendAudit("note", { at: new Date() }, NOW), TypeError);
      assert.throws(() => store.appendAudit("note", {}, -1), RangeError);
      assert.equal(store.auditHead().seq, 2, "nothing refused was appended");
      assert.equal(store.verifyAudit().ok, true);
    } finally {
      store.close();
    }
  });
});
