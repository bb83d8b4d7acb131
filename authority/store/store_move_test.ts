/**
 * Moving a SQLite store into PostgreSQL (`store_move.ts`, `authority store
 * move`): every row arrives, the audit chain is the same chain (same
 * entries, same head) and then gains its `store.moved` entry; a target that
 * holds data is refused, and so is a source whose chain does not verify.
 * On a real PostgreSQL server of its own.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { AuthorityError } from "../../src/errors.ts";
import { type PostgresServer, startPostgres } from "../../tests/support/postgres.ts";
import { AuthorityStore } from "../store.ts";
import { PgCore } from "./pg_core.ts";
import { SqliteCore } from "./sqlite_core.ts";
import { moveStore } from "./store_move.ts";

const MEMBER = "I" + "ab".repeat(32);
const OTHER = "I" + "cd".repeat(32);

/** A SQLite store with something of every kind in it. */
async function filledStore(path: string): Promise<void> {
  const store = await AuthorityStore.open(path);
  try {
    const { secret } = await store.createTicket({ attributes: { role: "edge" }, ttlSeconds: 600 });
    await store.redeemTicket(secret, MEMBER);
    await store.createTicket({ attributes: { role: "gateway" }, ttlSeconds: 600 });
    const { key } = await store.createLicense({ customerId: "cust_001", tier: "pro" });
    await store.redeemLicense(key, OTHER);
    await store.setMemberKey(MEMBER, new Uint8Array(32).fill(9));
    for (let i = 0; i < 5; i++) {
      await store.submitCredential({
        id: i.toString(16).padStart(32, "0"),
        subject: MEMBER,
        issuedAt: 1000 + i,
        expiresAt: 5000,
        refresh: i > 0,
      });
    }
    await store.revoke(OTHER);
    await store.setMeta("note", "moved");
  } finally {
    await store.close();
  }
}

let server: PostgresServer | null = null;
let n = 0;
async function database(): Promise<string> {
  server ??= await startPostgres();
  const name = `move${++n}`;
  await server.psql(`CREATE DATABASE ${name}`);
  return `postgresql://${server.user}@127.0.0.1:${server.port}/${name}`;
}

Deno.test("store move: every row, the same chain, then store.moved; the source is only read", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/authority.db`;
    await filledStore(path);
    const before = await Deno.readFile(path);
    const source = await SqliteCore.open(path);
    const url = await database();
    const target = await PgCore.open(url);
    const tables: string[] = [];
    let report;
    try {
      report = await moveStore(source, target, (table) => void tables.push(table), 7777);
    } finally {
      await target.close();
      await source.close();
    }
    assert.deepEqual(report.rows, {
      meta: 1,
      tickets: 2,
      licenses: 1,
      members: 2,
      credentials: 5,
      revocations: 1,
      revocation_lists: 0,
      audit: report.head.seq,
    });
    assert.equal(tables.length, 8, "one progress line per table");

    const from = await AuthorityStore.open(path);
    const to = await AuthorityStore.open(url);
    try {
      // The same chain, then one entry linked to its head.
      const sourceEntries = await from.auditEntries();
      const targetEntries = await to.auditEntries();
      assert.deepEqual(targetEntries.slice(0, -1), sourceEntries);
      const moved = targetEntries.at(-1)!;
      assert.equal(moved.kind, "store.moved");
      assert.deepEqual(moved.data, {
        from: "sqlite",
        seq: report.head.seq,
        head: report.head.hash,
      });
      assert.equal(moved.prevHash, report.head.hash);
      assert.deepEqual(await to.verifyAudit(), {
        ok: true,
        entries: report.head.seq + 1,
        head: report.movedHead.hash,
      });
      // And the rows, as the store reads them.
      assert.deepEqual(await to.listMembers(), await from.listMembers());
      assert.deepEqual(await to.listTickets(), await from.listTickets());
      assert.deepEqual(await to.memberKey(MEMBER), await from.memberKey(MEMBER));
      assert.deepEqual(await to.revocationState(), await from.revocationState());
      assert.equal(await to.credentialSubject("3".padStart(32, "0")), MEMBER);
      assert.equal(await to.getMeta("note"), "moved");
      // The moved store keeps working: a write chains after store.moved.
      await to.revoke(MEMBER);
      assert.equal((await to.verifyAudit()).ok, true);
    } finally {
      await from.close();
      await to.close();
    }
    assert.deepEqual(await Deno.readFile(path), before, "the source file was not written");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("store move: refused into a store that holds data, and from a chain that does not verify", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/authority.db`;
    await filledStore(path);
    const url = await database();
    const busy = await AuthorityStore.open(url);
    await busy.setMeta("already", "here");
    await busy.close();
    const source = await SqliteCore.open(path);
    const target = await PgCore.open(url);
    try {
      await assert.rejects(
        moveStore(source, target),
        (e: unknown) => e instanceof AuthorityError && e.code === "state_exists",
      );
    } finally {
      await target.close();
      await source.close();
    }
    // An edited entry: the source does not verify, nothing is moved.
    const db = new DatabaseSync(path);
    db.exec("UPDATE audit SET data = '{\"edited\":true}' WHERE seq = 2");
    db.close();
    const broken = await SqliteCore.open(path);
    const empty = await PgCore.open(await database());
    try {
      await assert.rejects(
        moveStore(broken, empty),
        (e: unknown) => e instanceof AuthorityError && e.code === "store_corrupt",
      );
      assert.equal(
        (await empty.sql.get("SELECT count(*) AS n FROM audit"))?.n,
        0,
        "nothing was moved",
      );
    } finally {
      await empty.close();
      await broken.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(
  { name: "store move: (the file's PostgreSQL server stopped)", sanitizeResources: false },
  async () => {
    await server?.stop();
    server = null;
  },
);
