/**
 * Two-process secure channel benchmark. Starts a responder process
 * (scripts/support/channel_peer.ts) and measures, from this process over
 * loopback TCP:
 *
 * - handshakes per second: full XX handshakes with identity and credential
 *   verification on both sides, 32 at a time; the responder process runs on
 *   its own core, so this is the responder's rate on one core (when it is
 *   the side that saturates);
 * - one-way throughput of 16 KiB and 64 KiB messages and the rate of
 *   100-byte messages through the channel, against the same routed
 *   messages sent over the same TCP connection without a channel (framing
 *   and routing only): the baseline of this run.
 *
 * Usage: deno task bench:channel [--seconds N] [--megabytes N]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createChannelIdentity } from "../src/channel/channel_identity.ts";
import { connectSecureChannel } from "../src/channel/handshake.ts";
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

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    megabytes: { type: "string", default: "256" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log("Usage: deno task bench:channel [--seconds N] [--megabytes N]");
  Deno.exit(0);
}
const seconds = Number(values.seconds);
const megabytes = Number(values.megabytes);

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
    `--allow-read=${dir}`,
    "--allow-net=127.0.0.1",
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
const policy = { trust: new TrustStore([ca]), requiredAttributes: { role: "gateway" } };
const conn = await transport.connect({ hostname: "127.0.0.1", port });

function progress(line: string): void {
  console.error(`[bench] ${line}`);
}

// Handshakes per second.
progress(`handshakes for ${seconds} s, 32 at a time`);
let handshakes = 0;
const until = performance.now() + seconds * 1000;
await Promise.all(Array.from({ length: 32 }, async () => {
  while (performance.now() < until) {
    const channel = await connectSecureChannel({
      node,
      route: [conn.address, "api"],
      local,
      policy,
    });
    handshakes++;
    await channel.close();
  }
}));
const handshakeRate = handshakes / seconds;

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
  `handshakes per second (responder process on its own core): ${handshakeRate.toFixed(0)}`,
);
console.log(
  "| one way, two processes | baseline: routed TCP, no channel | secure channel | ratio |",
);
console.log("| --- | --- | --- | --- |");
for (const row of rows) console.log(row);

await transport.close();
await peer.stdin.close();
await peer.status;
await peer.stdout.cancel().catch(() => {});
await Deno.remove(dir, { recursive: true });
