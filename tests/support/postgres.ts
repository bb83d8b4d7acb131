/**
 * A real, throwaway PostgreSQL server for tests: a fresh cluster in a new
 * temporary directory under /tmp, listening on 127.0.0.1 only, on a free port,
 * removed again by `stop()`.
 *
 * ```ts
 * const pg = await startPostgres();
 * try {
 *   await pg.psql("create table t (id int)");
 *   // … connect to pg.host:pg.port as pg.user to pg.database (trust auth, no password)
 * } finally {
 *   await pg.stop(); // in finally: a failing test must not leave a server behind
 * }
 * ```
 *
 * It uses Debian's PostgreSQL (`postgresql`, `postgresql-client`; scripts/nexus.sh,
 * run by `npm test`, installs them), the binaries of the highest major version in
 * /usr/lib/postgresql/<major>/bin. PostgreSQL refuses to run as root: when the
 * test runs as root, initdb, pg_ctl and the server run as the `postgres` OS user
 * (made by the Debian package) through `runuser`, and the temporary directory is
 * handed to that user. Clients (psql, pg_isready) run as the test's own user and
 * connect over TCP with trust authentication.
 *
 * Everything stays inside the `test` permission set of deno.json: it writes
 * only under /tmp, reads /usr/lib/postgresql and /etc/passwd, connects to
 * 127.0.0.1 and runs commands (runuser, the PostgreSQL binaries, and `cat` for
 * /proc/<pid>/stat: Deno wants all permissions to read /proc itself).
 *
 * Cleanup: `stop()` in `finally` is the way. As last resorts, the servers of
 * a process that ends without it (Deno.exit, an uncaught error) are killed
 * and removed synchronously on the way out, and those of a process killed
 * outright (SIGKILL, Ctrl-C) by the next `startPostgres` on the machine, which
 * finds them by the owner pid file in their directories.
 *
 * The steps are small functions of their own ({@link findPostgresBin},
 * {@link createClusterDir}, {@link initCluster}, {@link configureCluster},
 * {@link startCluster}, {@link waitReady}, {@link stopCluster}) so that a primary
 * with streaming replicas can be built from them later: `initCluster` writes a
 * pg_hba.conf that already trusts replication connections from 127.0.0.1, the
 * shared settings go to postgresql.conf (which `pg_basebackup` copies) and the
 * per-server ones (port, socket directory, listen address) are given on the
 * server's command line by `startCluster`.
 *
 * @module
 */
import { freePort } from "../../scripts/support/free_port.ts";

/** Where Debian installs the versioned server and client binaries. */
const PG_ROOT = "/usr/lib/postgresql";

/** The file naming the test process that made a cluster directory. */
const OWNER_FILE = "owner.pid";

/** Settings for a test server: no durability, little memory. */
const TEST_SETTINGS: Record<string, string> = {
  fsync: "off",
  synchronous_commit: "off",
  full_page_writes: "off",
  shared_buffers: "32MB",
  max_connections: "50",
  // Ready for streaming replicas (these are also PostgreSQL 15's defaults).
  wal_level: "replica",
  max_wal_senders: "10",
  // Logs go to the cluster's log file (pg_ctl -l), in the temporary directory.
  logging_collector: "off",
  log_destination: "'stderr'",
  timezone: "'UTC'",
};

/** What {@link startPostgres} accepts. */
export interface StartPostgresOptions {
  /** Superuser made by initdb (default "nexus"). */
  user?: string;
  /** Database made after start (default "nexus"; "postgres" already exists). */
  database?: string;
  /** Extra `postgresql.conf` settings, e.g. `{ max_connections: "20" }`. */
  settings?: Record<string, string>;
  /** Where the temporary directory is made (default "/tmp", inside the test set). */
  parentDir?: string;
  /** The binaries' directory (default: the highest /usr/lib/postgresql/<major>/bin). */
  binDir?: string;
  /** How long to wait for the server to accept connections (default 30 s). */
  startTimeoutMs?: number;
}

/** A running server from {@link startPostgres}. */
export interface PostgresServer {
  readonly host: "127.0.0.1";
  readonly port: number;
  readonly user: string;
  readonly database: string;
  /** `postgresql://user@127.0.0.1:port/database` (trust auth, no password). */
  readonly url: string;
  /** The cluster's data directory (inside the temporary directory). */
  readonly dataDir: string;
  /** The temporary directory: data, log and unix socket. */
  readonly dir: string;
  /** PostgreSQL major version of the binaries used, e.g. 15. */
  readonly version: number;
  /**
   * Runs SQL (one statement or a script) with psql over TCP, stopping at the
   * first error (which rejects, with psql's message). Resolves with psql's
   * unaligned, tuples-only output, e.g. `"1|a\n2|b"` (no trailing newline).
   */
  psql(sql: string): Promise<string>;
  /**
   * Stops the server (fast shutdown), keeping its data and port: an outage,
   * for tests of what clients do meanwhile. {@link resume} starts it again.
   */
  pause(): Promise<void>;
  /** Starts a paused server again on the same port, with the same data; resolves once it accepts connections. */
  resume(): Promise<void>;
  /**
   * Stops the server (fast shutdown; SIGINT, then SIGKILL of the postmaster if
   * pg_ctl fails) and removes the temporary directory. Safe to call more
   * than once; call it in `finally`.
   */
  stop(): Promise<void>;
}

/** The binaries of one PostgreSQL major version. */
export interface PostgresBin {
  readonly version: number;
  readonly dir: string;
  readonly initdb: string;
  readonly pgCtl: string;
  readonly postgres: string;
  readonly psql: string;
  readonly pgIsready: string;
  readonly pgBasebackup: string;
}

/** One cluster's files and the OS user that owns them. */
export interface Cluster {
  readonly bin: PostgresBin;
  /** The temporary directory (owned by `osUser`). */
  readonly dir: string;
  readonly dataDir: string;
  /** Unix socket directory (the temporary directory itself). */
  readonly socketDir: string;
  readonly logFile: string;
  /** Superuser name. */
  readonly user: string;
  /** The OS user the server runs as, or null to run as the test's own user. */
  readonly osUser: string | null;
}

/** The output of one command. */
interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

const decoder = new TextDecoder();

/**
 * The binaries of the highest PostgreSQL major version installed, or those in
 * `binDir`. Throws, saying how to install PostgreSQL, if there are none.
 */
export function findPostgresBin(binDir?: string): PostgresBin {
  const missing = () =>
    new Error(
      `PostgreSQL is not installed (no initdb/postgres/psql in ${
        binDir ?? `${PG_ROOT}/<major>/bin`
      }): ` +
        "run `npm test` (scripts/nexus.sh installs it) or `apt-get install postgresql postgresql-client`",
    );
  const complete = (dir: string) =>
    ["initdb", "pg_ctl", "postgres", "psql", "pg_isready"].every((name) =>
      isFile(`${dir}/${name}`)
    );
  if (binDir !== undefined) {
    if (!complete(binDir)) throw missing();
    const version = Number(/\/(\d+)\/bin\/?$/.exec(binDir)?.[1] ?? NaN);
    return binaries(binDir, version);
  }
  let versions: number[] = [];
  try {
    versions = [...Deno.readDirSync(PG_ROOT)]
      .filter((entry) => entry.isDirectory && /^\d+$/.test(entry.name))
      .map((entry) => Number(entry.name))
      .filter((version) => complete(`${PG_ROOT}/${version}/bin`))
      .sort((a, b) => b - a);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  if (versions.length === 0) throw missing();
  return binaries(`${PG_ROOT}/${versions[0]}/bin`, versions[0]);
}

function binaries(dir: string, version: number): PostgresBin {
  return {
    version,
    dir,
    initdb: `${dir}/initdb`,
    pgCtl: `${dir}/pg_ctl`,
    postgres: `${dir}/postgres`,
    psql: `${dir}/psql`,
    pgIsready: `${dir}/pg_isready`,
    pgBasebackup: `${dir}/pg_basebackup`,
  };
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/**
 * Makes a new temporary directory for one cluster under `parentDir` and,
 * when running as root, hands it to the `postgres` OS user. Nothing is in it
 * yet; {@link initCluster} makes the data directory.
 */
export async function createClusterDir(
  bin: PostgresBin,
  options: { user: string; parentDir?: string; name?: string },
): Promise<Cluster> {
  const dir = await Deno.makeTempDir({
    dir: options.parentDir ?? "/tmp",
    prefix: `nexus-pg-${options.name ?? "main"}-`,
  });
  let osUser: string | null = null;
  try {
    // Which process made it: removeStaleClusters removes it once that one is gone.
    await Deno.writeTextFile(`${dir}/${OWNER_FILE}`, `${Deno.pid}\n`);
    // pg_ctl puts paths in a shell command line; Deno's temporary names are safe.
    if (!/^[\w./-]+$/.test(dir)) throw new Error(`unusable directory name for PostgreSQL: ${dir}`);
    // Are we root? The new directory's owner says (Deno.uid() would need the sys
    // permission and /proc/self all permissions, neither in the test set).
    if ((await Deno.stat(dir)).uid === 0) {
      osUser = "postgres";
      const ids = await osUserIds(osUser);
      await Deno.chown(dir, ids.uid, ids.gid);
    }
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
  return {
    bin,
    dir,
    dataDir: `${dir}/data`,
    socketDir: dir,
    logFile: `${dir}/postgres.log`,
    user: options.user,
    osUser,
  };
}

/** The uid and gid of an OS user, from /etc/passwd. */
export async function osUserIds(name: string): Promise<{ uid: number; gid: number }> {
  const passwd = await Deno.readTextFile("/etc/passwd");
  for (const line of passwd.split("\n")) {
    const fields = line.split(":");
    if (fields[0] === name) return { uid: Number(fields[2]), gid: Number(fields[3]) };
  }
  throw new Error(
    `no '${name}' OS user to run PostgreSQL as (root may not): the Debian package makes it; ` +
      "run `npm test` or `apt-get install postgresql`",
  );
}

/**
 * Runs one of the cluster's server commands (initdb, pg_ctl, pg_basebackup) as
 * the cluster's OS user, in its directory (the postgres user may not enter
 * the test's working directory), with a small fixed environment.
 */
export async function runAsOwner(
  cluster: Cluster,
  command: string,
  args: string[],
): Promise<Output> {
  const [program, programArgs] = cluster.osUser === null
    ? [command, args]
    : ["runuser", ["-u", cluster.osUser, "--", command, ...args]];
  const out = await new Deno.Command(program, {
    args: programArgs,
    cwd: cluster.dir,
    clearEnv: true,
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C", TZ: "UTC" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Throws with the command's output unless it succeeded. */
function check(what: string, out: Output): Output {
  if (out.code !== 0) {
    throw new Error(`${what} failed (exit ${out.code}): ${(out.stderr || out.stdout).trim()}`);
  }
  return out;
}

/**
 * initdb: UTF8, C locale, trust authentication, no fsync of the new files;
 * then a pg_hba.conf trusting local (unix socket) and 127.0.0.1 connections,
 * replication ones included.
 */
export async function initCluster(cluster: Cluster): Promise<void> {
  check(
    "initdb",
    await runAsOwner(cluster, cluster.bin.initdb, [
      "--pgdata",
      cluster.dataDir,
      "--username",
      cluster.user,
      "--auth",
      "trust",
      "--encoding",
      "UTF8",
      "--locale",
      "C",
      "--no-sync",
      "--no-instructions",
    ]),
  );
  const hba = [
    "# tests/support/postgres.ts: a throwaway test cluster, trust for local and 127.0.0.1.",
    "local   all             all                     trust",
    "host    all             all     127.0.0.1/32    trust",
    "local   replication     all                     trust",
    "host    replication     all     127.0.0.1/32    trust",
    "",
  ].join("\n");
  // Root writes into the postgres user's files: they keep their owner.
  await Deno.writeTextFile(`${cluster.dataDir}/pg_hba.conf`, hba);
}

/**
 * Appends settings to postgresql.conf (the last occurrence wins). These are
 * the settings shared by a primary and its replicas; the per-server ones are
 * given by {@link startCluster}.
 */
export async function configureCluster(
  cluster: Cluster,
  settings: Record<string, string> = {},
): Promise<void> {
  const lines = Object.entries({ ...TEST_SETTINGS, ...settings })
    .map(([name, value]) => `${name} = ${value}`);
  await Deno.writeTextFile(
    `${cluster.dataDir}/postgresql.conf`,
    `\n# tests/support/postgres.ts\n${lines.join("\n")}\n`,
    { append: true },
  );
}

/**
 * Starts the server with pg_ctl on 127.0.0.1:`port` (and the unix socket in
 * the cluster's directory), waiting until it is up (pg_ctl -w reports a
 * server that exits at once, e.g. on a port taken meanwhile, right away).
 * Returns false if the port was taken, so that the caller can try another.
 */
export async function startCluster(
  cluster: Cluster,
  port: number,
  timeoutMs = 30_000,
): Promise<boolean> {
  const serverOptions = `-c listen_addresses=127.0.0.1 -p ${port} -k ${cluster.socketDir}`;
  // Only this attempt's part of the log tells why it failed.
  const logStart = (await readLog(cluster, Infinity)).length;
  const out = await runAsOwner(cluster, cluster.bin.pgCtl, [
    "start",
    "--pgdata",
    cluster.dataDir,
    "--log",
    cluster.logFile,
    "--options",
    serverOptions,
    "--wait",
    "--timeout",
    String(Math.ceil(timeoutMs / 1000)),
    "--silent",
  ]);
  if (out.code === 0) return true;
  const log = (await readLog(cluster, Infinity)).slice(logStart);
  if (/could not bind|address already in use/i.test(log)) {
    // pg_ctl gave up on it; make sure it is gone before the next attempt.
    await stopCluster(cluster);
    return false;
  }
  await stopCluster(cluster);
  throw new Error(
    `PostgreSQL did not start (pg_ctl exit ${out.code}): ${(out.stderr || out.stdout).trim()}\n` +
      `log ${cluster.logFile}:\n${log}`,
  );
}

/** The last lines of the cluster's server log ("" if there is none). */
export async function readLog(cluster: Cluster, lines = 30): Promise<string> {
  try {
    return (await Deno.readTextFile(cluster.logFile)).trimEnd().split("\n").slice(-lines).join(
      "\n",
    );
  } catch {
    return "";
  }
}

/**
 * Polls pg_isready over TCP until the server at 127.0.0.1:`port` accepts
 * connections (pg_ctl -w has normally waited already: this checks the TCP
 * listener the tests use, and that a replica accepts connections).
 */
export async function waitReady(
  cluster: Cluster,
  port: number,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const out = await new Deno.Command(cluster.bin.pgIsready, {
      args: [
        "-h",
        "127.0.0.1",
        "-p",
        String(port),
        "-U",
        cluster.user,
        "-d",
        "postgres",
        "-t",
        "2",
      ],
      clearEnv: true,
      env: { LC_ALL: "C" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (out.code === 0) return;
    // 1: rejecting connections (starting up), 2: no response, 3: bad arguments.
    if (out.code === 3) {
      check("pg_isready", { code: 3, stdout: "", stderr: decoder.decode(out.stderr) });
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `PostgreSQL on 127.0.0.1:${port} not ready after ${timeoutMs} ms: ` +
          `${decoder.decode(out.stdout).trim()}\nlog ${cluster.logFile}:\n${await readLog(
            cluster,
          )}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The postmaster's pid, from the first line of postmaster.pid (null if none). */
export async function postmasterPid(cluster: Cluster): Promise<number | null> {
  try {
    const first = (await Deno.readTextFile(`${cluster.dataDir}/postmaster.pid`)).split("\n")[0];
    const pid = Number(first);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/**
 * Whether a process runs and is not a zombie. A postmaster started by pg_ctl is
 * reparented to PID 1, which may reap it late (this machine's init does, after
 * a while), so after exiting it can stay a zombie for some time: that counts
 * as gone. /proc is read with `cat`: Deno wants all permissions to read /proc
 * itself.
 */
async function processRuns(pid: number): Promise<boolean> {
  const out = await new Deno.Command("cat", {
    args: [`/proc/${pid}/stat`],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  if (out.code !== 0) return false;
  const stat = decoder.decode(out.stdout);
  const state = stat.slice(stat.lastIndexOf(")") + 2).charAt(0);
  return state !== "Z" && state !== "X";
}

async function exited(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (await processRuns(pid)) {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

/**
 * Stops the server if it runs: `pg_ctl stop -m fast`; if that fails or the
 * postmaster still runs, SIGINT (PostgreSQL's fast shutdown; SIGTERM would be
 * the "smart" one, which waits for clients to leave), then SIGKILL. Never
 * throws for a server that is already gone; throws only if it cannot be
 * killed.
 */
export async function stopCluster(cluster: Cluster, timeoutMs = 15_000): Promise<void> {
  const pid = await postmasterPid(cluster);
  if (pid === null || !(await processRuns(pid))) return;
  await runAsOwner(cluster, cluster.bin.pgCtl, [
    "stop",
    "--pgdata",
    cluster.dataDir,
    "--mode",
    "fast",
    "--wait",
    "--timeout",
    String(Math.ceil(timeoutMs / 1000)),
    "--silent",
  ]).catch(() => undefined);
  if (await exited(pid, 1_000)) return;
  for (const signal of ["SIGINT", "SIGKILL"] as const) {
    try {
      Deno.kill(pid, signal);
    } catch {
      // Gone meanwhile.
    }
    if (await exited(pid, 5_000)) return;
  }
  throw new Error(`PostgreSQL postmaster ${pid} (${cluster.dataDir}) did not exit after SIGKILL`);
}

/** Removes the cluster's temporary directory (the server must be stopped). */
export async function removeCluster(cluster: Cluster): Promise<void> {
  await Deno.remove(cluster.dir, { recursive: true }).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
}

/**
 * Runs SQL with the real psql client over TCP (no ~/.psqlrc, stops at the
 * first error), returning its unaligned, tuples-only output.
 */
export async function runPsql(
  bin: PostgresBin,
  target: { port: number; user: string; database: string },
  sql: string,
): Promise<string> {
  const child = new Deno.Command(bin.psql, {
    args: [
      "--no-psqlrc",
      "--quiet",
      "--no-align",
      "--tuples-only",
      "--set",
      "ON_ERROR_STOP=1",
      "--host",
      "127.0.0.1",
      "--port",
      String(target.port),
      "--username",
      target.user,
      "--dbname",
      target.database,
      "--file",
      "-",
    ],
    clearEnv: true,
    env: { LC_ALL: "C", PGCONNECT_TIMEOUT: "10" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(sql));
  await writer.close();
  const out = await child.output();
  if (out.code !== 0) {
    throw new Error(`psql failed (exit ${out.code}): ${decoder.decode(out.stderr).trim()}`);
  }
  return decoder.decode(out.stdout).replace(/\n$/, "");
}

/** Servers of this process not stopped yet (for the last resorts below). */
const running = new Set<Cluster>();
let lastResortHooked = false;

/**
 * Last resort for a process that ends without calling stop(): kill the
 * postmasters and remove their directories, synchronously (the handlers of
 * "unload", which Deno.exit and a normal end dispatch, cannot wait; nor does
 * Deno wait for anything when an uncaught error ends the process).
 */
function killAllNow(): void {
  for (const cluster of running) {
    try {
      const pid = Number(
        Deno.readTextFileSync(`${cluster.dataDir}/postmaster.pid`).split("\n")[0],
      );
      if (pid > 0) Deno.kill(pid, "SIGKILL");
    } catch {
      // No server, or gone.
    }
    try {
      Deno.removeSync(cluster.dir, { recursive: true });
    } catch {
      // Gone already.
    }
  }
  running.clear();
}

/** An uncaught error ends the process unless a handler prevented that. */
function onUncaught(event: Event): void {
  if (!event.defaultPrevented) killAllNow();
}

function hookLastResorts(): void {
  if (lastResortHooked) return;
  lastResortHooked = true;
  globalThis.addEventListener("unload", killAllNow);
  globalThis.addEventListener("error", onUncaught);
  globalThis.addEventListener("unhandledrejection", onUncaught);
}

/**
 * Stops and removes the clusters under `parentDir` left by test processes
 * that are gone (killed, e.g. Ctrl-C, before they could stop them). A
 * directory without an owner file is being made right now: left alone.
 */
export async function removeStaleClusters(
  bin: PostgresBin,
  options: { osUser: string | null; parentDir?: string },
): Promise<void> {
  const parentDir = options.parentDir ?? "/tmp";
  for await (const entry of Deno.readDir(parentDir)) {
    if (!entry.isDirectory || !entry.name.startsWith("nexus-pg-")) continue;
    const dir = `${parentDir}/${entry.name}`;
    let owner: number;
    try {
      owner = Number(await Deno.readTextFile(`${dir}/${OWNER_FILE}`));
    } catch {
      continue;
    }
    if (!(owner > 0) || owner === Deno.pid || await processRuns(owner)) continue;
    const stale: Cluster = {
      bin,
      dir,
      dataDir: `${dir}/data`,
      socketDir: dir,
      logFile: `${dir}/postgres.log`,
      user: "",
      osUser: options.osUser,
    };
    try {
      await stopCluster(stale);
      await removeCluster(stale);
    } catch {
      // Another process is at it, or it is not ours to remove: leave it.
    }
  }
}

/**
 * A fresh PostgreSQL server on 127.0.0.1 (see the module documentation).
 * Callers must `await stop()` in `finally`.
 */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresServer> {
  const bin = findPostgresBin(options.binDir);
  const user = options.user ?? "nexus";
  const database = options.database ?? "nexus";
  for (const name of [user, database]) {
    // Plain names only: they go unquoted into URLs and quoted into SQL.
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`unusable PostgreSQL name: ${name}`);
  }
  const timeoutMs = options.startTimeoutMs ?? 30_000;
  const cluster = await createClusterDir(bin, { user, parentDir: options.parentDir });
  running.add(cluster);
  hookLastResorts();
  let stopped: Promise<void> | null = null;
  const stop = () => {
    stopped ??= (async () => {
      try {
        await stopCluster(cluster);
      } finally {
        await removeCluster(cluster);
        running.delete(cluster);
      }
    })();
    return stopped;
  };
  try {
    await removeStaleClusters(bin, { osUser: cluster.osUser, parentDir: options.parentDir });
    await initCluster(cluster);
    await configureCluster(cluster, options.settings);
    // freePort's port is free only until someone else takes it: a few tries.
    let port = 0;
    for (let attempt = 1;; attempt++) {
      port = freePort();
      if (await startCluster(cluster, port, timeoutMs)) break;
      if (attempt === 5) throw new Error(`PostgreSQL: no free port after ${attempt} tries`);
    }
    await waitReady(cluster, port, timeoutMs);
    const target = { port, user, database };
    if (database !== "postgres") {
      await runPsql(bin, { port, user, database: "postgres" }, `create database "${database}"`);
    }
    return {
      host: "127.0.0.1",
      port,
      user,
      database,
      url: `postgresql://${user}@127.0.0.1:${port}/${database}`,
      dataDir: cluster.dataDir,
      dir: cluster.dir,
      version: bin.version,
      psql: (sql) => runPsql(bin, target, sql),
      pause: () => stopCluster(cluster),
      async resume() {
        if (!await startCluster(cluster, port, timeoutMs)) {
          throw new Error(`PostgreSQL: port ${port} was taken while the server was paused`);
        }
        await waitReady(cluster, port, timeoutMs);
      },
      stop,
    };
  } catch (error) {
    await stop().catch(() => {});
    throw error;
  }
}
