/**
 * tests/support/postgres.ts: a fresh PostgreSQL server, used with the real
 * psql client over TCP, and gone (process, port, directory) after stop().
 */
import assert from "node:assert/strict";
import { startPostgres } from "./support/postgres.ts";

/** The `psql` on PATH (what a user, or the portal test through a tunnel, runs). */
async function psqlCli(
  port: number,
  user: string,
  database: string,
  sql: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command("psql", {
    args: ["-X", "-h", "127.0.0.1", "-p", String(port), "-U", user, "-d", database, "-Atc", sql],
    env: { PGCONNECT_TIMEOUT: "5" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

async function accepts(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

Deno.test("startPostgres: a fresh server for psql over TCP, removed by stop()", async () => {
  const pg = await startPostgres();
  try {
    assert.equal(pg.host, "127.0.0.1");
    assert.equal(pg.url, `postgresql://${pg.user}@127.0.0.1:${pg.port}/${pg.database}`);
    assert(pg.dataDir.startsWith(`${pg.dir}/`));
    assert(Deno.statSync(`${pg.dataDir}/PG_VERSION`).isFile);

    // Through the helper: a script of several statements.
    assert.equal(
      await pg.psql("create table notes (id int primary key, body text not null); select 1"),
      "1",
    );
    // With the real client over TCP, as a test through a portal would.
    const insert = await psqlCli(
      pg.port,
      pg.user,
      pg.database,
      "insert into notes values (7, 'zero trust') returning id",
    );
    // -A -t drop the header and alignment, not the command tag (only -q does).
    assert.deepEqual(insert, { code: 0, stdout: "7\nINSERT 0 1\n", stderr: "" });
    const select = await psqlCli(pg.port, pg.user, pg.database, "select id, body from notes");
    assert.equal(select.stdout, "7|zero trust\n");
    assert.equal(await pg.psql("select count(*) from notes"), "1");
    assert.equal(await pg.psql("show server_encoding; show fsync"), "UTF8\noff");

    // Only on the loopback address.
    assert.equal(await pg.psql("show listen_addresses"), "127.0.0.1");
    // Errors reject, with psql's message.
    await assert.rejects(() => pg.psql("select * from missing"), /missing/);
  } finally {
    await pg.stop();
  }

  let gone = false;
  try {
    Deno.statSync(pg.dir);
  } catch (error) {
    gone = error instanceof Deno.errors.NotFound;
  }
  assert(gone, `${pg.dir} still exists`);
  assert.equal(await accepts(pg.port), false);
  const after = await psqlCli(pg.port, pg.user, pg.database, "select 1");
  assert(after.code !== 0);
  await pg.stop(); // again: a no-op
});

Deno.test("startPostgres: two servers side by side, each its own", async () => {
  const [a, b] = await Promise.all([startPostgres(), startPostgres({ database: "other" })]);
  try {
    assert(a.port !== b.port);
    await a.psql("create table only_in_a (x int)");
    assert.equal(
      await b.psql("select count(*) from pg_tables where tablename = 'only_in_a'"),
      "0",
    );
    assert.equal(await b.psql("select current_database()"), "other");
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

Deno.test("startPostgres: without PostgreSQL, says how to install it", async () => {
  await assert.rejects(
    () => startPostgres({ binDir: "/nonexistent/postgresql/99/bin" }),
    /not installed.*npm test.*apt-get install postgresql/,
  );
});
