/**
 * The authority store on PostgreSQL: the conformance suite
 * (`store_conformance.ts`) through the facade, each case on a fresh
 * database of one real server per file (tests/support/postgres.ts), its
 * race cases with child processes as replicas of one database.
 *
 * The server is started by the first case and stopped by the last one
 * registered here; a run that never reaches it (a filter, a crash) leaves
 * the server to postgres.ts's last resorts (killed on the way out, or by
 * the next `startPostgres`).
 */
import { type PostgresServer, startPostgres } from "../../tests/support/postgres.ts";
import { storeConformance } from "./store_conformance.ts";

let server: PostgresServer | null = null;
let databases = 0;

/** The file's PostgreSQL server, started by the first case that needs it. */
async function postgres(): Promise<PostgresServer> {
  // Eight replicas of a race, each with its own pool, and the test's store.
  return server ??= await startPostgres({ settings: { max_connections: "100" } });
}

/** The rows of `sql`, as JSON objects (through psql: no client library of the store's). */
async function query(pg: PostgresServer, database: string, sql: string) {
  const text = await psqlIn(
    pg,
    database,
    `SELECT coalesce(json_agg(q), '[]'::json) FROM (${sql}) q`,
  );
  return JSON.parse(text) as Record<string, unknown>[];
}

/** psql in `database` of `pg` (the server's own `psql()` talks to its default database). */
function psqlIn(pg: PostgresServer, database: string, sql: string): Promise<string> {
  return pg.psql(`\\connect ${database}\n${sql}`);
}

storeConformance("postgres", async () => {
  const pg = await postgres();
  const name = `t${++databases}`;
  await pg.psql(`CREATE DATABASE ${name}`);
  return {
    location: `postgres://${pg.user}@${pg.host}:${pg.port}/${name}`,
    async exec(...statements) {
      // One psql script, stopping at the first error, each statement committing on its own.
      await psqlIn(pg, name, statements.map((statement) => `${statement};`).join("\n"));
    },
    query: (sql) => query(pg, name, sql),
    async contents() {
      // Every row of every table of the store, as text.
      const tables = await query(
        pg,
        name,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()",
      );
      let text = "";
      for (const { table_name } of tables) {
        text += await psqlIn(pg, name, `SELECT t::text FROM "${table_name}" t`) + "\n";
      }
      return text;
    },
    async cleanup() {
      await pg.psql(`DROP DATABASE ${name} WITH (FORCE)`);
    },
  };
});

// Last: the file's server goes with the file.
Deno.test("postgres: (the file's PostgreSQL server stopped)", async () => {
  await server?.stop();
  server = null;
});
