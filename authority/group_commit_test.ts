/**
 * Group commit: the queue on its own (batches by turn, bounds, failures,
 * an asynchronous write), and the store's credential records through it on
 * SQLite: a failure inside a batch (a trigger) that fails all its records
 * and leaves the store and the audit chain unchanged; a lone record written
 * at once, before any timer; the appends of one transaction of the core.
 * Concurrent records in one transaction, refusals of single records and a
 * log cut short are in the conformance suite (store/store_conformance.ts),
 * run on every engine.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { NOW, withTempDir as withPrefixedTempDir } from "../src/testdata/test_helpers.ts";
import { AuthorityStore, type CredentialRecord, StoreBatchError } from "./store.ts";
import { GroupCommit, type Outcome } from "./store/group_commit.ts";
import { SqliteCore } from "./store/sqlite_core.ts";
import type { WriteTx } from "./store/store_core.ts";

const ALICE = "I" + "a1".repeat(32);
const BOB = "I" + "b2".repeat(32);

/** A distinct credential id per `n`. */
function credentialId(n: number): string {
  return n.toString(16).padStart(32, "0");
}

function record(n: number, subject = ALICE): CredentialRecord {
  return { id: credentialId(n), subject, issuedAt: NOW, expiresAt: NOW + 3600, refresh: true };
}

/** A queue over a write that records each batch and answers each item with its double. */
function doubling(maxBatch?: number) {
  const batches: number[][] = [];
  const queue = new GroupCommit<number, number>({
    write(items) {
      batches.push([...items]);
      return items.map((n): Outcome<number> =>
        n < 0 ? { ok: false, error: new RangeError(`refused ${n}`) } : { ok: true, value: 2 * n }
      );
    },
    maxBatch,
  });
  return { queue, batches };
}

/** Whether a macrotask (a zero timer started now) has run by the time `promise` settles. */
async function beforeAnyTimer<T>(promise: Promise<T>): Promise<{ value: T; timerRan: boolean }> {
  let timerRan = false;
  const timer = setTimeout(() => timerRan = true, 0);
  try {
    const value = await promise;
    return { value, timerRan };
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------
// The queue

Deno.test("group commit: the items of one turn are one write, in order, each with its outcome", async () => {
  const { queue, batches } = doubling();
  const results = await Promise.all([1, 2, 3, 4, 5].map((n) => queue.submit(n)));
  assert.deepEqual(results, [2, 4, 6, 8, 10]);
  assert.deepEqual(batches, [[1, 2, 3, 4, 5]]);
  assert.deepEqual({ ...queue.stats }, { batches: 1, items: 5, failed: 0, largest: 5 });
  // Items submitted a few microtasks apart, as requests of one turn reach
  // the store, still go together while each round brings more; a round
  // that brings none ends the batch, and a later item goes in the next.
  const later = async (n: number, hops: number) => {
    for (let i = 0; i < hops; i++) await Promise.resolve();
    return queue.submit(n);
  };
  assert.deepEqual(
    await Promise.all([later(6, 0), later(7, 1), later(8, 2), later(9, 3), later(10, 9)]),
    [12, 14, 16, 18, 20],
  );
  assert.deepEqual(batches.slice(1), [[6, 7, 8, 9], [10]]);
});

Deno.test("group commit: a lone item is written at once, before any timer; later turns are batches of their own", async () => {
  const { queue, batches } = doubling();
  const { value, timerRan } = await beforeAnyTimer(queue.submit(21));
  assert.equal(value, 42);
  assert.equal(timerRan, false, "a lone item waited for a timer");
  assert.deepEqual(batches, [[21]]);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(await queue.submit(1), 2);
  assert.deepEqual(batches, [[21], [1]]);
});

Deno.test("group commit: a batch holds at most maxBatch items; a full one is written at once", async () => {
  const { queue, batches } = doubling(4);
  const all = Array.from({ length: 10 }, (_, i) => queue.submit(i));
  // The first four filled a batch, which was written within the fourth submit.
  assert.deepEqual(batches, [[0, 1, 2, 3], [4, 5, 6, 7]]);
  assert.deepEqual(await Promise.all(all), [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
  assert.deepEqual(batches, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
  assert.equal(queue.stats.largest, 4);
  assert.throws(() => new GroupCommit({ write: () => [], maxBatch: 0 }), RangeError);
});

Deno.test("group commit: an item refused alone rejects alone; a failed write rejects every item", async () => {
  const { queue } = doubling();
  const settled = await Promise.allSettled([queue.submit(1), queue.submit(-1), queue.submit(3)]);
  assert.deepEqual(settled.map((s) => s.status), ["fulfilled", "rejected", "fulfilled"]);
  assert.match(String((settled[1] as PromiseRejectedResult).reason), /refused -1/);

  let fail = true;
  const failure = new Error("the database is gone");
  const flaky = new GroupCommit<number, number>({
    write(items) {
      if (fail) throw failure;
      return items.map((n) => ({ ok: true, value: n }));
    },
  });
  const failed = await Promise.allSettled([1, 2, 3].map((n) => flaky.submit(n)));
  for (const outcome of failed) {
    assert.equal(outcome.status, "rejected");
    assert.equal((outcome as PromiseRejectedResult).reason, failure);
  }
  assert.equal(flaky.stats.failed, 1);
  // The queue goes on with the next batch.
  fail = false;
  assert.deepEqual(await Promise.all([flaky.submit(4), flaky.submit(5)]), [4, 5]);

  // A write that answers for the wrong number of items fails them all.
  const short = new GroupCommit<number, number>({ write: () => [{ ok: true, value: 0 }] });
  const results = await Promise.allSettled([short.submit(1), short.submit(2)]);
  assert.deepEqual(results.map((r) => r.status), ["rejected", "rejected"]);
});

Deno.test("group commit: with an asynchronous write, items that come while a batch commits go next, together", async () => {
  const batches: number[][] = [];
  const commits: (() => void)[] = [];
  const queue = new GroupCommit<number, number>({
    write(items) {
      batches.push([...items]);
      return new Promise((resolve) => {
        commits.push(() => resolve(items.map((n) => ({ ok: true, value: n }))));
      });
    },
  });
  const first = queue.submit(1);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(batches, [[1]], "a lone item goes at once");
  const waiting = [queue.submit(2), queue.submit(3)];
  await new Promise((resolve) => setTimeout(resolve, 0));
  const more = queue.submit(4);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(batches, [[1]], "nothing else goes while a batch is in flight");
  commits.shift()!();
  assert.equal(await first, 1);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(batches, [[1], [2, 3, 4]]);
  commits.shift()!();
  assert.deepEqual(await Promise.all([...waiting, more]), [2, 3, 4]);
});

// ---------------------------------------------------------------------------
// The store's credential records on SQLite (the engine-neutral cases, through
// the facade, are in the conformance suite: store/store_conformance.ts)

function withStore(fn: (store: AuthorityStore, path: string) => Promise<void>): Promise<void> {
  return withPrefixedTempDir("nexus-group-commit-test-", async (dir) => {
    const path = `${dir}/authority.db`;
    const store = await AuthorityStore.open(path);
    try {
      await store.addMember(ALICE, { role: "edge" }, "operator", NOW);
      await store.addMember(BOB, { role: "edge" }, "operator", NOW);
      await fn(store, path);
    } finally {
      await store.close();
    }
  });
}

/** What a failed batch must leave as it was: the records, the log and its head. */
function snapshot(path: string) {
  const db = new DatabaseSync(path);
  try {
    return {
      credentials: db.prepare("SELECT * FROM credentials ORDER BY id").all(),
      audit: db.prepare("SELECT * FROM audit ORDER BY seq").all(),
      head: db.prepare("SELECT seq, hash FROM audit_head").all(),
    };
  } finally {
    db.close();
  }
}

Deno.test("credential records: a failure inside a batch fails all its records and changes nothing", async () => {
  await withStore(async (store, path) => {
    await store.submitCredential(record(1));
    const before = snapshot(path);
    // The database refuses the third record of the batch (a trigger made
    // from another connection): the first two, already written in the
    // transaction, are rolled back with it.
    const db = new DatabaseSync(path);
    db.exec(`CREATE TRIGGER refuse BEFORE INSERT ON credentials WHEN NEW.id = '${credentialId(4)}'
      BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`);
    try {
      const records = [record(2), record(3, BOB), record(4), record(5)];
      const settled = await Promise.allSettled(records.map((o) => store.submitCredential(o)));
      for (const outcome of settled) {
        assert.equal(outcome.status, "rejected");
        const error = (outcome as PromiseRejectedResult).reason;
        assert.ok(error instanceof StoreBatchError, String(error));
        assert.equal(error.code, "bad_request");
        assert.equal(error.size, 4);
        assert.match(String(error.cause), /refused by the test/);
        assert.doesNotMatch(error.message, /refused by the test/, "the database's words stay out");
      }
      assert.deepEqual(snapshot(path), before, "nothing of the batch was written");
      assert.equal(store.credentialBatches.failed, 1);
      assert.ok((await store.verifyAudit()).ok);
      // A single record keeps the database's own error.
      await assert.rejects(store.recordCredential(record(4)), /refused by the test/);
    } finally {
      db.exec("DROP TRIGGER refuse");
      db.close();
    }
    // The store goes on: the same records, now accepted, in one batch.
    await Promise.all([record(2), record(4)].map((o) => store.submitCredential(o)));
    assert.equal(await store.credentialSubject(credentialId(4)), ALICE);
    assert.ok((await store.verifyAudit()).ok);
  });
});

Deno.test("credential records: a lone record is written at once, visible to another connection", async () => {
  await withStore(async (store, path) => {
    const { timerRan } = await beforeAnyTimer(store.submitCredential(record(7)));
    assert.equal(timerRan, false, "a lone record waited for a timer");
    assert.deepEqual({ ...store.credentialBatches }, {
      batches: 1,
      items: 1,
      failed: 0,
      largest: 1,
    });
    const db = new DatabaseSync(path, { readOnly: true });
    try {
      const row = db.prepare("SELECT subject FROM credentials WHERE id = ?").get(credentialId(7));
      assert.equal(row?.subject, ALICE);
    } finally {
      db.close();
    }
  });
});

Deno.test("audit appends of one transaction chain from each other; the head is written at commit", async () => {
  await withPrefixedTempDir("nexus-group-commit-test-", async (dir) => {
    const path = `${dir}/authority.db`;
    const core = await SqliteCore.open(path);
    try {
      const other = new DatabaseSync(path, { readOnly: true });
      const head = () => other.prepare("SELECT seq, hash FROM audit_head").get();
      let kept: WriteTx | undefined;
      const entries = await core.write(async (tx) => {
        kept = tx;
        const appended = [];
        for (const i of [1, 2, 3]) appended.push(await tx.audit(NOW, "test.entry", { i }));
        // Not committed yet: another connection still sees the old head.
        assert.equal(head()?.seq, 0);
        return appended;
      });
      assert.deepEqual(entries.map((e) => e.seq), [1, 2, 3]);
      assert.equal(entries[1].prevHash, entries[0].hash);
      assert.equal(entries[2].prevHash, entries[1].hash);
      assert.deepEqual({ ...head() }, { seq: 3, hash: entries[2].hash });
      other.close();
      // The transaction's handle cannot append once the transaction is over.
      await assert.rejects(kept!.audit(NOW, "test.entry", {}), /inside a write transaction/);
      // A transaction that fails leaves the head where it was, and the next
      // one reads it again.
      await assert.rejects(
        core.write(async (tx) => {
          await tx.audit(NOW, "test.entry", { i: 4 });
          throw new Error("abandoned");
        }),
        /abandoned/,
      );
      const next = await core.write((tx) => tx.audit(NOW, "test.entry", { i: 5 }));
      assert.equal(next.seq, 4);
      assert.equal(next.prevHash, entries[2].hash);
    } finally {
      await core.close();
    }
    const store = await AuthorityStore.open(path);
    try {
      assert.ok((await store.verifyAudit()).ok);
    } finally {
      await store.close();
    }
  });
});
