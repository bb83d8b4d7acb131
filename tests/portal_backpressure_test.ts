/**
 * Portal backpressure across processes: pushing 1 GiB into an inlet whose
 * backend reads slowly keeps the memory of edge, relay and gateway bounded.
 *
 * Deployment, each piece its own process so that each one's resident memory
 * is its own (tests/support/portal_harness.ts):
 *
 * - a relay: `deno run -P=relay relay/main.ts`, trusting an authority made
 *   here (its identity file under ./.state/<unique>/);
 * - a gateway (tests/support/portal_peer.ts): node + TcpTransport +
 *   connectRelay + registerAlias("gw") + listenSecureChannels + an outlet
 *   `slow` to the backend below;
 * - an edge (same script): node + TcpTransport + connectRelay + a secure
 *   channel along [relay connection, "forward.gw", "api"] + an inlet for
 *   `slow`;
 * - this process: the backend (a TCP server reading at {@link BACKEND_RATE}
 *   at most: after each read it sleeps until its byte count is back on
 *   schedule) and the writer (a TCP client of the inlet).
 *
 * The writer pushes {@link PUSH_BYTES} = 1 GiB in 1 MiB writes, each MiB
 * numbered in its first 8 bytes, keeping a count and a running SHA-256;
 * the backend keeps its own; they must agree. Before that, a 64 MiB push at
 * full speed warms up every process (JIT, V8 heap sizing, buffer pools);
 * the baseline is each process's VmRSS after it. During the push, VmRSS of
 * the three processes is sampled every {@link SAMPLE_MS} ms (one `cat` of
 * the three /proc/<pid>/status files: Deno 2.9 wants --allow-all to read
 * /proc itself), and VmHWM (the kernel's record of the peak) is read after.
 *
 * What the design holds in memory per process, for one session (live data):
 *
 * - edge: the session's 64 KiB read buffer and the one DATA message being
 *   sent (the read loop awaits each send): its payload, the routed message,
 *   the sealed record and the transport frame, a few 64 KiB copies, and
 *   the transport's 64 KiB write buffer. Under 1 MiB.
 * - relay: the frame being read and its rewritten copy being written, per
 *   direction (relay.ts): 2 × 64 KiB plus 4 KiB read and 16 KiB write
 *   buffers. Under 1 MiB.
 * - gateway: the channel's receive pipeline ({@link RECEIVE_PIPELINE} = 8
 *   records of about 64 KiB, ciphertext and plaintext), the session's queue
 *   (at most the credit it granted: {@link DEFAULT_WINDOW} = 256 KiB), the
 *   transport's 64 KiB buffers. About 1.5 MiB.
 *
 * The window bounds what is in flight between inlet and outlet: at most
 * 256 KiB per direction per session, whatever the push size. What else is
 * in flight waits in kernel socket buffers (writer → inlet and outlet →
 * backend), which are not in any process's resident set.
 *
 * Resident memory grows by more than that live data, and not because of
 * it: every 64 KiB chunk passes through about five fresh ArrayBuffers in
 * each endpoint (payload, routed message, sealed record, frame; the relay
 * makes one), freed only when V8 collects them. Young ones go in
 * scavenges; the rest wait for a full collection, which V8 starts once
 * external (ArrayBuffer) memory has grown 64 MiB past its level at the last
 * one (kExternalAllocationSoftLimit). So dead buffers can reach about
 * 64 MiB, on top of V8's young generation (new space, about 16 MiB here)
 * and the live data (≤ 2 MiB): {@link RSS_GROWTH_BOUND_KIB} = 96 MiB per
 * process is that ceiling, rounded up.
 *
 * Measured on this machine (2 cores; 8 runs alone, one inside the whole
 * suite run in parallel): growth over the post-warm-up baseline (peak of
 * the samples and of VmHWM) was edge 35-42 MiB, gateway 25-33 MiB, relay
 * 2-8 MiB; with 256 MiB pushed, 14, 7 and 5 MiB; with 2 GiB at 128 MiB/s,
 * 40, 31 and 5 MiB; at full speed (about 100 MB/s) the same as at 64 MiB/s:
 * a plateau, not a leak. For scale: RSS once connected is about 66 MiB
 * (edge, gateway) and 56 MiB (relay), about 100, 83 and 75 MiB after the
 * warm-up.
 *
 * Without backpressure the memory is not bounded at all: checked by
 * mutating a copy of portal.ts so that a session grants credit as DATA
 * arrives rather than once it is written out. The gateway's queue then
 * holds what the writer is ahead of the backend: in two runs its RSS grew
 * by 325 and 406 MiB, the writer got 322 and 381 MiB ahead and finished
 * after 11.0 and 10.1 s instead of 15.8 s (all three assertions fail).
 *
 * The writer must also be held back: it cannot finish before the backend
 * has read all but what the kernel buffers and the window hold, so its
 * push takes at least PUSH_BYTES / BACKEND_RATE × 0.8; and the bytes it has
 * written but the backend not yet read never exceed the window plus the
 * most the two end sockets can buffer (tcp_wmem + tcp_rmem maxima each,
 * read from /proc/sys) plus one write.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { RECEIVE_PIPELINE } from "../src/channel/secure_channel.ts";
import { DEFAULT_WINDOW } from "../src/portal/portal.ts";
import {
  type PeerService,
  type RelayService,
  startPeer,
  startRelay,
  writeDeploymentFiles,
} from "../scripts/support/portal_harness.ts";
import { memoryOf } from "../scripts/support/process_usage.ts";

const MiB = 1024 * 1024;
/** Bytes pushed through the slow backend. */
const PUSH_BYTES = 1024 * MiB;
/** Bytes pushed at full speed first (warm-up). */
const WARM_BYTES = 64 * MiB;
/** The backend's read rate, bytes per second (the pipeline does about 110 MB/s here). */
const BACKEND_RATE = 64 * MiB;
/** One write of the writer. */
const WRITE_BYTES = MiB;
/** Memory sampling period, ms. */
const SAMPLE_MS = 50;
/** Most any one process's resident memory may grow over its baseline, KiB (see above). */
const RSS_GROWTH_BOUND_KIB = 96 * 1024;

/** Longest the slow push may take before the test fails rather than hangs. */
const PUSH_DEADLINE_MS = 120_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `promise`, or a rejection after `ms`. */
async function deadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Output of `cat` (Deno 2.9 wants --allow-all to read /proc and /proc/sys). */
async function cat(path: string): Promise<string> {
  const out = await new Deno.Command("cat", { args: [path], stdout: "piped" }).output();
  if (!out.success) throw new Error(`cannot read ${path}`);
  return new TextDecoder().decode(out.stdout);
}

/** The largest buffer, bytes, a TCP socket may have (third field of tcp_rmem / tcp_wmem). */
async function tcpBufferMax(which: "rmem" | "wmem"): Promise<number> {
  return Number((await cat(`/proc/sys/net/ipv4/tcp_${which}`)).trim().split(/\s+/)[2]);
}

/**
 * The backend: a TCP server that reads each connection at `state.rate`
 * bytes per second at most (after each read it sleeps until its count is
 * back on schedule), hashing what it reads, and closes it at end of
 * stream. One session at a time; `reset` prepares the next.
 */
function startBackend() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const state = {
    rate: Infinity,
    received: 0,
    hash: createHash("sha256"),
    done: Promise.withResolvers<{ bytes: number; sha256: string }>(),
  };
  const reset = (rate: number) => {
    state.rate = rate;
    state.received = 0;
    state.hash = createHash("sha256");
    state.done = Promise.withResolvers();
  };
  const serve = async (conn: Deno.Conn) => {
    const buffer = new Uint8Array(MiB);
    const started = performance.now();
    const { hash, done } = state;
    try {
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null) break;
        hash.update(buffer.subarray(0, n));
        state.received += n;
        const due = started + state.received / state.rate * 1000;
        const now = performance.now();
        if (due > now) await sleep(due - now);
      }
      done.resolve({ bytes: state.received, sha256: hash.digest("hex") });
    } catch (error) {
      done.reject(error);
    } finally {
      try {
        conn.close();
      } catch { /* closed */ }
    }
  };
  (async () => {
    for await (const conn of listener) void serve(conn);
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    state,
    reset,
    close: () => listener.close(),
  };
}

/**
 * Writes `bytes` to the inlet at `port` in WRITE_BYTES writes, half-closes,
 * and waits for the end of stream the backend's close becomes. `onWritten`
 * hears the running total.
 */
async function push(port: number, bytes: number, onWritten: (total: number) => void) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const block = new Uint8Array(WRITE_BYTES);
  for (let at = 0; at < block.length; at += 65536) {
    crypto.getRandomValues(block.subarray(at, at + 65536));
  }
  const index = new DataView(block.buffer);
  const hash = createHash("sha256");
  const started = performance.now();
  let written = 0;
  try {
    for (let i = 0; written < bytes; i++) {
      // Each write differs (its number), so a lost, repeated or reordered
      // one changes the hash. The block is rewritten only after the
      // previous write was taken by the kernel.
      index.setBigUint64(0, BigInt(i));
      const chunk = block.subarray(0, Math.min(WRITE_BYTES, bytes - written));
      hash.update(chunk);
      for (let w = 0; w < chunk.length;) w += await conn.write(chunk.subarray(w));
      written += chunk.length;
      onWritten(written);
    }
    const writtenMs = performance.now() - started;
    await conn.closeWrite();
    // The backend closes at end of stream; that comes back as end of stream here.
    const rest = await conn.read(new Uint8Array(1));
    assert.equal(rest, null, "the backend sent something");
    return { writtenMs, sha256: hash.digest("hex") };
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

Deno.test("portal across processes: 1 GiB into a slow backend; edge, relay and gateway memory stays bounded", async () => {
  const backend = startBackend();
  const dir = await writeDeploymentFiles("portal-backpressure");
  let relay: RelayService | null = null;
  let gateway: PeerService | null = null;
  let edge: PeerService | null = null;
  let sampling = false;
  try {
    relay = await startRelay(dir);
    gateway = await startPeer("gateway", dir, relay.port, { outlets: { slow: backend.port } });
    edge = await startPeer("edge", dir, relay.port, { inlets: ["slow"] });
    const inlet = edge.inlets.slow;
    const processes = { edge: edge.pid, relay: relay.pid, gateway: gateway.pid };
    const pids = Object.values(processes);

    const startup = await memoryOf(pids);

    // Warm-up at full speed.
    backend.reset(Infinity);
    const [warm, warmArrived] = await deadline(
      Promise.all([push(inlet, WARM_BYTES, () => {}), backend.state.done.promise]),
      PUSH_DEADLINE_MS,
      "the warm-up",
    );
    assert.equal(warmArrived.bytes, WARM_BYTES);
    assert.equal(warmArrived.sha256, warm.sha256);
    await sleep(500);
    const baseline = await memoryOf(pids);

    // The slow push, sampled.
    backend.reset(BACKEND_RATE);
    const peak = new Map(pids.map((pid) => [pid, baseline.get(pid)!.rss]));
    let written = 0;
    let maxAhead = 0;
    let samples = 0;
    sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (const [pid, memory] of await memoryOf(pids)) {
          peak.set(pid, Math.max(peak.get(pid)!, memory.rss));
        }
        samples++;
        await sleep(SAMPLE_MS);
      }
    })();
    // Awaited below; a failure (a process gone) is reported there.
    sampler.catch(() => {});
    const started = performance.now();
    const pushing = push(inlet, PUSH_BYTES, (total) => {
      written = total;
      maxAhead = Math.max(maxAhead, written - backend.state.received);
    });
    const [sent, arrived] = await deadline(
      Promise.all([pushing, backend.state.done.promise]),
      PUSH_DEADLINE_MS,
      "the slow push",
    );
    const totalMs = performance.now() - started;
    sampling = false;
    await sampler;
    const after = await memoryOf(pids);

    assert.equal(arrived.bytes, PUSH_BYTES, "the backend did not get every byte");
    assert.equal(arrived.sha256, sent.sha256, "the backend got other bytes than were sent");

    const growth: Record<string, number> = {};
    for (const [name, pid] of Object.entries(processes)) {
      // VmHWM is the peak since the process started: if it rose, it rose
      // during this push, and it is this push's peak.
      let top = peak.get(pid)!;
      if (after.get(pid)!.hwm > baseline.get(pid)!.hwm) top = Math.max(top, after.get(pid)!.hwm);
      growth[name] = top - baseline.get(pid)!.rss;
    }
    const kernel = 2 * (await tcpBufferMax("rmem") + await tcpBufferMax("wmem"));
    const aheadBound = DEFAULT_WINDOW + kernel + WRITE_BYTES;
    const minimumMs = PUSH_BYTES / BACKEND_RATE * 1000 * 0.8;
    const mib = (kib: number) => (kib / 1024).toFixed(1);
    console.error(
      `portal_backpressure_test: ${PUSH_BYTES / MiB} MiB at ${BACKEND_RATE / MiB} MiB/s: ` +
        `writer done after ${sent.writtenMs.toFixed(0)} ms, backend after ${
          totalMs.toFixed(0)
        } ms ` +
        `(${(PUSH_BYTES / 1e6 / (totalMs / 1000)).toFixed(0)} MB/s); writer ahead by at most ${
          (maxAhead / MiB).toFixed(1)
        } MiB (bound ${(aheadBound / MiB).toFixed(1)}); ${samples} samples; RSS growth over ` +
        `baseline: ${
          Object.entries(processes).map(([name, pid]) =>
            `${name} ${mib(growth[name])} MiB (baseline ${mib(baseline.get(pid)!.rss)}, ` +
            `at start ${mib(startup.get(pid)!.rss)})`
          ).join(", ")
        }; bound ${mib(RSS_GROWTH_BOUND_KIB)} MiB each (the gateway's live data by design: ` +
        `window + ${RECEIVE_PIPELINE} records ≈ ${
          ((DEFAULT_WINDOW + RECEIVE_PIPELINE * 2 * 64 * 1024) / MiB).toFixed(1)
        } MiB)`,
    );

    assert.ok(
      sent.writtenMs >= minimumMs,
      `the writer finished after ${sent.writtenMs.toFixed(0)} ms: not held back by a backend ` +
        `that needs ${(minimumMs / 0.8).toFixed(0)} ms`,
    );
    assert.ok(
      maxAhead <= aheadBound,
      `the writer got ${maxAhead} bytes ahead of the backend (bound ${aheadBound})`,
    );
    for (const [name, grew] of Object.entries(growth)) {
      assert.ok(
        grew <= RSS_GROWTH_BOUND_KIB,
        `${name} resident memory grew by ${mib(grew)} MiB (bound ${mib(RSS_GROWTH_BOUND_KIB)})`,
      );
    }

    // Nothing was dropped on the way, and both sessions ended.
    assert.equal(await relay.metric("nexus_relay_frames_dropped_total"), 0);
    const edgeStats = await edge.finish();
    const gatewayStats = await gateway.finish();
    assert.ok(edgeStats !== null && gatewayStats !== null);
    assert.equal(edgeStats.dropped, 0);
    assert.equal(edgeStats.channel?.dropped, 0);
    assert.equal(edgeStats.inlets.slow.sessions, 2);
    assert.equal(edgeStats.inlets.slow.refused, 0);
    assert.equal(edgeStats.inlets.slow.open, 0);
    assert.equal(gatewayStats.dropped, 0);
    assert.equal(gatewayStats.outlets[0].sessions, 2);
    assert.equal(gatewayStats.outlets[0].open, 0);
  } finally {
    sampling = false;
    await edge?.stop();
    await gateway?.stop();
    if (relay !== null) assert.equal(await relay.stop(), 0);
    backend.close();
    await Deno.remove(dir, { recursive: true });
  }
});
