/**
 * A portal deployment in processes, for tests/portal_backpressure_test.ts
 * and scripts/bench_portal.ts: a relay (`deno run -P=relay relay/main.ts`),
 * a gateway and an edge (tests/support/portal_peer.ts), each its own
 * process so that each one's resident memory and CPU time can be read from
 * /proc; plus the member files they load, under ./.state/<unique>/ (the
 * relay's permission set reads ./.state and /etc/nexus only).
 *
 * /proc is read through `cat` (the run permission): Deno 2.9 wants
 * --allow-all to read anything under /proc.
 *
 * @module
 */
import { issueCredential } from "../../src/credential/credential.ts";
import { toHex } from "../../src/encoding/hex.ts";
import { Identity } from "../../src/identity/identity.ts";
import { writeIdentityFile } from "../../src/identity/identity_file.ts";
import { SoftwareSigner } from "../../src/identity/software_signer.ts";
import { authority } from "../../src/testdata/channel_fixtures.ts";

/** The repository root (the relay's permission set is relative to it). */
export const ROOT: string = new URL("../../", import.meta.url).pathname;
const PEER_SCRIPT = new URL("./portal_peer.ts", import.meta.url).pathname;

/** Reads lines from a child's stdout. */
export function lineReader(stream: ReadableStream<Uint8Array>): {
  next(): Promise<string | null>;
  cancel(): Promise<void>;
} {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  return {
    async next() {
      while (!buffered.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) return null;
        buffered += value;
      }
      const at = buffered.indexOf("\n");
      const line = buffered.slice(0, at);
      buffered = buffered.slice(at + 1);
      return line;
    },
    cancel: () => reader.cancel().catch(() => {}),
  };
}

/** Drains a child's stderr, keeping its last 4 KiB for error messages. */
function drain(stream: ReadableStream<Uint8Array>): { tail(): string; done: Promise<void> } {
  let tail = "";
  const done = stream.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({
      write(chunk) {
        tail = (tail + chunk).slice(-4096);
      },
    }),
  ).catch(() => {});
  return { tail: () => tail, done };
}

/** Resolves with `promise`, or rejects after `ms` saying `what` timed out. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A fresh directory `./.state/<prefix>-<uuid>` holding an authority's
 * identity file (`authority.json`) and, for the gateway (`role: gateway`,
 * `relay: gw`) and the edge (`role: edge`), an identity file, an Ed25519
 * seed (hex, mode 0600) and a credential from that authority (hex). The
 * authority is made by the test fixtures' `authority()`.
 */
export async function writeDeploymentFiles(prefix: string): Promise<string> {
  const dir = `${ROOT}.state/${prefix}-${crypto.randomUUID()}`;
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const ca = await authority();
  await writeIdentityFile(`${dir}/authority.json`, ca.identity.history);
  const members: [string, Record<string, unknown>][] = [
    ["gateway", { role: "gateway", relay: "gw" }],
    ["edge", { role: "edge", customer_id: "cust_001" }],
  ];
  for (const [name, attributes] of members) {
    const seed = crypto.getRandomValues(new Uint8Array(32));
    const identity = await Identity.create(await SoftwareSigner.fromSeed(seed.slice()));
    const credential = await issueCredential(ca.identity, {
      subject: identity.identifier,
      attributes,
    });
    await writeIdentityFile(`${dir}/${name}.json`, identity.history);
    await Deno.writeTextFile(`${dir}/${name}.seed`, toHex(seed), { mode: 0o600 });
    await Deno.writeTextFile(`${dir}/${name}.credential`, toHex(credential.encoded));
    seed.fill(0);
  }
  return dir;
}

/** A child process of the deployment. */
export interface Service {
  readonly pid: number;
  /** Stops it; resolves with its exit code. */
  stop(): Promise<number>;
}

/** The relay process. */
export interface RelayService extends Service {
  readonly port: number;
  /** A counter or gauge without labels from its /metrics. */
  metric(name: string): Promise<number>;
}

/** Starts `relay/main.ts` under the `relay` permission set, trusting `dir/authority.json`. */
export async function startRelay(dir: string, extra: string[] = []): Promise<RelayService> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-q",
      "--no-prompt",
      "-P=relay",
      "relay/main.ts",
      "--listen",
      "127.0.0.1:0",
      "--metrics",
      "127.0.0.1:0",
      "--trust",
      `${dir}/authority.json`,
      ...extra,
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = drain(child.stderr);
  const lines = lineReader(child.stdout);
  let stopped: Promise<number> | null = null;
  const stop = () =>
    stopped ??= (async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      const killer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 5000);
      const status = await child.status;
      clearTimeout(killer);
      await lines.cancel();
      await stderr.done;
      return status.code;
    })();
  const banner = await within(lines.next(), 20_000, "relay start").catch(() => null);
  const match = banner && /^LISTENING 127\.0\.0\.1:(\d+) metrics=(127\.0\.0\.1:\d+)$/.exec(banner);
  if (!match) {
    await stop();
    throw new Error(`the relay did not start: ${JSON.stringify(banner)}\n${stderr.tail()}`);
  }
  const metricsAt = match[2];
  return {
    pid: child.pid,
    port: Number(match[1]),
    async metric(name) {
      const text = await (await fetch(`http://${metricsAt}/metrics`)).text();
      const line = text.split("\n").find((l) => l.startsWith(`${name} `));
      if (line === undefined) throw new Error(`no ${name} in the relay's /metrics`);
      return Number(line.slice(name.length + 1));
    },
    stop,
  };
}

/** Counters a portal peer prints when it stops. */
export interface PeerStats {
  dropped: number;
  relayClosed: boolean;
  channel: { sent: number; received: number; dropped: number } | null;
  outlets: { sessions: number; denied: number; refused: number; open: number }[];
  inlets: Record<string, { sessions: number; refused: number; open: number }>;
}

/** A gateway or edge process. */
export interface PeerService extends Service {
  /** For an edge: inlet ports by outlet name. */
  readonly inlets: Record<string, number>;
  /** Closes its stdin; resolves with the counters it printed (null if none). */
  finish(): Promise<PeerStats | null>;
}

/** Options of {@link startPeer}. */
export interface PeerOptions {
  /** Gateway: outlet name → backend port on 127.0.0.1. */
  outlets?: Record<string, number>;
  /** Edge: outlet names to open inlets for. */
  inlets?: string[];
  /** Credit window per session and direction (default the portal's). */
  window?: number;
  /** Extra V8 flags, e.g. `--max-semi-space-size=…` (default none). */
  v8Flags?: string[];
}

/** Starts tests/support/portal_peer.ts as `mode`; resolves once it is ready. */
export async function startPeer(
  mode: "gateway" | "edge",
  dir: string,
  relayPort: number,
  options: PeerOptions = {},
): Promise<PeerService> {
  const args = [
    "run",
    "-q",
    "--no-prompt",
    `--allow-read=${dir}`,
    "--allow-net=127.0.0.1",
    ...(options.v8Flags?.length ? [`--v8-flags=${options.v8Flags.join(",")}`] : []),
    PEER_SCRIPT,
    mode,
    "--dir",
    dir,
    "--relay",
    String(relayPort),
    ...Object.entries(options.outlets ?? {}).flatMap(([name, port]) => [
      "--outlet",
      `${name}=${port}`,
    ]),
    ...(options.inlets ?? []).flatMap((name) => ["--inlet", name]),
    ...(options.window === undefined ? [] : ["--window", String(options.window)]),
  ];
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = drain(child.stderr);
  const lines = lineReader(child.stdout);
  let finished: Promise<PeerStats | null> | null = null;
  const finish = () =>
    finished ??= (async () => {
      await child.stdin.close().catch(() => {});
      const killer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 5000);
      let stats: PeerStats | null = null;
      for (let line = await lines.next(); line !== null; line = await lines.next()) {
        if (line.startsWith("STATS ")) stats = JSON.parse(line.slice(6)) as PeerStats;
      }
      await child.status;
      clearTimeout(killer);
      await stderr.done;
      return stats;
    })();
  const ready = await within(lines.next(), 20_000, `${mode} start`).catch(() => null);
  if (ready === null || !ready.startsWith("READY")) {
    await finish();
    throw new Error(`the ${mode} did not start: ${JSON.stringify(ready)}\n${stderr.tail()}`);
  }
  const rest = ready.slice("READY".length).trim();
  return {
    pid: child.pid,
    inlets: rest === "" ? {} : JSON.parse(rest) as Record<string, number>,
    finish,
    stop: async () => {
      await finish();
      return (await child.status).code;
    },
  };
}

/** Output of a short command (Deno wants --allow-all to read /proc; `cat` reads it). */
export async function run(command: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "null" }).output();
  if (!out.success) throw new Error(`${command} ${args.join(" ")} failed`);
  return new TextDecoder().decode(out.stdout);
}

/** Resident memory of a process, KiB: now (VmRSS) and its peak so far (VmHWM). */
export interface Memory {
  rss: number;
  hwm: number;
}

/** Memory of each of `pids`, read with one `cat` of their /proc status files. */
export async function memoryOf(pids: number[]): Promise<Map<number, Memory>> {
  const text = await run("cat", pids.map((pid) => `/proc/${pid}/status`));
  const result = new Map<number, Memory>();
  for (const status of text.split(/^(?=Name:)/m)) {
    const field = (name: string) =>
      Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? NaN);
    const pid = field("Pid");
    if (Number.isFinite(pid)) result.set(pid, { rss: field("VmRSS"), hwm: field("VmHWM") });
  }
  return result;
}

/** CPU seconds (user + system) a process has used. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await run("cat", [`/proc/${pid}/stat`]);
  // Fields after the command name (which may hold spaces) start at state.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on Linux everywhere). */
const CLOCK_TICKS = 100;
