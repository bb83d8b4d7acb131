/**
 * Framing throughput, for 100-byte, 16 KiB and 64 KiB frames. `deno bench`
 * prints each case's ratio against its group's baseline, measured in the
 * same run:
 *
 * - `decode <size>` groups (no permissions needed): {@link FrameDecoder}
 *   over a 4 MiB stream of frames, pushed in 64 KiB chunks as a connection
 *   reads them, against the baseline of copying the same chunks into a
 *   64 KiB buffer (a memcpy of the same bytes: what the read itself costs).
 * - `loopback <size>` groups (need `--allow-net=127.0.0.1`; skipped with a
 *   note otherwise): a {@link FramedConnection} over TCP on 127.0.0.1,
 *   `send()` awaited per frame and `frames()` consumed on the other end,
 *   against the baseline of raw `Deno.Conn` writes of the same bytes (each
 *   frame's header and body prepared in one buffer, one awaited write per
 *   frame, TCP_NODELAY on) read with a 64 KiB buffer on the other end. The
 *   same bytes cross the same socket either way, so the ratio is the cost
 *   of the framing layer itself. A third case keeps 64 sends in flight,
 *   which the write path coalesces into few writes.
 *
 * @module
 */
import type { FramedConnection } from "./connection.ts";
import { encodeFrameHeader, FrameDecoder, PROTOCOL_VERSION } from "./frame_decoder.ts";
import { connectTcp, listenTcp } from "./tcp.ts";

const SIZES = [
  { label: "100 B", bytes: 100 },
  { label: "16 KiB", bytes: 16 * 1024 },
  { label: "64 KiB", bytes: 64 * 1024 },
];

/** Bytes of frame bodies moved per benchmark iteration. */
const STREAM_BYTES = 4 * 1024 * 1024;
const CHUNK_BYTES = 64 * 1024;

function frameOf(length: number): Uint8Array {
  const frame = new Uint8Array(length);
  for (let i = 0; i < length; i++) frame[i] = i & 0xff;
  return frame;
}

/** One frame as it goes on the wire: header, then body. */
function wireOf(frame: Uint8Array): Uint8Array {
  const wire = new Uint8Array(4 + frame.length);
  encodeFrameHeader(frame.length, wire);
  wire.set(frame, 4);
  return wire;
}

// ---------------------------------------------------------------------------
// In memory

for (const { label, bytes } of SIZES) {
  const count = Math.floor(STREAM_BYTES / bytes);
  const wire = wireOf(frameOf(bytes));
  const stream = new Uint8Array(1 + count * wire.length);
  stream[0] = PROTOCOL_VERSION;
  for (let i = 0; i < count; i++) stream.set(wire, 1 + i * wire.length);
  const sink = new Uint8Array(CHUNK_BYTES);
  const group = `decode ${label}`;

  Deno.bench(`memcpy of the stream in 64 KiB chunks (baseline), ${label}`, {
    group,
    baseline: true,
  }, () => {
    for (let at = 0; at < stream.length; at += CHUNK_BYTES) {
      sink.set(stream.subarray(at, Math.min(at + CHUNK_BYTES, stream.length)));
    }
  });

  Deno.bench(`FrameDecoder push/next, ${label}`, { group }, () => {
    const decoder = new FrameDecoder();
    let frames = 0;
    for (let at = 0; at < stream.length; at += CHUNK_BYTES) {
      decoder.push(stream.subarray(at, Math.min(at + CHUNK_BYTES, stream.length)));
      for (let f = decoder.next(); f !== null; f = decoder.next()) frames += f[0] === 0 ? 1 : 0;
    }
    if (frames !== count) throw new Error(`decoded ${frames} of ${count} frames`);
  });
}

// ---------------------------------------------------------------------------
// Over loopback

const netGranted = Deno.permissions.querySync({ name: "net", host: "127.0.0.1" }).state ===
  "granted";

if (!netGranted) {
  console.log(
    "frame_bench: loopback groups skipped; they need net access to 127.0.0.1 " +
      '(add "net": ["127.0.0.1"] to the bench permission set)',
  );
} else {
  // One framed pair and one raw pair, kept open for every iteration.
  let server: FramedConnection | undefined;
  const listener = listenTcp({
    hostname: "127.0.0.1",
    port: 0,
    onConnection: (conn) => void (server = conn),
  });
  const client = await connectTcp({ hostname: "127.0.0.1", port: listener.addr.port });
  while (server === undefined) await new Promise((resolve) => setTimeout(resolve, 1));
  const serverFrames = server.frames();

  const rawListener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = rawListener.accept();
  const rawClient = await Deno.connect({ hostname: "127.0.0.1", port: rawListener.addr.port });
  const rawServer = await accepting;
  rawClient.setNoDelay(true);
  rawServer.setNoDelay(true);
  rawListener.close();
  const rawBuffer = new Uint8Array(CHUNK_BYTES);

  for (const { label, bytes } of SIZES) {
    const count = Math.floor(STREAM_BYTES / bytes);
    const frame = frameOf(bytes);
    const wire = wireOf(frame);
    const group = `loopback ${label}`;

    Deno.bench(`raw Deno.Conn write/read, same bytes (baseline), ${label}`, {
      group,
      baseline: true,
    }, async () => {
      const total = count * wire.length;
      const reading = (async () => {
        let got = 0;
        while (got < total) {
          const n = await rawServer.read(rawBuffer);
          if (n === null) throw new Error("raw connection closed");
          got += n;
        }
      })();
      for (let i = 0; i < count; i++) {
        for (let at = 0; at < wire.length;) at += await rawClient.write(wire.subarray(at));
      }
      await reading;
    });

    Deno.bench(`FramedConnection send/frames, ${label}`, { group }, async () => {
      const reading = (async () => {
        for (let i = 0; i < count; i++) {
          const { done } = await serverFrames.next();
          if (done) throw new Error("framed connection closed");
        }
      })();
      for (let i = 0; i < count; i++) await client.send(frame);
      await reading;
    });

    Deno.bench(`FramedConnection send/frames, 64 sends in flight, ${label}`, {
      group,
    }, async () => {
      const reading = (async () => {
        for (let i = 0; i < count; i++) {
          const { done } = await serverFrames.next();
          if (done) throw new Error("framed connection closed");
        }
      })();
      const window: Promise<void>[] = [];
      for (let i = 0; i < count; i += 64) {
        window.length = 0;
        for (let j = i; j < Math.min(count, i + 64); j++) window.push(client.send(frame));
        await Promise.all(window);
      }
      await reading;
    });
  }

  globalThis.addEventListener("unload", () => {
    client.close();
    rawClient.close();
    rawServer.close();
    listener.close();
  });
}
