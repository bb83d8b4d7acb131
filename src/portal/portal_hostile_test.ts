/**
 * Portal sessions through a hostile relay (docs/design.md §9, "hostile
 * relay" and "relay compromise"): real TCP clients and backends, a real
 * secure channel, and between the two nodes an in-memory link that drops,
 * swaps, duplicates and flips the channel's records. A byte stream is
 * delivered complete and in order, or the session ends with an error at
 * both ends; the backend never gets a stream with a hole or with chunks
 * swapped; the channel serves the next session.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { connectSecureChannel, listenSecureChannels } from "../channel/handshake.ts";
import { parsePolicy } from "../policy/mod.ts";
import { Node } from "../routing/node.ts";
import {
  authority,
  eventually,
  hostileLink,
  type LinkFrame,
  member,
  recordCounter,
} from "../testdata/channel_fixtures.ts";
import { createInlet, createOutlet } from "./portal.ts";

const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

function randomBytes(length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let at = 0; at < length; at += 65536) {
    crypto.getRandomValues(out.subarray(at, Math.min(length, at + 65536)));
  }
  return out;
}

/** A backend that keeps everything each connection sends; `ends` resolves per connection. */
function backend() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const received: Uint8Array[][] = [];
  const ended: Promise<void>[] = [];
  (async () => {
    for await (const conn of listener) {
      const chunks: Uint8Array[] = [];
      received.push(chunks);
      ended.push((async () => {
        const buffer = new Uint8Array(65536);
        try {
          for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
            chunks.push(buffer.slice(0, n));
          }
          await conn.write(new TextEncoder().encode("stored\n"));
        } catch { /* reset */ }
        try {
          conn.close();
        } catch { /* closed */ }
      })());
    }
  })().catch(() => {});
  const all = (i: number) => {
    const chunks = received[i] ?? [];
    const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of chunks) out.set(c, at), at += c.length;
    return out;
  };
  return {
    port: (listener.addr as Deno.NetAddr).port,
    received,
    ended,
    all,
    close: () => listener.close(),
  };
}

/** Edge and gateway nodes joined by a hostile link; an inlet → channel → outlet → backend. */
async function deployment(
  hook: (frame: LinkFrame, counter: number | null) => void | Promise<void>,
  probeMs = 300,
) {
  const ca = await authority();
  const a = new Node({ name: "edge" });
  const b = new Node({ name: "gateway" });
  const seen: Uint8Array[] = [];
  const { toB } = hostileLink(a, b, (frame) => {
    seen.push(frame.message.payload);
    return hook(frame, recordCounter(frame.message.payload));
  });
  listenSecureChannels({
    node: b,
    address: "api",
    local: await member(ca.identity, { role: "gateway" }),
    policy: { trust: ca.trust },
  });
  const server = backend();
  const outlet = createOutlet({
    node: b,
    name: "blob",
    backend: { hostname: "127.0.0.1", port: server.port },
    policy: parsePolicy('subject.role == "edge"'),
    probeMs,
  });
  const channel = await connectSecureChannel({
    node: a,
    route: [toB, "api"],
    local: await member(ca.identity, { role: "edge" }),
    policy: { trust: ca.trust },
  });
  const inlet = createInlet({
    node: a,
    listen: { hostname: "127.0.0.1", port: 0 },
    route: () => ({ route: [channel.address, "outlet.blob"], closed: channel.closed }),
    probeMs,
  });
  /** Uploads `bytes` through the inlet, half-closes, and reads the reply (or the reset). */
  const upload = async (bytes: Uint8Array) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: inlet.addr.port });
    let error: string | null = null;
    let reply = "";
    try {
      for (let at = 0; at < bytes.length; at += 100_000) {
        await conn.write(bytes.subarray(at, Math.min(bytes.length, at + 100_000)));
      }
      await conn.closeWrite();
      const buffer = new Uint8Array(1024);
      for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
        reply += new TextDecoder().decode(buffer.subarray(0, n));
      }
    } catch (e) {
      error = e instanceof Error ? e.name : String(e);
    } finally {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    return { reply, error };
  };
  const close = async () => {
    inlet.close();
    outlet.close();
    await channel.close();
    server.close();
  };
  return { server, outlet, inlet, channel, upload, close, seen };
}

const BIG = 60_000;

Deno.test("portal, hostile relay: a dropped DATA record ends the session with an error at both ends, never a stream with a hole", async () => {
  let large = 0;
  // Probes far apart (10 s): the channel gives up on the missing record
  // after its reorder wait (1 s) and hands on what follows, so it is the
  // portal's own numbering that must notice the hole, not an unanswered probe.
  const d = await deployment(async (frame, counter) => {
    if (frame.direction === "toB" && counter !== null && frame.message.payload.length > BIG) {
      if (++large === 10) return; // one 64 KiB DATA record, dropped
    }
    await frame.deliver();
  }, 10_000);
  try {
    const sent = randomBytes(4 * 1024 * 1024);
    const result = await d.upload(sent);
    assert.notEqual(result.reply, "stored\n", "the client must not see success");
    await eventually(() => d.outlet.stats.failed === 1 && d.inlet.stats.failed === 1, 5000);
    await d.server.ended[0];
    const got = d.server.all(0);
    assert.ok(got.length < sent.length, "the backend did not get the whole stream");
    // Whatever reached the backend is an exact prefix: no hole, nothing swapped.
    assert.equal(sha(got), sha(sent.subarray(0, got.length)), "the backend's bytes are a prefix");
    // The channel serves on: the next session is whole.
    const next = randomBytes(300_000);
    assert.equal((await d.upload(next)).reply, "stored\n");
    await d.server.ended[1];
    assert.equal(sha(d.server.all(1)), sha(next));
    assert.equal(d.channel.isClosed, false);
  } finally {
    await d.close();
  }
});

Deno.test("portal, hostile relay: swapped and duplicated records leave the stream intact", async () => {
  let held: LinkFrame | null = null;
  let large = 0;
  const d = await deployment(async (frame, counter) => {
    if (frame.direction === "toB" && counter !== null && frame.message.payload.length > BIG) {
      large++;
      if (large === 5) {
        held = frame; // swapped with the next large one
        return;
      }
      await frame.deliver();
      await frame.deliver(); // duplicated
      if (held !== null) {
        const late = held;
        held = null;
        await late.deliver();
      }
      return;
    }
    await frame.deliver();
  });
  try {
    const sent = randomBytes(2 * 1024 * 1024);
    assert.equal((await d.upload(sent)).reply, "stored\n");
    await d.server.ended[0];
    assert.equal(sha(d.server.all(0)), sha(sent), "the backend got exactly what was sent");
    assert.equal(d.outlet.stats.failed, 0);
  } finally {
    await d.close();
  }
});

Deno.test("portal, hostile relay: a RESET dropped too still ends the other end (probe unanswered)", async () => {
  let large = 0;
  let cut = false;
  const d = await deployment(async (frame, counter) => {
    if (counter !== null && frame.direction === "toB" && frame.message.payload.length > BIG) {
      if (++large === 3) {
        cut = true; // from here on, the gateway's records of this session go nowhere
        return;
      }
    }
    // Everything the gateway sends back after the loss (its RESET, answers
    // to probes) is dropped, but the channel's own records still pass.
    if (
      cut && frame.direction === "toA" && counter !== null && frame.message.payload.length < 400
    ) {
      return;
    }
    await frame.deliver();
  });
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: d.inlet.addr.port });
    const started = performance.now();
    const data = randomBytes(64 * 1024);
    // The client keeps the session open (no half-close): only the probe can end it.
    try {
      for (let i = 0; i < 6; i++) await conn.write(data);
    } catch { /* the inlet may already have closed it */ }
    await eventually(() => d.outlet.stats.failed === 1, 5000);
    await eventually(() => d.inlet.stats.failed === 1, 5000);
    const ms = performance.now() - started;
    assert.ok(ms < 3000, `the inlet's session ended after ${Math.round(ms)} ms`);
    conn.close();
  } finally {
    await d.close();
  }
});

Deno.test("portal, hostile relay: flipped and injected records are dropped; the stream is intact and no plaintext crosses", async () => {
  const d = await deployment(async (frame, counter) => {
    if (counter !== null && frame.direction === "toB") {
      const flipped = frame.message.payload.slice();
      flipped[flipped.length - 1] ^= 1;
      await frame.deliver({ ...frame.message, payload: flipped });
      const junk = crypto.getRandomValues(new Uint8Array(200));
      junk[0] = 0x04;
      await frame.deliver({ ...frame.message, payload: junk });
    }
    await frame.deliver();
  });
  try {
    const marker = new TextEncoder().encode("PLAINTEXT-MARKER-" + crypto.randomUUID());
    const sent = new Uint8Array(500_000);
    for (let at = 0; at + marker.length <= sent.length; at += 10_000) sent.set(marker, at);
    assert.equal((await d.upload(sent)).reply, "stored\n");
    await d.server.ended[0];
    assert.equal(sha(d.server.all(0)), sha(sent));
    const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    const needle = hex(marker);
    assert.ok(
      !d.seen.some((payload) => hex(payload).includes(needle)),
      "the marker crossed in clear",
    );
  } finally {
    await d.close();
  }
});
