/**
 * The PostgreSQL transaction core against a real server
 * (tests/support/postgres.ts): the schema and its version, replicas opening
 * at once, writer exclusion across cores, the audit chain, types, read
 * snapshots and cursors, a connection lost mid-transaction, and an outage of
 * the server.
 *
 * One server for most of the file, one database per step; the outage has a
 * server of its own.
 */
import assert from "node:assert/strict";
import { AuthorityError } from "../../src/errors.ts";
import { assertRejectsWithCode } from "../../src/testdata/test_helpers.ts";
import { type PostgresServer, startPostgres } from "../../tests/support/postgres.ts";
import { type AuditRow, GENESIS_HASH, verifyChain } from "../audit.ts";
import { numberPlaceholders, PgCore, SCHEMA_VERSION } from "./pg_core.ts";
import type { Row, StoreCore } from "./store_core.ts";

/** A new, empty database on `pg`, and its URL. */
async function database(pg: PostgresServer, name: string): Promise<string> {
  await pg.psql(`CREATE DATABASE ${name}`);
  return `postgresql://${pg.user}@127.0.0.1:${pg.port}/${name}`;
}

/** `fn` with cores opened on `url`, closed afterwards. */
async function withCores(
  url: string,
  count: number,
  fn: (cores: PgCore[]) => Promise<void>,
): Promise<void> {
  const cores: PgCore[] = [];
  try {
    for (let i = 0; i < count; i++) cores.push(await PgCore.open(url));
    await fn(cores);
  } finally {
    await Promise.all(cores.map((core) => core.close()));
  }
}

/** The whole audit log as stored rows, in seq order, and its head row. */
async function auditLog(core: StoreCore): Promise<{ rows: AuditRow[]; head: Row }> {
  return await core.read(async (tx) => {
    const rows: AuditRow[] = [];
    for await (const row of tx.iterate("SELECT * FROM audit ORDER BY seq")) {
      rows.push({
        seq: row.seq as number,
        time: row.time as number,
        kind: row.kind as string,
        data: row.data as string,
        prevHash: row.prev_hash as string,
        hash: row.hash as string,
      });
    }
    return { rows, head: (await tx.get("SELECT seq, hash FROM audit_head WHERE one = 1"))! };
  });
}

/** Asserts that the log is one valid chain of `entries` entries ending at its head row. */
async function assertChain(core: StoreCore, entries: number): Promise<void> {
  const { rows, head } = await auditLog(core);
  const result = verifyChain(rows, {
    head: { seq: head.seq as number, hash: head.hash as string },
  });
  assert.deepEqual(result.ok ? result.entries : result, entries);
}

const NOW = 1_800_000_000;

Deno.test("numberPlaceholders numbers ? outside literals and comments", () => {
  assert.equal(
    numberPlaceholders("SELECT ?, ? FROM t WHERE a = ?"),
    "SELECT $1, $2 FROM t WHERE a = $3",
  );
  assert.equal(
    numberPlaceholders(
      `SELECT '?', 'it''s ?', "a?""b", ? -- ?\n, $$?$$, $x$ ? $x$, /* ? /* ? */ ? */ ?`,
    ),
    `SELECT '?', 'it''s ?', "a?""b", $1 -- ?\n, $$?$$, $x$ ? $x$, /* ? /* ? */ ? */ $2`,
  );
  assert.equal(numberPlaceholders(String.raw`SELECT E'\'?', ?`), String.raw`SELECT E'\'?', $1`);
  // $1 is a parameter, not a dollar quote; a$b is an identifier.
  assert.equal(numberPlaceholders("SELECT $1, a$b$, ?"), "SELECT $1, a$b$, $1");
});

Deno.test("PgCore on a real PostgreSQL server", async (t) => {
  const pg = await startPostgres();
  try {
    await t.step("open creates the schema at version 2; reopening checks it", async () => {
      const url = await database(pg, "open_twice");
      await withCores(url, 1, async ([first]) => {
        assert.equal(first.engine, "postgres");
        const version = await first.sql.get("SELECT version FROM schema_version");
        assert.deepEqual(version, { version: SCHEMA_VERSION });
        assert.equal(SCHEMA_VERSION, 2);
        assert.deepEqual(await first.sql.get("SELECT one, seq, hash FROM audit_head"), {
          one: 1,
          seq: 0,
          hash: GENESIS_HASH,
        });
        // A second core on the same database, while the first is open.
        await withCores(url, 1, async ([second]) => {
          assert.equal(
            await second.sql.run("INSERT INTO meta (key, value) VALUES (?, ?)", "a", "b"),
            1,
          );
          assert.deepEqual(await first.sql.get("SELECT value FROM meta WHERE key = ?", "a"), {
            value: "b",
          });
        });
      });
      // The schema is created once: the tables exist once, with one version row.
      assert.equal(await pg.psql("\\c open_twice\nSELECT count(*) FROM schema_version"), "1");
    });

    await t.step("a newer schema version is refused with store_version", async () => {
      const url = await database(pg, "newer");
      await withCores(url, 1, async () => {});
      await pg.psql("\\c newer\nUPDATE schema_version SET version = 99");
      const error = await assertRejectsWithCode(PgCore.open(url), AuthorityError, "store_version");
      assert.match(error.message, /version 99/);
    });

    await t.step("foreign tables and no schema_version: store_corrupt", async () => {
      const url = await database(pg, "unrelated");
      await pg.psql("\\c unrelated\nCREATE TABLE payroll (id int)");
      await assertRejectsWithCode(PgCore.open(url), AuthorityError, "store_corrupt");
      // Nothing was created beside it.
      assert.equal(
        await pg.psql("\\c unrelated\nSELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
        "1",
      );
    });

    await t.step("a database that does not exist: store_unavailable", async () => {
      await assertRejectsWithCode(
        PgCore.open(`postgresql://${pg.user}@127.0.0.1:${pg.port}/missing`),
        AuthorityError,
        "store_unavailable",
      );
    });

    await t.step("three cores opening one new database at once all succeed", async () => {
      const url = await database(pg, "three_at_once");
      const cores = await Promise.allSettled([0, 1, 2].map(() => PgCore.open(url)));
      try {
        for (const core of cores) {
          assert.equal(core.status, "fulfilled", String((core as PromiseRejectedResult).reason));
        }
      } finally {
        for (const core of cores) if (core.status === "fulfilled") await core.value.close();
      }
      assert.equal(await pg.psql("\\c three_at_once\nSELECT count(*) FROM audit_head"), "1");
    });

    await t.step("writes of two cores exclude each other: no lost update", async () => {
      const url = await database(pg, "counter");
      await withCores(url, 2, async ([a, b]) => {
        await a.sql.run("CREATE TABLE counter (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)");
        await a.sql.run("INSERT INTO counter (id, n) VALUES (1, 0)");
        // Read, then write what was read plus one: without the exclusion
        // two writers read the same value and one increment is lost.
        const bump = (core: PgCore) =>
          core.write(async (tx) => {
            const row = await tx.get("SELECT n FROM counter WHERE id = ?", 1);
            await tx.run("UPDATE counter SET n = ? WHERE id = ?", (row!.n as number) + 1, 1);
          });
        const writes: Promise<void>[] = [];
        for (let i = 0; i < 50; i++) writes.push(bump(a), bump(b));
        await Promise.all(writes);
        assert.deepEqual(await b.sql.get("SELECT n FROM counter WHERE id = 1"), { n: 100 });
      });
    });

    await t.step("audit appends of two cores form one valid chain", async () => {
      const url = await database(pg, "audit_chain");
      await withCores(url, 2, async ([a, b]) => {
        const append = (core: PgCore, who: string, i: number) =>
          core.write(async (tx) => {
            const first = await tx.audit(NOW + i, "test.entry", { who, i });
            // Two entries in one transaction follow each other.
            const second = await tx.audit(NOW + i, "test.second", { who, i });
            assert.equal(second.seq, first.seq + 1);
            assert.equal(second.prevHash, first.hash);
          }, i % 2 === 0 ? "full" : "routine");
        const writes: Promise<void>[] = [];
        for (let i = 0; i < 20; i++) writes.push(append(a, "a", i), append(b, "b", i));
        await Promise.all(writes);
        await assertChain(a, 80);
        const { rows } = await auditLog(b);
        assert.ok(rows.some((row) => row.data.includes('"who":"a"')));
        assert.ok(rows.some((row) => row.data.includes('"who":"b"')));

        // A write that fails after appending leaves neither entry nor head.
        const before = await b.sql.get("SELECT seq, hash FROM audit_head");
        await assert.rejects(
          a.write(async (tx) => {
            await tx.audit(NOW, "test.doomed", {});
            throw new Error("boom");
          }),
          /boom/,
        );
        assert.deepEqual(await b.sql.get("SELECT seq, hash FROM audit_head"), before);
        assert.deepEqual(await b.sql.get("SELECT count(*) AS n FROM audit"), { n: 80 });
        const next = await b.write((tx) => tx.audit(NOW, "test.after", {}));
        assert.equal(next.seq, 81);
        await assertChain(a, 81);
      });
    });

    await t.step("a log cut behind its head is refused: store_corrupt", async () => {
      const url = await database(pg, "cut_log");
      await withCores(url, 1, async ([core]) => {
        await core.write((tx) => tx.audit(NOW, "test.entry", {}));
        await core.write((tx) => tx.audit(NOW, "test.entry", {}));
        await pg.psql("\\c cut_log\nDELETE FROM audit WHERE seq = 2");
        await assertRejectsWithCode(
          core.write((tx) => tx.audit(NOW, "test.entry", {})),
          AuthorityError,
          "store_corrupt",
        );
      });
    });

    await t.step("types: BIGINT as number, BYTEA as Uint8Array, null as null", async () => {
      const url = await database(pg, "types");
      await withCores(url, 1, async ([core]) => {
        await core.sql.run("CREATE TABLE t (i BIGINT, b BYTEA, s TEXT, n BIGINT)");
        const bytes = new Uint8Array([0, 1, 127, 128, 255]);
        await core.write(async (tx) => {
          await tx.run(
            "INSERT INTO t (i, b, s, n) VALUES (?, ?, ?, ?)",
            Number.MAX_SAFE_INTEGER,
            bytes,
            "text",
            null,
          );
          // A bigint parameter, and a view into a larger buffer (only its bytes go).
          const view = new Uint8Array([9, 1, 2, 9]).subarray(1, 3);
          await tx.run("INSERT INTO t (i, b) VALUES (?, ?)", 42n, view);
        });
        const [row, second] = await core.sql.all("SELECT * FROM t ORDER BY i DESC");
        assert.equal(row.i, Number.MAX_SAFE_INTEGER);
        assert.equal(Object.getPrototypeOf(row.b), Uint8Array.prototype);
        assert.deepEqual([...row.b as Uint8Array], [...bytes]);
        assert.equal(row.s, "text");
        assert.equal(row.n, null);
        assert.equal(second.i, 42);
        assert.deepEqual([...second.b as Uint8Array], [1, 2]);
        // Aggregates: count is BIGINT, sum of BIGINT is NUMERIC; both numbers.
        assert.deepEqual(
          await core.sql.get("SELECT count(*) AS c, sum(i) AS s FROM t WHERE i < 100"),
          {
            c: 1,
            s: 42,
          },
        );
        // Beyond 2^53 is not a number this store could have written.
        await assertRejectsWithCode(
          core.sql.get("SELECT 9007199254740993::bigint AS big"),
          AuthorityError,
          "store_corrupt",
        );
        // The pool's parsers only: another pg user in the process is unaffected.
        const pg8 = (await import("pg")).default;
        const client = new pg8.Client({ connectionString: url });
        await client.connect();
        try {
          const other = await client.query("SELECT 5::bigint AS i, '\\x01'::bytea AS b");
          assert.equal(other.rows[0].i, "5");
          assert.notEqual(Object.getPrototypeOf(other.rows[0].b), Uint8Array.prototype);
        } finally {
          await client.end();
        }
        // A ? inside a literal stays a literal.
        assert.deepEqual(await core.sql.get("SELECT '?' AS q, ?::text AS p", "x"), {
          q: "?",
          p: "x",
        });
      });
    });

    await t.step(
      "a read sees one snapshot; iterate pages through 1,200 rows in order",
      async () => {
        const url = await database(pg, "reads");
        await withCores(url, 1, async ([core]) => {
          await core.sql.run("CREATE TABLE t (i BIGINT PRIMARY KEY)");
          await core.sql.run("INSERT INTO t SELECT g FROM generate_series(1, 1200) AS g");
          const seen = await core.read(async (tx) => {
            const before = (await tx.get("SELECT count(*) AS n FROM t"))!.n;
            // A write that commits while the read runs (on another connection).
            await core.write(async (w) => {
              await w.run("INSERT INTO t (i) VALUES (?)", 1201);
            });
            const after = (await tx.get("SELECT count(*) AS n FROM t"))!.n;
            const rows: number[] = [];
            for await (const row of tx.iterate("SELECT i FROM t WHERE i > ? ORDER BY i", 0)) {
              rows.push(row.i as number);
            }
            // An early break closes the cursor; the transaction goes on.
            for await (const _ of tx.iterate("SELECT i FROM t")) break;
            return { before, after, rows };
          });
          assert.equal(seen.before, 1200);
          assert.equal(seen.after, 1200);
          assert.deepEqual(seen.rows, Array.from({ length: 1200 }, (_, i) => i + 1));
          assert.deepEqual(await core.sql.get("SELECT count(*) AS n FROM t"), { n: 1201 });
          // A read transaction is read only.
          await assert.rejects(core.read((tx) => tx.run("DELETE FROM t")), /read-only/);
        });
      },
    );

    await t.step("statements of a transaction that is over are refused", async () => {
      const url = await database(pg, "over");
      await withCores(url, 1, async ([core]) => {
        const read = await core.read((tx) => Promise.resolve(tx));
        await assert.rejects(read.get("SELECT 1"), /over/);
        await assert.rejects(async () => {
          for await (const _ of read.iterate("SELECT 1")) { /* nothing */ }
        }, /over/);
        const write = await core.write((tx) => Promise.resolve(tx));
        await assert.rejects(write.run("DELETE FROM meta"), /over/);
        await assert.rejects(write.audit(NOW, "test.late", {}));
        await core.close();
        await core.close();
        await assert.rejects(core.sql.get("SELECT 1"), /closed/);
      });
    });

    await t.step("a failed statement whose error was caught: the write is refused", async () => {
      const url = await database(pg, "aborted");
      await withCores(url, 1, async ([core]) => {
        await core.sql.run("INSERT INTO meta (key, value) VALUES ('k', 'v')");
        // PostgreSQL aborts the whole transaction on an error: the COMMIT
        // would roll back, so the write must not report success.
        await assert.rejects(
          core.write(async (tx) => {
            await tx.audit(NOW, "test.entry", {});
            await tx.run("INSERT INTO meta (key, value) VALUES ('k2', 'v')");
            await tx.run("INSERT INTO meta (key, value) VALUES ('k', 'v')").catch(() => {});
          }),
        );
        await assert.rejects(
          core.write(async (tx) => {
            await tx.run("INSERT INTO meta (key, value) VALUES ('k3', 'v')");
            await tx.run("INSERT INTO meta (key, value) VALUES ('k', 'v')").catch(() => {});
          }),
          /rolled back/,
        );
        assert.deepEqual(await core.sql.all("SELECT key FROM meta ORDER BY key"), [{ key: "k" }]);
        // The connection is fine afterwards.
        await core.write((tx) => tx.audit(NOW, "test.entry", {}));
        await assertChain(core, 1);
      });
    });

    await t.step(
      "a connection lost mid-transaction: store_unavailable, then writes again",
      async () => {
        const url = await database(pg, "dropped");
        await withCores(url, 1, async ([core]) => {
          await core.write((tx) => tx.audit(NOW, "test.entry", {}));
          await assertRejectsWithCode(
            core.write(async (tx) => {
              await tx.audit(NOW, "test.lost", {});
              const { pid } = (await tx.get("SELECT pg_backend_pid() AS pid"))!;
              await pg.psql(`SELECT pg_terminate_backend(${pid})`);
              await tx.get("SELECT 1");
            }),
            AuthorityError,
            "store_unavailable",
          );
          // Idle connections of the pool terminated too: the pool's 'error'
          // events are handled, and the next calls connect afresh.
          await pg.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'nexus-authority'",
          );
          await new Promise((resolve) => setTimeout(resolve, 100));
          await core.write((tx) => tx.audit(NOW, "test.entry", {}));
          await assertChain(core, 2);
        });
      },
    );
  } finally {
    await pg.stop();
  }
});

Deno.test("PgCore through an outage of the server", async () => {
  const pg = await startPostgres();
  try {
    const url = await database(pg, "outage");
    // A password the server does not ask for (trust): it must appear in no message.
    const secretUrl = url.replace(`//${pg.user}@`, `//${pg.user}:s3cret-pw@`);
    const connectTimeoutMs = 1000;
    const core = await PgCore.open(secretUrl, { connectTimeoutMs });
    try {
      await core.write((tx) => tx.audit(NOW, "test.entry", { n: 1 }));
      // Connections idle in the pool when the server goes.
      await Promise.all([1, 2, 3].map(() => core.read((tx) => tx.get("SELECT pg_sleep(0.05)"))));

      await pg.pause();
      for (
        const attempt of [
          () => core.write((tx) => tx.audit(NOW, "test.entry", { n: 2 })),
          () => core.read((tx) => tx.get("SELECT 1")),
          () => core.sql.get("SELECT 1"),
        ]
      ) {
        const started = performance.now();
        const error = await assertRejectsWithCode(attempt(), AuthorityError, "store_unavailable");
        const elapsed = performance.now() - started;
        assert.ok(elapsed < connectTimeoutMs + 1000, `failed after ${elapsed} ms`);
        assert.match(error.message, /^the authority database is unreachable: /);
        assert.ok(error.cause instanceof Error);
        assert.doesNotMatch(error.message, /s3cret-pw/);
      }

      await pg.resume();
      // The same core, not reopened.
      const entry = await core.write((tx) => tx.audit(NOW, "test.entry", { n: 3 }));
      assert.equal(entry.seq, 2);
      await assertChain(core, 2);
    } finally {
      await core.close();
    }
  } finally {
    await pg.stop();
  }
});
