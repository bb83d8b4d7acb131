/**
 * A service started as a real `deno run` child, for the local stack
 * (scripts/stack.ts), benchmarks and cross-process tests: its stdout and
 * stderr are collected line by line (to wait for a banner and to show what
 * happened when a step fails), and it can be stopped politely (SIGTERM,
 * then SIGKILL after a grace period), ended by closing its stdin, killed,
 * or frozen (SIGSTOP/SIGCONT: a peer that stops answering without closing,
 * as on a network loss).
 *
 * Nothing here needs a permission until it is called, and spawning needs
 * only the run permission for the Deno binary (and for `wrap`'s command).
 *
 * @module
 */
import { deadline, settlesWithin } from "./deadline.ts";
import { Lines, type LinesOptions } from "./lines.ts";

/** The repository root: children run there unless told otherwise. */
export const ROOT: string = new URL("../../", import.meta.url).pathname;

/** Options of {@link spawnDeno}. */
export interface SpawnOptions {
  /** The Deno binary to run (default: this process's own, `Deno.execPath()`). */
  deno?: string;
  /** The child's working directory (default: the repository root). */
  cwd?: string;
  /** Environment variables added to the child's (setting them needs no env permission). */
  env?: Record<string, string>;
  /**
   * The child's stdin: "null" (default), or "piped" for a child that runs
   * until its stdin closes (see {@link ServiceProcess.end}).
   */
  stdin?: "null" | "piped";
  /**
   * A command line that runs `deno run …` for the child, which it gets as
   * its last arguments, e.g. {@link fileLimitWrap}. It should `exec` them,
   * so that the child's pid is Deno's.
   */
  wrap?: string[];
  /** How stdout is collected. */
  stdout?: LinesOptions;
  /** How stderr is collected. */
  stderr?: LinesOptions;
}

/** Options of {@link ServiceProcess.stop}. */
export interface StopOptions {
  /** Called when the grace period has passed, just before SIGKILL. */
  onKill?: () => void;
  /** Wait at most this long for stdout and stderr to end after the exit (default: until they do). */
  drainMs?: number;
}

/**
 * A wrap ({@link SpawnOptions.wrap}) that runs the child with `limit` open
 * files allowed (`ulimit -n`, which cannot exceed `ulimit -Hn`; exit code 97
 * when it cannot be raised). Needs the run permission for `bash`.
 */
export function fileLimitWrap(limit: number): string[] {
  return [
    "bash",
    "-c",
    `ulimit -n ${limit} || { echo "cannot raise ulimit -n to ${limit} (hard limit $(ulimit -Hn))" >&2; exit 97; }; exec "$@"`,
    "bash",
  ];
}

/** A running `deno run` child; start one with {@link spawnDeno}. */
export class ServiceProcess {
  /** What error messages call it. */
  readonly name: string;
  /** Its process id. */
  readonly pid: number;
  /** Its stdout, line by line. */
  readonly stdout: Lines;
  /** Its stderr, line by line. */
  readonly stderr: Lines;
  /** Resolves when it has exited. */
  readonly status: Promise<Deno.CommandStatus>;
  #exited: Deno.CommandStatus | null = null;
  #child: Deno.ChildProcess;
  #stopped: Promise<number> | null = null;

  /** Spawns `deno run -q --no-prompt ...args`; see {@link spawnDeno}. */
  constructor(name: string, args: string[], options: SpawnOptions = {}) {
    this.name = name;
    const deno = options.deno ?? Deno.execPath();
    const command = [...options.wrap ?? [], deno, "run", "-q", "--no-prompt", ...args];
    this.#child = new Deno.Command(command[0], {
      args: command.slice(1),
      cwd: options.cwd ?? ROOT,
      env: options.env,
      stdin: options.stdin ?? "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#child.pid;
    this.stdout = new Lines(this.#child.stdout, options.stdout);
    this.stderr = new Lines(this.#child.stderr, options.stderr);
    this.status = this.#child.status.then((status) => {
      this.#exited = status;
      return status;
    });
  }

  /** How it exited; null while it runs. */
  get exited(): Deno.CommandStatus | null {
    return this.#exited;
  }

  /** Resolves once stdout and stderr have both ended. */
  get drained(): Promise<void> {
    return Promise.all([this.stdout.done, this.stderr.done]).then(() => {});
  }

  /**
   * The first stdout line matching `pattern`.
   * @throws {Error} with its output, if it exits first or `ms` pass.
   */
  async waitFor(pattern: RegExp, ms = 30_000): Promise<string> {
    let line: string | null;
    try {
      line = await this.stdout.waitFor(pattern, ms);
    } catch (error) {
      throw new Error(
        `${this.name}: ${(error as Error).message}\n${this.stdout.text()}\n${this.stderr.text()}`,
      );
    }
    if (line === null) {
      const status = await this.status;
      await this.stderr.done;
      throw new Error(
        `${this.name} exited (${status.code}) first:\n${this.stdout.text()}\n${this.stderr.text()}`,
      );
    }
    return line;
  }

  /**
   * Resolves at its next line on stdout or stderr, when it exits, or after
   * `ms`, whichever comes first.
   */
  async changed(ms: number): Promise<void> {
    await deadline(
      Promise.race([this.stdout.changed(), this.stderr.changed(), this.status]),
      ms,
    ).catch(() => {});
  }

  /** Sends it `signal` (nothing if it has exited). */
  signal(signal: Deno.Signal): void {
    if (this.#exited !== null) return;
    try {
      this.#child.kill(signal);
    } catch { /* it just exited */ }
  }

  /** SIGKILL. */
  kill(): void {
    this.signal("SIGKILL");
  }

  /** Freezes it (SIGSTOP), or lets it run again (SIGCONT). */
  freeze(frozen = true): void {
    this.signal(frozen ? "SIGSTOP" : "SIGCONT");
  }

  /**
   * SIGTERM (after a SIGCONT, should it be frozen), SIGKILL after `graceMs`;
   * resolves with the exit code once it has exited and its output has
   * ended. Once stopping (or ending), later calls get the same promise.
   */
  stop(graceMs = 10_000, options: StopOptions = {}): Promise<number> {
    return this.#stopped ??= this.#exit(
      () => {
        this.freeze(false);
        this.signal("SIGTERM");
      },
      graceMs,
      options,
    );
  }

  /**
   * Closes its stdin (for a child that runs until stdin closes), SIGKILL
   * after `graceMs`; resolves like {@link stop}. Needs `stdin: "piped"`.
   */
  end(graceMs = 10_000, options: StopOptions = {}): Promise<number> {
    return this.#stopped ??= this.#exit(
      () => {
        this.#child.stdin.close().catch(() => {});
      },
      graceMs,
      options,
    );
  }

  async #exit(begin: () => void, graceMs: number, options: StopOptions): Promise<number> {
    begin();
    const killer = setTimeout(() => {
      if (this.#exited !== null) return;
      options.onKill?.();
      this.kill();
    }, graceMs);
    const status = await this.status;
    clearTimeout(killer);
    if (options.drainMs === undefined) await this.drained;
    else await settlesWithin(this.drained, options.drainMs);
    return status.code;
  }
}

/**
 * Starts `deno run -q --no-prompt ...args` (in the repository root unless
 * `options.cwd` says otherwise); `name` is what error messages call it.
 */
export function spawnDeno(
  name: string,
  args: string[],
  options: SpawnOptions = {},
): ServiceProcess {
  return new ServiceProcess(name, args, options);
}
