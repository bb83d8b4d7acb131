/**
 * The authority store on SQLite: what is about its file (creation and mode,
 * WAL, refusing a file others may read or that is not a store, the schema
 * version, an old index dropped, the busy timeout), and the engine-neutral
 * conformance suite (`store/store_conformance.ts`: tickets, licenses,
 * members, credentials, revocation, the audit log, group commit, races
 * between processes) on a fresh temporary file per test.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { AuthorityError } from "../src/errors.ts";
import {
  assertRejectsWithCode,
  NOW,
  withTempDir as withPrefixedTempDir,
} from "../src/testdata/test_helpers.ts";
import { AuthorityStore, SCHEMA_VERSION } from "./store.ts";
import {
  ALICE,
  assertPlain,
  credentialId,
  seedMember,
  storeConformance,
} from "./store/store_conformance.ts";

/** Runs `fn` with a fresh temporary directory, removed afterwards. */
function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  return withPrefixedTempDir("nexus-store-test-", fn);
}

async function modeOf(path: string): Promise<number> {
  const info = await Deno.stat(path);
  assert.notEqual(info.mode, null, "this test needs a POSIX file system");
  return info.mode! & 0o777;
}

/** Runs `fn` with a store in a fresh temporary directory. */
function withStore(fn: (store: AuthorityStore, path: string) => Promise<void>) {
  return withTempDir(async (dir) => {
    const path = `${dir}/authority.db`;
    const store = await AuthorityStore.open(path);
    try {
      await fn(store, path);
    } finally {
      await store.close();
    }
  });
}

// ---------------------------------------------------------------------------
// The conformance suite, on a temporary file per test

storeConformance("sqlite", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nexus-store-test-" });
  const path = `${dir}/authority.db`;
  /** `fn` on a connection of its own to the file (not the store's). */
  const direct = <T>(fn: (db: DatabaseSync) => T): Promise<T> => {
    const db = new DatabaseSync(path);
    try {
      return Promise.resolve(fn(db));
    } finally {
      db.close();
    }
  };
  return {
    location: path,
    exec: (...statements) =>
      direct((db) => {
        for (const statement of statements) db.exec(statement);
      }),
    query: (sql) => direct((db) => db.prepare(sql).all().map((row) => ({ ...row }))),
    async contents() {
      // The file and its WAL as they are on disk (no connection of ours).
      let text = "";
      for (const file of [path, `${path}-wal`]) {
        try {
          text += new TextDecoder("latin1").decode(await Deno.readFile(file));
        } catch (error) {
          if (!(error instanceof Deno.errors.NotFound)) throw error;
        }
      }
      return text;
    },
    cleanup: () => Deno.remove(dir, { recursive: true }),
  };
});

// ---------------------------------------------------------------------------
// The file and its schema

Deno.test("open: creates a 0600 file in WAL mode with a schema version", async () => {
  await withStore(async (store, path) => {
    await store.addMember(ALICE, {}, "operator", NOW);
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
    await (await AuthorityStore.open(path)).close();
    for (const mode of [0o640, 0o604, 0o660]) {
      await Deno.chmod(path, mode);
      await assertRejectsWithCode(AuthorityStore.open(path), AuthorityError, "store_permissions");
    }
    await Deno.chmod(path, 0o600);
    await (await AuthorityStore.open(path)).close();
  });
});

Deno.test("open: refuses a file that is not an authority store", async () => {
  await withTempDir(async (dir) => {
    const garbage = `${dir}/garbage.db`;
    await Deno.writeFile(garbage, new TextEncoder().encode("x".repeat(4096)), { mode: 0o600 });
    await Deno.chmod(garbage, 0o600);
    await assertRejectsWithCode(AuthorityStore.open(garbage), AuthorityError, "store_corrupt");

    const other = `${dir}/other.db`;
    const db = new DatabaseSync(other);
    db.exec("CREATE TABLE things (x INTEGER)");
    db.close();
    await Deno.chmod(other, 0o600);
    await assertRejectsWithCode(AuthorityStore.open(other), AuthorityError, "store_corrupt");

    const newer = `${dir}/newer.db`;
    await (await AuthorityStore.open(newer)).close();
    const db2 = new DatabaseSync(newer);
    db2.exec(`UPDATE schema_version SET version = ${SCHEMA_VERSION + 1}`);
    db2.close();
    await assertRejectsWithCode(AuthorityStore.open(newer), AuthorityError, "store_version");
  });
});

Deno.test("open: an earlier file's unused index by subject is dropped, its data and version kept", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/authority.db`;
    let store = await AuthorityStore.open(path);
    await seedMember(store);
    await store.close();
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

    store = await AuthorityStore.open(path);
    try {
      assert.equal(await store.credentialSubject(credentialId(1)), ALICE);
      assert.ok((await store.verifyAudit()).ok);
    } finally {
      await store.close();
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
// Connections

Deno.test("a connection waits for another's write lock, and gives up after busyTimeoutMs", async () => {
  await withStore(async (store, path) => {
    const { secret } = await store.createTicket({ attributes: {}, ttlSeconds: 60, now: NOW });
    const impatient = await AuthorityStore.open(path, { busyTimeoutMs: 50 });
    const locker = new DatabaseSync(path);
    try {
      locker.exec("BEGIN IMMEDIATE");
      await assert.rejects(impatient.redeemTicket(secret, ALICE, NOW), /locked|busy/i);
      locker.exec("ROLLBACK");
      assertPlain(await impatient.redeemTicket(secret, ALICE, NOW), {});
    } finally {
      locker.close();
      await impatient.close();
    }
  });
});
