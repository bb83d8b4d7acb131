/**
 * A service started as a real `deno run` child for cross-process tests:
 * its stdout and stderr are kept line by line (to wait for a banner and to
 * show what happened when a step fails), and it can be stopped politely
 * (SIGTERM, then SIGKILL after a grace period), killed, or frozen
 * (SIGSTOP/SIGCONT: a peer that stops answering without closing, as on a
 * network loss).
 */

const ROOT = new URL("../../", import.meta.url).pathname;

/** Lines of a stream, collected as they come. */
export class Lines {
  readonly lines: string[] = [];
  ended = false;
  readonly done: Promise<void>;
  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      let rest = "";
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        rest += text;
        for (let at = rest.indexOf("\n"); at >= 0; at = rest.indexOf("\n")) {
          this.lines.push(rest.slice(0, at));
          rest = rest.slice(at + 1);
        }
      }
      if (rest !== "") this.lines.push(rest);
    })().catch(() => {}).finally(() => this.ended = true);
  }
  text(last = 60): string {
    return this.lines.slice(-last).join("\n");
  }
  /** The first line (from `from` on) matching `pattern`; null when the stream ends first. */
  async waitFor(pattern: RegExp, ms: number, from = 0): Promise<string | null> {
    const deadline = Date.now() + ms;
    for (;;) {
      const line = this.lines.slice(from).find((l) => pattern.test(l));
      if (line !== undefined) return line;
      if (this.ended) return null;
      if (Date.now() > deadline) throw new Error(`no line matching ${pattern} in ${ms} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** A running child. */
export interface ServiceProcess {
  readonly pid: number;
  readonly stdout: Lines;
  readonly stderr: Lines;
  readonly status: Promise<Deno.CommandStatus>;
  /** The first stdout line matching `pattern` (throws with the output if the child exits first). */
  waitFor(pattern: RegExp, ms?: number): Promise<string>;
  signal(signal: Deno.Signal): void;
  /** SIGTERM, SIGKILL after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number>;
}

/** Starts `deno run -q --no-prompt ...args` in the project root. */
export function spawnDeno(name: string, args: string[]): ServiceProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "--no-prompt", ...args],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = new Lines(child.stdout);
  const stderr = new Lines(child.stderr);
  let stopped: Promise<number> | null = null;
  const service: ServiceProcess = {
    pid: child.pid,
    stdout,
    stderr,
    status: child.status,
    async waitFor(pattern, ms = 30_000) {
      let line: string | null;
      try {
        line = await stdout.waitFor(pattern, ms);
      } catch (error) {
        throw new Error(`${name}: ${(error as Error).message}\n${stdout.text()}\n${stderr.text()}`);
      }
      if (line === null) {
        const status = await child.status;
        await stderr.done;
        throw new Error(
          `${name} exited (${status.code}) first:\n${stdout.text()}\n${stderr.text()}`,
        );
      }
      return line;
    },
    signal(signal) {
      try {
        child.kill(signal);
      } catch { /* already gone */ }
    },
    stop(graceMs = 10_000) {
      return stopped ??= (async () => {
        service.signal("SIGCONT");
        service.signal("SIGTERM");
        const killer = setTimeout(() => service.signal("SIGKILL"), graceMs);
        const status = await child.status;
        clearTimeout(killer);
        await Promise.all([stdout.done, stderr.done]);
        return status.code;
      })();
    },
  };
  return service;
}

/** A free port on 127.0.0.1 (free now; tests use it right away). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Runs curl (silent, errors shown, 15 s at most) and returns what it printed. */
export async function curl(
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command("curl", {
    args: ["-sS", "--max-time", "15", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}
