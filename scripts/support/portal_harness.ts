/**
 * A portal deployment in processes, for tests/portal_backpressure_test.ts,
 * tests/relay_scale_test.ts, scripts/bench_portal.ts and
 * scripts/bench_relay.ts: a relay (`deno run -P=relay relay/main.ts`), a
 * gateway and an edge (scripts/support/portal_peer.ts), each its own
 * process so that each one's resident memory and CPU time can be read from
 * /proc (./process_usage.ts); plus the member files they load, under
 * ./.state/<unique>/ (the relay's permission set reads ./.state and
 * /etc/nexus only).
 *
 * @module
 */
import { issueCredential } from "../../src/credential/credential.ts";
import { fromHex, toHex } from "../../src/encoding/hex.ts";
import { Identity } from "../../src/identity/identity.ts";
import { writeIdentityFile } from "../../src/identity/identity_file.ts";
import { SoftwareSigner } from "../../src/identity/software_signer.ts";
import { parseBanner } from "./banner.ts";
import { freePort } from "./free_port.ts";
import { provisionRelay } from "./relay_state.ts";
import { fileLimitWrap, ROOT, spawnDeno } from "./service_process.ts";

const PEER_SCRIPT = new URL("./portal_peer.ts", import.meta.url).pathname;
/** Lines of a child's stderr kept for error messages (the relay logs every admission). */
const STDERR_KEPT = 60;
/** How long a child has to print its ready line. */
const START_MS = 20_000;
/** How long a child has to exit once asked to, before it is killed. */
const GRACE_MS = 5000;

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
  // The authority's seed is kept (0600) so that the relay can be
  // provisioned from it when it starts (startRelay).
  const caSeed = crypto.getRandomValues(new Uint8Array(32));
  const ca = { identity: await Identity.create(await SoftwareSigner.fromSeed(caSeed.slice())) };
  await Deno.writeTextFile(`${dir}/authority.seed`, toHex(caSeed), { mode: 0o600 });
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
      subjectKey: identity.primaryKey,
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
  /** Its process id (for /proc, see ./process_usage.ts). */
  readonly pid: number;
  /** Stops it; resolves with its exit code. */
  stop(): Promise<number>;
}

/** The relay process. */
export interface RelayService extends Service {
  /** The port it listens on, on 127.0.0.1. */
  readonly port: number;
  /** A counter or gauge without labels from its /metrics. */
  metric(name: string): Promise<number>;
}

/** Options of {@link startRelay}. */
export interface RelayOptions {
  /** Open files the relay may hold (`ulimit -n`, through bash; default: as inherited). */
  fileLimit?: number;
  /**
   * The authority that provisions the relay's credential (default: the one
   * whose seed `dir/authority.seed` holds, as writeDeploymentFiles leaves it).
   */
  ca?: Identity;
}

/**
 * Starts `relay/main.ts` under the `relay` permission set, trusting
 * `dir/authority.json`, with `extra` arguments.
 */
export async function startRelay(
  dir: string,
  extra: string[] = [],
  options: RelayOptions = {},
): Promise<RelayService> {
  const ca = options.ca ?? await Identity.create(
    await SoftwareSigner.fromSeed(
      fromHex((await Deno.readTextFile(`${dir}/authority.seed`)).trim()),
    ),
  );
  const listenPort = freePort();
  const listen = `127.0.0.1:${listenPort}`;
  // A state directory per relay: its credential names the address it listens on.
  const state = `${dir}/relay-${listenPort}`;
  await provisionRelay(state, ca, [listen]);
  const relay = spawnDeno("the relay", [
    "-P=relay",
    "relay/main.ts",
    "--state",
    state,
    "--listen",
    listen,
    "--metrics",
    "127.0.0.1:0",
    "--trust",
    `${dir}/authority.json`,
    ...extra,
  ], {
    wrap: options.fileLimit === undefined ? undefined : fileLimitWrap(options.fileLimit),
    stderr: { keep: STDERR_KEPT },
  });
  const stop = () => relay.stop(GRACE_MS);
  let port: number;
  let metricsAt: string;
  try {
    const banner = parseBanner(await relay.waitFor(/^LISTENING /, START_MS));
    if (banner.metrics === undefined) throw new Error(`no metrics address in ${banner.line}`);
    [port, metricsAt] = [banner.port, banner.metrics];
  } catch (error) {
    await stop();
    throw new Error(`the relay did not start: ${(error as Error).message}`);
  }
  return {
    pid: relay.pid,
    port,
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
  /** Messages its node dropped. */
  dropped: number;
  /** Whether its relay connection had closed. */
  relayClosed: boolean;
  /** Its secure channel's counters (the edge's one channel; null for the gateway). */
  channel: { sent: number; received: number; dropped: number } | null;
  /** Gateway: each outlet's counters, in `--outlet` order. */
  outlets: { sessions: number; denied: number; refused: number; open: number }[];
  /** Edge: each inlet's counters, by outlet name. */
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

/** Starts scripts/support/portal_peer.ts as `mode`; resolves once it is ready. */
export async function startPeer(
  mode: "gateway" | "edge",
  dir: string,
  relayPort: number,
  options: PeerOptions = {},
): Promise<PeerService> {
  const peer = spawnDeno(`the ${mode}`, [
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
  ], { stdin: "piped", stderr: { keep: STDERR_KEPT } });
  const finish = async () => {
    await peer.end(GRACE_MS);
    const stats = peer.stdout.lines.findLast((line) => line.startsWith("STATS "));
    return stats === undefined ? null : JSON.parse(stats.slice("STATS ".length)) as PeerStats;
  };
  let ready: string;
  try {
    ready = await peer.waitFor(/^READY/, START_MS);
  } catch (error) {
    await finish();
    throw new Error(`the ${mode} did not start: ${(error as Error).message}`);
  }
  const rest = ready.slice("READY".length).trim();
  return {
    pid: peer.pid,
    inlets: rest === "" ? {} : JSON.parse(rest) as Record<string, number>,
    finish,
    stop: () => peer.end(GRACE_MS),
  };
}
