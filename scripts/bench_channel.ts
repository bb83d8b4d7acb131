/**
 * Two-process secure channel benchmark. Starts a responder process
 * (scripts/support/channel_peer.ts) and measures, from this process over
 * loopback TCP:
 *
 * - handshakes per second: full XX handshakes with identity and credential
 *   verification on both sides, 32 at a time over 4 TCP connections (8 per
 *   connection: the listener allows 16 unfinished handshakes per source, and
 *   drops the message 1 of a seventeenth); the responder process runs on
 *   its own core, so this is the responder's rate on one core (when it is
 *   the side that saturates);
 * - one-way throughput of 16 KiB and 64 KiB messages and the rate of
 *   100-byte messages through the channel, against the same routed
 *   messages sent over the same TCP connection without a channel (framing
 *   and routing only): the baseline of this run.
 *
 * Usage: deno task bench:channel [--seconds N] [--megabytes N] [--handshakes-only]
 *   [--fresh-peers N] [--profile DIR]
 *
 * By default every handshake presents the same identity, attestation and
 * credential, as a member reconnecting does: the responder verifies their
 * signatures once and the rest of the checks at every handshake.
 * `--fresh-peers N` makes N distinct members first (identity, static key,
 * attestation, credential) and presents each once, so every handshake
 * costs the responder every signature (the rate of new peers); the run
 * stops early when they are used up.
 *
 * `--profile DIR` runs the responder process with `--cpu-prof --cpu-prof-dir DIR`
 * (a V8 CPU profile of the responder, written when it exits);
 * `--handshakes-only` stops after the handshake rate.
 *
 * @module
 */
import { cpuUsage } from "node:process";
import { parseArgs } from "node:util";
import { createChannelIdentity } from "../src/channel/channel_identity.ts";
import { connectSecureChannel } from "../src/channel/handshake.ts";
import { DEFAULT_LIBCRYPTO } from "../src/channel/noise/openssl.ts";
import { issueCredential } from "../src/credential/credential.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { toHex } from "../src/encoding/hex.ts";
import { Identity } from "../src/identity/identity.ts";
import { writeIdentityFile } from "../src/identity/identity_file.ts";
import { SoftwareSigner } from "../src/identity/software_signer.ts";
import { Node } from "../src/routing/node.ts";
import type { Route } from "../src/routing/routed_message.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import { readBanner } from "./support/banner.ts";
import { cpuSeconds } from "./support/process_usage.ts";

function progress(line: string): void {
  console.error(`[bench] ${line}`);
}

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    megabytes: { type: "string", default: "256" },
    "handshakes-only": { type: "boolean", default: false },
    "fresh-peers": { type: "string", default: "0" },
    profile: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(
    "Usage: deno task bench:channel [--seconds N] [--megabytes N] [--handshakes-only] " +
      "[--fresh-peers N] [--profile DIR]",
  );
  Deno.exit(0);
}
const seconds = Number(values.seconds);
const megabytes = Number(values.megabytes);
const profile = values.profile === undefined
  ? []
  : ["--cpu-prof", `--cpu-prof-dir=${values.profile}`];

const dir = await Deno.makeTempDir({ prefix: "nexus-bench-" });
const seed = crypto.getRandomValues(new Uint8Array(32));
const ca = await Identity.create(await SoftwareSigner.fromSeed(seed));
await writeIdentityFile(`${dir}/authority.json`, ca.history);
await Deno.writeTextFile(`${dir}/authority.seed`, toHex(seed), { mode: 0o600 });
const peer = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "-q",
    "--no-prompt",
    ...profile,
    `--allow-read=${dir}`,
    "--allow-net=127.0.0.1",
    // As the gateway's set: OpenSSL's libcrypto, for the handshake's primitives
    // (src/channel/noise/openssl.ts). Without it the responder uses the portable ones.
    `--allow-ffi=${DEFAULT_LIBCRYPTO}`,
    new URL("./support/channel_peer.ts", import.meta.url).pathname,
    `${dir}/authority.json`,
    `${dir}/authority.seed`,
  ],
  stdin: "piped",
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const port = (await readBanner(peer)).port;

const node = new Node({ name: "bench" });
const transport = new TcpTransport(node);
const me = await Identity.create(await SoftwareSigner.generate());
const credential = await issueCredential(ca, {
  subject: me.identifier,
  subjectKey: me.primaryKey,
  attributes: { role: "edge" },
});
const local = await createChannelIdentity(me, { credentials: () => [credential.encoded] });
/** Distinct members, each presented once (`--fresh-peers`). */
const fresh: Awaited<ReturnType<typeof createChannelIdentity>>[] = [];
for (let i = 0; i < Number(values["fresh-peers"]); i++) {
  if (i === 0) progress(`making ${values["fresh-peers"]} members`);
  const member = await Identity.create(await SoftwareSigner.generate());
  const issued = await issueCredential(ca, {
    subject: member.identifier,
    subjectKey: member.primaryKey,
    attributes: { role: "edge" },
  });
  fresh.push(await createChannelIdentity(member, { credentials: () => [issued.encoded] }));
}
const policy = { trust: new TrustStore([ca]), requiredAttributes: { role: "gateway" } };
const conn = await transport.connect({ hostname: "127.0.0.1", port });
/** Concurrent handshakes, and how many share one TCP connection (one source at the listener). */
const CONCURRENT = 32;
const PER_CONNECTION = 8;
const conns = [conn];
while (conns.length < CONCURRENT / PER_CONNECTION) {
  conns.push(await transport.connect({ hostname: "127.0.0.1", port }));
}

// Handshakes per second.
progress(
  `handshakes for ${seconds} s, ${CONCURRENT} at a time over ${conns.length} connections`,
);
let handshakes = 0;
const responderCpuBefore = await cpuSeconds(peer.pid);
const initiatorCpuBefore = cpuUsage();
const freshPeers = fresh.length > 0;
const started = performance.now();
const until = started + seconds * 1000;
await Promise.all(Array.from({ length: CONCURRENT }, async (_, i) => {
  const via = conns[i % conns.length];
  while (performance.now() < until) {
    const presented = freshPeers ? fresh.pop() : local;
    if (presented === undefined) break;
    const channel = await connectSecureChannel({
      node,
      route: [via.address, "api"],
      local: presented,
      policy,
    });
    handshakes++;
    await channel.close();
  }
}));
const elapsed = (performance.now() - started) / 1000;
const responderCpu = await cpuSeconds(peer.pid) - responderCpuBefore;
const initiatorUsage = cpuUsage(initiatorCpuBefore);
const initiatorCpu = (initiatorUsage.user + initiatorUsage.system) / 1e6;
const handshakeRate = handshakes / elapsed;
console.log(
  `handshakes per second (responder process on its own core): ${handshakeRate.toFixed(0)}` +
    (freshPeers ? ` (${handshakes} distinct members, each once)` : ""),
);
// On a shared machine the wall-clock rate also depends on what else runs; the
// responder's CPU time per handshake does much less.
console.log(
  `responder CPU: ${(responderCpu / elapsed * 100).toFixed(0)}% of a core, ` +
    `${(responderCpu / handshakes * 1e6).toFixed(0)} µs per handshake ` +
    `(${(handshakes / responderCpu).toFixed(0)} per CPU second); initiators (this process): ` +
    `${(initiatorCpu / elapsed * 100).toFixed(0)}% of a core`,
);

async function stop(): Promise<void> {
  await transport.close();
  await peer.stdin.close();
  await peer.status;
  await peer.stdout.cancel().catch(() => {});
  await Deno.remove(dir, { recursive: true });
}
if (values["handshakes-only"]) {
  await stop();
  Deno.exit(0);
}

// Throughput: the same messages through the channel and around it.
const counts: string[] = [];
let answered = Promise.withResolvers<void>();
node.register("counted", (m) => {
  counts.push(new TextDecoder().decode(m.payload));
  answered.resolve();
});

async function push(first: Route, size: number, total: number): Promise<number> {
  const payload = crypto.getRandomValues(new Uint8Array(size));
  const count = Math.ceil(total / size);
  const inflight = new Set<Promise<unknown>>();
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const sent = node.route({ onward: [...first, "sink"], return: [], payload });
    inflight.add(sent);
    sent.then(() => inflight.delete(sent));
    if (inflight.size >= 8) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  answered = Promise.withResolvers<void>();
  await node.route({ onward: [...first, "sink"], return: ["counted"], payload: new Uint8Array(0) });
  await answered.promise;
  const elapsed = (performance.now() - started) / 1000;
  const received = Number(counts.at(-1));
  if (received !== count * size) throw new Error(`sink counted ${received}, sent ${count * size}`);
  return elapsed;
}

const channel = await connectSecureChannel({ node, route: [conn.address, "api"], local, policy });
const rows: string[] = [];
for (const size of [16 * 1024, 64 * 1024]) {
  const total = megabytes * 1024 * 1024;
  progress(`${megabytes} MiB in ${size / 1024} KiB messages, plain then through the channel`);
  const plain = await push([conn.address], size, total);
  const secure = await push([channel.address], size, total);
  const mb = total / 1e6;
  rows.push(
    `| ${size / 1024} KiB messages | ${(mb / plain).toFixed(0)} MB/s | ${
      (mb / secure).toFixed(0)
    } MB/s | ${(plain / secure).toFixed(2)} |`,
  );
}
{
  const count = 100_000;
  progress(`${count} messages of 100 bytes, plain then through the channel`);
  const plain = await push([conn.address], 100, count * 100);
  const secure = await push([channel.address], 100, count * 100);
  rows.push(
    `| 100-byte messages | ${(count / plain).toFixed(0)} msg/s | ${
      (count / secure).toFixed(0)
    } msg/s | ${(plain / secure).toFixed(2)} |`,
  );
}
await channel.close();

console.log(
  "| one way, two processes | baseline: routed TCP, no channel | secure channel | ratio |",
);
console.log("| --- | --- | --- | --- |");
for (const row of rows) console.log(row);

await stop();
