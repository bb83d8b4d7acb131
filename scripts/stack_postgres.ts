/**
 * The local stack's PostgreSQL server, for `npm start -- --replicas N`: one
 * cluster that lives as long as the stack's state (unlike the tests'
 * throwaway servers, `tests/support/postgres.ts`, whose steps it uses), on
 * 127.0.0.1:5433, with one database (`authority`) that the authority
 * replicas share. Started with the stack and stopped with it; its data is
 * kept between runs, and `--reset` removes it with the rest of the state.
 *
 * Where its files are: PostgreSQL refuses to run as root, so as root the
 * server runs as the `postgres` OS user (the Debian package makes it), which
 * may not enter the stack's state directory (mode 0700, root's). The
 * cluster then lives in `/var/tmp/nexus-stack-postgres-<hash of the state
 * path>` (0700, the postgres user's). Otherwise it lives in the state
 * directory itself.
 *
 * @module
 */
import { sha256 } from "../src/crypto/hash.ts";
import { toHex } from "../src/encoding/hex.ts";
import {
  type Cluster,
  configureCluster,
  findPostgresBin,
  initCluster,
  osUserIds,
  runPsql,
  startCluster,
  stopCluster,
  waitReady,
} from "../tests/support/postgres.ts";

/** The stack's PostgreSQL port. */
export const STACK_POSTGRES = "127.0.0.1:5433";
const PORT = 5433;
const USER = "nexus";
const DATABASE = "authority";

/** The running server: the replicas' URL, and how to stop it. */
export interface StackPostgres {
  readonly url: string;
  readonly dir: string;
  stop(): Promise<void>;
}

/** Where the cluster of the stack whose state is at `stateDir` (absolute) lives. */
export function stackPostgresDir(stateDir: string, root: boolean): string {
  return root
    ? `/var/tmp/nexus-stack-postgres-${
      toHex(sha256(new TextEncoder().encode(stateDir))).slice(0, 16)
    }`
    : `${stateDir}/postgres`;
}

/**
 * Starts the stack's cluster (creating it on the first run) and its
 * `authority` database.
 * @example
 * ```ts ignore
 * const pg = await startStackPostgres("/work/main/.state/stack", true);
 * console.log(pg.url); // postgresql://nexus@127.0.0.1:5433/authority
 * await pg.stop();
 * ```
 */
export async function startStackPostgres(stateDir: string, root: boolean): Promise<StackPostgres> {
  const bin = findPostgresBin();
  const dir = stackPostgresDir(stateDir, root);
  const cluster: Cluster = {
    bin,
    dir,
    dataDir: `${dir}/data`,
    socketDir: dir,
    logFile: `${dir}/postgres.log`,
    user: USER,
    osUser: root ? "postgres" : null,
  };
  let fresh = false;
  try {
    await Deno.stat(`${cluster.dataDir}/PG_VERSION`);
  } catch {
    fresh = true;
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    if (root) {
      const ids = await osUserIds("postgres");
      await Deno.chown(dir, ids.uid, ids.gid);
    }
    await initCluster(cluster);
    // The stack's server is durable: its data outlives the run.
    await configureCluster(cluster, {
      fsync: "on",
      synchronous_commit: "on",
      full_page_writes: "on",
    });
  }
  // A server left running by a stack that was killed: stop it first.
  await stopCluster(cluster);
  if (!await startCluster(cluster, PORT)) {
    throw new Error(`PostgreSQL: port ${PORT} is taken`);
  }
  await waitReady(cluster, PORT);
  const target = { port: PORT, user: USER, database: "postgres" };
  const exists = await runPsql(
    bin,
    target,
    `SELECT 1 FROM pg_database WHERE datname = '${DATABASE}'`,
  );
  if (fresh || exists.trim() !== "1") {
    await runPsql(bin, target, `CREATE DATABASE ${DATABASE}`);
  }
  return {
    url: `postgresql://${USER}@127.0.0.1:${PORT}/${DATABASE}`,
    dir,
    stop: () => stopCluster(cluster),
  };
}
