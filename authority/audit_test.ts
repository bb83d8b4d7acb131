/**
 * The audit chain: the pure functions of `audit.ts`. The store's log (paging,
 * refusals, and tampering with every column, deleted, reordered, inserted
 * and cut rows, a consistent rewrite caught by a checkpoint) is tested on
 * every engine by the conformance suite, `store/store_conformance.ts`.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { NOW } from "../src/testdata/test_helpers.ts";
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
  verifyChainAsync,
  type VerifyChainOptions,
} from "./audit.ts";

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

Deno.test("verifyChainAsync: the same result as verifyChain, rows arriving asynchronously", async () => {
  const rows = chain(6);
  const forged = { ...rows[2], data: '{"i":2,"note":"forged"}' };
  forged.hash = auditHash(forged.prevHash, forged.seq, forged.time, forged.kind, forged.data);
  const cases: [AuditRow[], VerifyChainOptions][] = [
    [[], {}],
    [rows, {}],
    [rows, { head: { seq: 6, hash: rows[5].hash } }],
    [rows, { head: { seq: 5, hash: rows[4].hash } }],
    [rows.slice(0, 4), { head: { seq: 6, hash: rows[5].hash } }],
    [rows, { checkpoints: [{ seq: 2, hash: rows[1].hash }] }],
    [rows, { checkpoints: [{ seq: 2, hash: rows[2].hash }] }],
    [rows.slice(0, 2), { checkpoints: [{ seq: 3, hash: rows[2].hash }] }],
    [[rows[0], rows[2], rows[3]], {}],
    [[rows[1], rows[0], rows[2]], {}],
    [rows.slice(1), {}],
    [[rows[0], rows[1], forged, rows[3]], {}],
    [[rows[0], { ...rows[1], kind: "forged" }, rows[2]], {}],
  ];
  async function* arriving(given: AuditRow[]): AsyncGenerator<AuditRow> {
    for (const row of given) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      yield row;
    }
  }
  for (const [i, [given, options]] of cases.entries()) {
    assert.deepEqual(
      await verifyChainAsync(arriving(given), options),
      verifyChain(given, options),
      `case ${i}`,
    );
  }
  // It stops at the first fault: the rows after it are not read.
  let read = 0;
  async function* counted(): AsyncGenerator<AuditRow> {
    for (const row of [rows[0], rows[2], rows[3], rows[4]]) {
      read++;
      yield row;
    }
  }
  const result = await verifyChainAsync(counted());
  assert.equal(result.ok === false && result.seq, 2);
  assert.equal(read, 2);
});
