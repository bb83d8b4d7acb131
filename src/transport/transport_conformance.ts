/**
 * The conformance suite of the framed transport, run over real loopback
 * sockets against plain TCP (`tcp_test.ts`) and TLS (`tls_test.ts`):
 *
 * ```ts ignore
 * transportConformance("tcp", () => Promise.resolve(tcpFixture));
 * ```
 *
 * What it checks: connect and accept; 10,000 frames each way with their
 * content; frames of exactly the maximum size; concurrent sends never
 * interleaved; backpressure (a consumer that stops reading stops the peer's
 * sends after a bounded amount, and they resume); close propagation both
 * ways; and that an oversized frame, random garbage or a bad version byte
 * from a raw socket closes that connection only, with a typed error, while
 * another connection and the listener keep working.
 *
 * Every case cleans up after itself (connections, listener, background
 * loops), so Deno's op and resource sanitizers hold the transport to the
 * same standard.
 *
 * @module
 */
import assert from "node:assert/strict";
import { TransportError } from "../errors.ts";
import { type CloseInfo, ConnectionCloseEvent, type FramedConnection } from "./connection.ts";
import {
  encodeFrameHeader,
  FrameError,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
} from "./frame_decoder.ts";
import type { FramedListener, ListenTcpOptions } from "./tcp.ts";

/** What the suite needs from one kind of transport. */
export interface TransportFixture {
  readonly transport: "tcp" | "tls";
  /** Listens on 127.0.0.1, port 0. */
  listen(options: Omit<ListenTcpOptions, "hostname" | "port" | "tls">): FramedListener;
  /** A framed connection to 127.0.0.1:`port`. */
  connect(port: number, options?: { maxFrameBytes?: number }): Promise<FramedConnection>;
  /** A raw byte stream to 127.0.0.1:`port` (inside TLS for the TLS transport). */
  rawConnect(port: number): Promise<Deno.Conn>;
  /** A raw listener on 127.0.0.1, port 0 (TLS-terminated for the TLS transport). */
  rawListen(): Deno.Listener;
  /**
   * Whether accepted connections have TCP_NODELAY. False for TLS: Deno
   * cannot set it on a connection accepted by `Deno.listenTls` (see
   * `tcp.ts`), so the suite checks for Nagle delays client to server only.
   */
  readonly acceptedNoDelay: boolean;
}

/** Upper bound on any wait in the suite, so that a bug fails instead of hanging. */
const WAIT_MS = 20_000;

// ---------------------------------------------------------------------------
// Helpers

/** Resolves or rejects as `promise` does, or rejects after `ms` naming `what`. */
export async function within<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** "settled" once `promise` has settled, else "pending" after `ms`. */
async function stateAfter(promise: Promise<unknown>, ms: number): Promise<"settled" | "pending"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const pending = new Promise<"pending">((resolve) => timer = setTimeout(resolve, ms, "pending"));
  try {
    return await Promise.race([
      promise.then(() => "settled" as const, () => "settled" as const),
      pending,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A deterministic byte generator (mulberry32), so failures reproduce. */
export function randomBytes(seed: number, length: number): Uint8Array {
  let state = seed >>> 0;
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (t ^ (t >>> 14)) & 0xff;
  }
  return out;
}

/**
 * Frame `i` of `length` >= 4 bytes of stream `stream`: `i` big-endian, then
 * `stream`, then bytes derived from both.
 */
function numberedFrame(i: number, length: number, stream = 0): Uint8Array {
  const out = new Uint8Array(length);
  out[0] = i >>> 24;
  out[1] = (i >>> 16) & 0xff;
  out[2] = (i >>> 8) & 0xff;
  out[3] = i & 0xff;
  const salt = stream * 131 + i * 31;
  for (let j = 4; j < length; j++) out[j] = (salt + j * 7) & 0xff;
  if (length > 4) out[4] = stream;
  return out;
}

function frameNumber(frame: Uint8Array): number {
  return ((frame[0] << 24) | (frame[1] << 16) | (frame[2] << 8) | frame[3]) >>> 0;
}

function assertNumberedFrame(frame: Uint8Array, i: number, length: number, stream = 0): void {
  assert.equal(frame.length, length, `frame ${i}: length`);
  assert.equal(frameNumber(frame), i, `frame ${i}: out of order`);
  const expected = numberedFrame(i, length, stream);
  for (let j = 4; j < length; j++) {
    if (frame[j] !== expected[j]) assert.fail(`frame ${i}: byte ${j} differs`);
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

/** Reads a raw conn until the peer closes it (EOF or reset); returns the bytes read. */
async function readUntilClosed(conn: Deno.Conn): Promise<number> {
  const buffer = new Uint8Array(64 * 1024);
  let total = 0;
  try {
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) total += n;
  } catch {
    // A reset is a close too.
  }
  return total;
}

function closeQuietly(closer: { close(): void }): void {
  try {
    closer.close();
  } catch {
    // already closed
  }
}

/** The next frame, or null when the iteration ended. */
async function nextFrame(
  frames: AsyncIterator<Uint8Array>,
  what = "next frame",
): Promise<Uint8Array | null> {
  const result = await within(frames.next(), what);
  return result.done ? null : result.value;
}

function assertFramingClose(info: CloseInfo, code: string): void {
  assert.equal(info.reason, code, `closed for ${info.reason}: ${info.error?.message}`);
  assert.ok(info.error instanceof FrameError, `expected a FrameError, got ${info.error}`);
  assert.equal(info.error.code, code);
}

async function assertClosedError(promise: Promise<unknown>, what: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof TransportError, `${what}: expected TransportError, got ${error}`);
    assert.equal(error.code, "closed", what);
    return true;
  });
}

/** A listener with its accepted connections, clients, raw sockets and background loops. */
class Harness {
  readonly fixture: TransportFixture;
  readonly listener: FramedListener;
  readonly accepted: FramedConnection[] = [];
  readonly errors: Error[] = [];
  #waiters: { index: number; resolve: (conn: FramedConnection) => void }[] = [];
  #clients: FramedConnection[] = [];
  #raws: Deno.Conn[] = [];
  #tasks: Promise<unknown>[] = [];

  /** With `echo`, every accepted connection sends back each frame it receives. */
  constructor(fixture: TransportFixture, options: { echo?: boolean; maxFrameBytes?: number }) {
    this.fixture = fixture;
    this.listener = fixture.listen({
      maxFrameBytes: options.maxFrameBytes,
      onConnection: (conn) => {
        this.accepted.push(conn);
        if (options.echo) this.background(echo(conn));
        const index = this.accepted.length - 1;
        for (const waiter of this.#waiters) if (waiter.index === index) waiter.resolve(conn);
        this.#waiters = this.#waiters.filter((waiter) => waiter.index !== index);
      },
      onError: (error) => this.errors.push(error),
    });
  }

  get port(): number {
    return this.listener.addr.port;
  }

  /** The `index`th accepted connection, once accepted. */
  acceptedAt(index: number): Promise<FramedConnection> {
    if (index < this.accepted.length) return Promise.resolve(this.accepted[index]);
    return within(
      new Promise<FramedConnection>((resolve) => this.#waiters.push({ index, resolve })),
      `accepting connection ${index}`,
    );
  }

  async connect(options?: { maxFrameBytes?: number }): Promise<FramedConnection> {
    const conn = await this.fixture.connect(this.port, options);
    this.#clients.push(conn);
    return conn;
  }

  /** A client and the server end it was accepted as. */
  async pair(options?: { maxFrameBytes?: number }): Promise<[FramedConnection, FramedConnection]> {
    const index = this.accepted.length;
    const client = await this.connect(options);
    return [client, await this.acceptedAt(index)];
  }

  async raw(): Promise<Deno.Conn> {
    const conn = await this.fixture.rawConnect(this.port);
    this.#raws.push(conn);
    return conn;
  }

  /** Keeps `task` to be awaited at the end; its rejection is never unhandled. */
  background<T>(task: Promise<T>): Promise<T> {
    task.catch(() => {});
    this.#tasks.push(task);
    return task;
  }

  async dispose(): Promise<void> {
    for (const conn of this.#clients) conn.close();
    for (const conn of this.#raws) closeQuietly(conn);
    await within(this.listener.close(), "listener close");
    assert.equal(this.listener.connections(), 0);
    await within(Promise.allSettled(this.#tasks), "background tasks");
    await within(
      Promise.all([...this.#clients, ...this.accepted].map((c) => c.closed)),
      "every connection closed",
    );
  }
}

/** Sends back every frame until the connection closes. */
async function echo(conn: FramedConnection): Promise<void> {
  for await (const frame of conn.frames()) {
    try {
      await conn.send(frame);
    } catch {
      return;
    }
  }
}

/** Sends frames, checks they come back (through an echoing server) and the connection works. */
async function assertEchoes(conn: FramedConnection, what: string, count = 3): Promise<void> {
  const frames = conn.frames();
  try {
    for (let i = 0; i < count; i++) {
      const sent = numberedFrame(i, 10 + i * 100, 7);
      await within(conn.send(sent), `${what}: send`);
      const back = await nextFrame(frames, `${what}: echo`);
      assert.ok(back !== null, `${what}: the connection closed`);
      assertNumberedFrame(back, i, sent.length, 7);
    }
  } finally {
    await frames.return?.();
  }
}

// ---------------------------------------------------------------------------
// The suite

/** Registers the conformance cases for the transport `setup` provides. */
export function transportConformance(
  name: string,
  setup: () => Promise<TransportFixture>,
): void {
  function test(
    what: string,
    options: { echo?: boolean; maxFrameBytes?: number },
    fn: (h: Harness) => Promise<void>,
  ): void {
    Deno.test(`${name}: ${what}`, async () => {
      const h = new Harness(await setup(), options);
      try {
        await fn(h);
      } finally {
        await h.dispose();
      }
    });
  }

  test("connect and accept: addresses, transport, ids, a frame each way", {}, async (h) => {
    assert.equal(h.listener.addr.hostname, "127.0.0.1");
    assert.ok(h.port > 0);
    assert.equal(h.listener.connections(), 0);
    const [client, server] = await h.pair();
    for (const conn of [client, server]) {
      assert.equal(conn.transport, h.fixture.transport);
      assert.match(conn.id, /^[0-9a-f]{16}$/);
      assert.equal(conn.maxFrameBytes, MAX_FRAME_BYTES);
      assert.equal(conn.isClosed, false);
      assert.equal(conn.bufferedAmount, 0);
    }
    assert.notEqual(client.id, server.id);
    assert.equal(client.remoteAddr.port, h.port);
    assert.equal(server.localAddr.port, h.port);
    assert.equal(server.remoteAddr.port, client.localAddr.port);
    assert.equal(h.listener.connections(), 1);

    const hello = new TextEncoder().encode("hello");
    await client.send(hello);
    const serverFrames = server.frames();
    assert.deepEqual(await nextFrame(serverFrames), hello);
    await server.send(new TextEncoder().encode("world"));
    const clientFrames = client.frames();
    assert.equal(new TextDecoder().decode((await nextFrame(clientFrames))!), "world");

    client.close();
    assert.equal(await nextFrame(serverFrames), null, "the server's frames() did not end");
    assert.equal(await nextFrame(clientFrames), null, "the client's frames() did not end");
    await within(server.closed, "server closed");
    // The listener forgets closed connections.
    for (let i = 0; i < 50 && h.listener.connections() > 0; i++) await delay(10);
    assert.equal(h.listener.connections(), 0);
  });

  test("10,000 frames each way, at once, with their content", {}, async (h) => {
    const COUNT = 10_000;
    const [client, server] = await h.pair();
    const sizeOf = (i: number) => 4 + (i * 7919) % 1500;
    // Client to server: one send at a time. Server to client: windows of
    // 100 sends in flight, which the write path coalesces.
    const clientSends = (async () => {
      for (let i = 0; i < COUNT; i++) await client.send(numberedFrame(i, sizeOf(i), 1));
    })();
    const serverSends = (async () => {
      for (let i = 0; i < COUNT; i += 100) {
        const window: Promise<void>[] = [];
        for (let j = i; j < i + 100; j++) window.push(server.send(numberedFrame(j, sizeOf(j), 2)));
        await Promise.all(window);
      }
    })();
    const receive = async (conn: FramedConnection, stream: number) => {
      let i = 0;
      for await (const frame of conn.frames()) {
        assertNumberedFrame(frame, i, sizeOf(i), stream);
        if (++i === COUNT) return i;
      }
      return i;
    };
    const [atServer, atClient] = await within(
      Promise.all([receive(server, 1), receive(client, 2), clientSends, serverSends]),
      "10,000 frames each way",
    );
    assert.equal(atServer, COUNT);
    assert.equal(atClient, COUNT);
    assert.equal(client.bufferedAmount, 0);
    assert.equal(server.bufferedAmount, 0);
  });

  test(
    "frames of exactly maxFrameBytes, each way; larger or empty sends are refused locally",
    {},
    async (h) => {
      const [client, server] = await h.pair();
      const COUNT = 8;
      const send = async (conn: FramedConnection, stream: number) => {
        for (let i = 0; i < COUNT; i++) await conn.send(numberedFrame(i, MAX_FRAME_BYTES, stream));
      };
      const receive = async (conn: FramedConnection, stream: number) => {
        let i = 0;
        for await (const frame of conn.frames()) {
          assertNumberedFrame(frame, i, MAX_FRAME_BYTES, stream);
          if (++i === COUNT) break;
        }
        assert.equal(i, COUNT);
      };
      await within(
        Promise.all([send(client, 1), send(server, 2), receive(server, 1), receive(client, 2)]),
        "maximum-size frames",
      );

      await assert.rejects(client.send(new Uint8Array(MAX_FRAME_BYTES + 1)), (error: unknown) => {
        assert.ok(error instanceof FrameError);
        assert.equal(error.code, "oversized");
        return true;
      });
      await assert.rejects(client.send(new Uint8Array(0)), (error: unknown) => {
        assert.ok(error instanceof FrameError);
        assert.equal(error.code, "empty_frame");
        return true;
      });
      // Refusing a local frame does not close anything.
      await client.send(numberedFrame(COUNT, 4, 1));
      const frames = server.frames();
      assertNumberedFrame((await nextFrame(frames))!, COUNT, 4, 1);
      assert.equal(client.isClosed, false);
      await frames.return?.();
    },
  );

  test("a smaller maxFrameBytes holds on both ends", { maxFrameBytes: 1000 }, async (h) => {
    const [client, server] = await h.pair({ maxFrameBytes: 1000 });
    assert.equal(client.maxFrameBytes, 1000);
    assert.equal(server.maxFrameBytes, 1000);
    await client.send(numberedFrame(1, 1000));
    await assert.rejects(client.send(new Uint8Array(1001)), FrameError);
    const frames = server.frames();
    assertNumberedFrame((await nextFrame(frames))!, 1, 1000);
    // A peer with a larger limit sending 1001 bytes loses its connection.
    const loose = await h.fixture.connect(h.port, { maxFrameBytes: 2000 });
    const looseServer = await h.acceptedAt(1);
    const reading = h.background((async () => {
      for await (const _ of looseServer.frames());
    })());
    await loose.send(new Uint8Array(1001));
    assertFramingClose(await within(looseServer.closed, "oversized close"), "oversized");
    await reading;
    loose.close();
    await frames.return?.();
  });

  test("concurrent sends are written whole and in call order", {}, async (h) => {
    const [client, server] = await h.pair();
    // Four producers, each sending without waiting for the others; sizes
    // cross the 64 KiB write buffer so some frames are split across writes.
    const sizes = [5, 70_000, 300, 65_532, 65_533, 1, 200_000, 4, 40_000];
    const PRODUCERS = 4;
    const PER_PRODUCER = 60;
    // At least 5 bytes: byte 4 names the stream (see numberedFrame).
    const sizeOf = (i: number) => Math.max(5, sizes[i % sizes.length]);
    const producers = Array.from({ length: PRODUCERS }, (_, p) =>
      (async () => {
        const sends: Promise<void>[] = [];
        for (let i = 0; i < PER_PRODUCER; i++) {
          const send = client.send(numberedFrame(i, sizeOf(i + p), 10 + p));
          send.catch(() => {}); // awaited below; a failure must not go unhandled meanwhile
          sends.push(send);
          if (i % 7 === p) await delay(0); // interleave with the other producers
        }
        await Promise.all(sends);
      })());
    // A synchronous burst: its frames are in call order on the wire.
    const burst: Promise<void>[] = [];
    for (let i = 0; i < 50; i++) burst.push(client.send(numberedFrame(i, sizeOf(i), 99)));
    const sending = h.background(Promise.all([...producers, ...burst]));

    const seen = new Map<number, number>();
    let burstSeen = 0;
    let total = 0;
    for await (const frame of server.frames()) {
      // Which stream is it? Try each; exactly one must match the content.
      const i = frameNumber(frame);
      let matched = false;
      for (const stream of [99, 10, 11, 12, 13]) {
        const length = stream === 99 ? sizeOf(i) : sizeOf(i + stream - 10);
        if (frame.length !== length) continue;
        const expected = numberedFrame(i, length, stream);
        let same = true;
        for (let j = 4; j < length && same; j++) same = frame[j] === expected[j];
        if (!same) continue;
        matched = true;
        if (stream === 99) {
          assert.equal(i, burstSeen++, "the burst arrived out of order");
        } else {
          assert.equal(i, seen.get(stream) ?? 0, `producer ${stream - 10} out of order`);
          seen.set(stream, i + 1);
        }
        break;
      }
      assert.ok(matched, `frame ${i} of ${frame.length} bytes is corrupt or interleaved`);
      if (++total === PRODUCERS * PER_PRODUCER + 50) break;
    }
    await within(sending, "sends resolve");
    assert.equal(burstSeen, 50);
    for (let p = 0; p < PRODUCERS; p++) assert.equal(seen.get(10 + p), PER_PRODUCER);
  });

  test("back-to-back small frames are not held back by Nagle's algorithm", {}, async (h) => {
    // Request, then a reply in two separate writes: with Nagle on, the
    // second write waits for the ACK of the first, which the peer delays
    // (about 40 ms on Linux) because it has nothing to send.
    const [client, server] = await h.pair();
    const roundTrip = async (from: FramedConnection, to: FramedConnection) => {
      const fromFrames = from.frames();
      const toFrames = to.frames();
      const times: number[] = [];
      try {
        for (let i = 0; i < 30; i++) {
          const started = performance.now();
          await from.send(numberedFrame(i, 8));
          await nextFrame(toFrames);
          await to.send(numberedFrame(i, 8));
          await to.send(numberedFrame(i + 1, 8));
          await nextFrame(fromFrames);
          await nextFrame(fromFrames);
          times.push(performance.now() - started);
        }
      } finally {
        await fromFrames.return?.();
        await toFrames.return?.();
      }
      return times.sort((a, b) => a - b)[times.length >> 1];
    };
    const toServer = await roundTrip(server, client);
    assert.ok(toServer < 20, `client replies take ${toServer.toFixed(1)} ms (median)`);
    if (h.fixture.acceptedNoDelay) {
      const toClient = await roundTrip(client, server);
      assert.ok(toClient < 20, `server replies take ${toClient.toFixed(1)} ms (median)`);
    }
  });

  test("backpressure: a consumer that stops reading stops the sender, boundedly", {}, async (h) => {
    const [client, server] = await h.pair();
    const FRAME = 64 * 1024;
    // Loopback socket buffers (send + receive, autotuned) and Deno's TLS
    // buffers hold a few MiB; without backpressure sends would never stop.
    const BOUND = 64 * 1024 * 1024;
    const frame = numberedFrame(0, FRAME);
    let written = 0;
    let stalled: Promise<void> | null = null;
    while (stalled === null) {
      const send = client.send(frame);
      if (await stateAfter(send, 500) === "settled") {
        await send;
        written += FRAME;
        assert.ok(written <= BOUND, `${written} bytes sent to a peer that reads nothing`);
      } else {
        stalled = send;
      }
    }
    assert.ok(written > 0, "not even one frame went out");
    // Still stuck a while later, with only that one frame queued here.
    assert.equal(await stateAfter(stalled, 300), "pending");
    assert.ok(client.bufferedAmount > 0 && client.bufferedAmount <= FRAME + 4);
    assert.equal(client.isClosed, false);

    // The consumer resumes: everything arrives and the send completes.
    let received = 0;
    const expected = written + FRAME;
    for await (const got of server.frames()) {
      assert.equal(got.length, FRAME);
      received += got.length;
      if (received === expected) break;
    }
    await within(stalled, "the stalled send resumes");
    assert.equal(received, expected);
    assert.equal(client.bufferedAmount, 0);
    // And the connection still works both ways.
    await client.send(numberedFrame(5, 8));
    const frames = server.frames();
    assertNumberedFrame((await nextFrame(frames))!, 5, 8);
    await frames.return?.();
  });

  test("close propagates from client to server, with reasons and one event each", {}, async (h) => {
    const [client, server] = await h.pair();
    const events: string[] = [];
    for (const [side, conn] of [["client", client], ["server", server]] as const) {
      conn.events.addEventListener("close", (event) => {
        assert.ok(event instanceof ConnectionCloseEvent);
        events.push(`${side}:${event.reason}`);
      });
    }
    const serverReading = h.background((async () => {
      let n = 0;
      for await (const _ of server.frames()) n++;
      return n;
    })());
    const clientReading = h.background((async () => {
      for await (const _ of client.frames());
    })());
    await client.send(numberedFrame(1, 10));
    client.close("bye");
    client.close("again"); // idempotent: the first reason stands
    assert.equal(client.isClosed, true);
    assert.deepEqual(await client.closed, { reason: "bye" });
    await within(clientReading, "the closing side's own frames() ends");
    const info = await within(server.closed, "server sees the close");
    assert.equal(info.reason, "peer_closed", info.error?.message);
    assert.equal(await within(serverReading, "server frames() ends"), 1);
    assert.deepEqual(events.sort(), ["client:bye", "server:peer_closed"]);
    await assertClosedError(client.send(numberedFrame(2, 10)), "send after close");
    await assertClosedError(server.send(numberedFrame(3, 10)), "send to a closed peer");
  });

  test("close propagates from server to client", {}, async (h) => {
    const [client, server] = await h.pair();
    const clientReading = h.background((async () => {
      const got: Uint8Array[] = [];
      for await (const frame of client.frames()) got.push(frame.slice());
      return got;
    })());
    await server.send(numberedFrame(1, 10));
    // The frame was written before the close, and this side has nothing
    // unread, so the peer gets the frame, then the end of the stream.
    server.close("server_bye");
    assert.deepEqual(await server.closed, { reason: "server_bye" });
    const info = await within(client.closed, "client sees the close");
    assert.equal(info.reason, "peer_closed", info.error?.message);
    const got = await clientReading;
    assert.equal(got.length, 1);
    assertNumberedFrame(got[0], 1, 10);
    await assertClosedError(client.send(numberedFrame(2, 10)), "send after the peer closed");
  });

  test(
    "closing rejects pending sends; closing the listener closes its connections",
    {},
    async (h) => {
      const [client] = await h.pair();
      // Fill the pipe (the server reads nothing), then close with sends pending.
      const frame = new Uint8Array(64 * 1024);
      let pending: Promise<void> | null = null;
      for (let i = 0; i < 2000 && pending === null; i++) {
        const send = client.send(frame);
        if (await stateAfter(send, 200) === "pending") pending = send;
      }
      assert.ok(pending !== null, "the sends never stalled");
      const queued = client.send(new Uint8Array(10));
      assert.ok(client.bufferedAmount > 10);
      client.close("give_up");
      await assertClosedError(pending, "the stalled send");
      await assertClosedError(queued, "the queued send");
      assert.equal(client.bufferedAmount, 0);

      const [other, otherServer] = await h.pair();
      const otherReading = h.background((async () => {
        for await (const _ of other.frames());
      })());
      await h.listener.close();
      assert.equal((await otherServer.closed).reason, "listener_closed");
      assert.equal(
        (await within(other.closed, "client of a closed listener")).reason,
        "peer_closed",
      );
      await otherReading;
      assert.equal(h.listener.connections(), 0);
      await assert.rejects(h.fixture.connect(h.port), TransportError);
    },
  );

  test("frames() allows one reader at a time, and resumes after a break", {}, async (h) => {
    const [client, server] = await h.pair();
    for (let i = 0; i < 3; i++) await client.send(numberedFrame(i, 20));
    const first = server.frames();
    assertNumberedFrame((await nextFrame(first))!, 0, 20);
    await assert.rejects(server.frames().next(), (error: unknown) => {
      assert.ok(error instanceof TransportError);
      assert.equal(error.code, "reader_busy");
      return true;
    });
    await first.return?.();
    // The frames not consumed are still there for the next reader.
    const second = server.frames();
    assertNumberedFrame((await nextFrame(second))!, 1, 20);
    assertNumberedFrame((await nextFrame(second))!, 2, 20);
    await second.return?.();
  });

  test(
    "an oversized frame from a raw socket closes that connection only",
    { echo: true },
    async (h) => {
      const [good] = await h.pair();
      await assertEchoes(good, "before");
      const raw = await h.raw();
      // The version byte and a header one byte over the limit; no body needed.
      const header = new Uint8Array(5);
      header[0] = PROTOCOL_VERSION;
      encodeFrameHeader(MAX_FRAME_BYTES + 1, header, 1);
      await writeAll(raw, header);
      const victim = await h.acceptedAt(1);
      assertFramingClose(await within(victim.closed, "oversized close"), "oversized");
      await within(readUntilClosed(raw), "the raw socket is dropped");
      assert.equal(good.isClosed, false);
      await assertEchoes(good, "after");
      const [fresh] = await h.pair();
      await assertEchoes(fresh, "a new connection");
      assert.equal(h.listener.connections(), 2);
      assert.deepEqual(h.errors, []);
    },
  );

  test(
    "random garbage from raw sockets closes those connections only",
    { echo: true },
    async (h) => {
      const [good] = await h.pair();
      const ROUNDS = 12;
      for (let round = 0; round < ROUNDS; round++) {
        const raw = await h.raw();
        const garbage = randomBytes(0x9a4b + round, 1 + (round * 997) % 3000);
        // Half the rounds get past the version byte, to reach the length checks.
        if (round % 2 === 0) garbage[0] = PROTOCOL_VERSION;
        const reading = readUntilClosed(raw);
        try {
          await writeAll(raw, garbage);
          await raw.closeWrite();
        } catch {
          // The server may already have dropped it.
        }
        const victim = await h.acceptedAt(round + 1);
        const info = await within(victim.closed, `garbage round ${round}`);
        const allowed = ["bad_version", "oversized", "empty_frame", "truncated", "peer_closed"];
        assert.ok(allowed.includes(info.reason), `round ${round}: closed for ${info.reason}`);
        if (info.error !== undefined) {
          assert.ok(info.error instanceof FrameError, `round ${round}: untyped ${info.error}`);
        }
        if (round % 2 === 1 && garbage[0] !== PROTOCOL_VERSION) {
          assertFramingClose(info, "bad_version");
        }
        await within(reading, "the raw socket is dropped");
        await assertEchoes(good, `after garbage round ${round}`, 1);
      }
      assert.equal(h.listener.connections(), 1);
      assert.deepEqual(h.errors, []);
    },
  );

  test(
    "a bad version byte closes the connection, on the server and on the client",
    { echo: true },
    async (h) => {
      const [good] = await h.pair();
      const raw = await h.raw();
      await writeAll(raw, new Uint8Array([PROTOCOL_VERSION + 1, 0, 0, 0, 1, 42]));
      assertFramingClose(
        await within((await h.acceptedAt(1)).closed, "bad version"),
        "bad_version",
      );
      await within(readUntilClosed(raw), "the raw socket is dropped");
      await assertEchoes(good, "after a bad version");

      // A server that answers with the wrong version.
      const rawListener = h.fixture.rawListen();
      try {
        const port = (rawListener.addr as Deno.NetAddr).port;
        const accepting = rawListener.accept();
        const client = await h.fixture.connect(port);
        const rawServer = await accepting;
        try {
          const reading = h.background((async () => {
            for await (const _ of client.frames());
          })());
          await writeAll(rawServer, new Uint8Array([0, 0, 0, 0, 5]));
          assertFramingClose(await within(client.closed, "client bad version"), "bad_version");
          await reading;
        } finally {
          closeQuietly(rawServer);
        }
      } finally {
        closeQuietly(rawListener);
      }
    },
  );

  test(
    "a zero length, and a frame cut short by the peer, close with their codes",
    { echo: true },
    async (h) => {
      const empty = await h.raw();
      await writeAll(empty, new Uint8Array([PROTOCOL_VERSION, 0, 0, 0, 0]));
      assertFramingClose(
        await within((await h.acceptedAt(0)).closed, "empty frame"),
        "empty_frame",
      );

      const cut = await h.raw();
      await writeAll(cut, new Uint8Array([PROTOCOL_VERSION, 0, 0, 0, 10, 1, 2, 3]));
      await cut.closeWrite();
      assertFramingClose(await within((await h.acceptedAt(1)).closed, "truncated"), "truncated");

      // Ending cleanly between frames is a plain peer close.
      const clean = await h.raw();
      await writeAll(clean, new Uint8Array([PROTOCOL_VERSION, 0, 0, 0, 2, 7, 7]));
      const echoed = new Uint8Array(7);
      let at = 0;
      while (at < echoed.length) {
        at += (await clean.read(echoed.subarray(at))) ??
          assert.fail("EOF");
      }
      assert.deepEqual([...echoed], [PROTOCOL_VERSION, 0, 0, 0, 2, 7, 7]);
      await clean.closeWrite();
      const info = await within((await h.acceptedAt(2)).closed, "clean end");
      assert.deepEqual(info, { reason: "peer_closed" });
      await within(readUntilClosed(clean), "clean close");
    },
  );

  test("a throwing onConnection closes that connection only and is reported", {}, async (h) => {
    const failing = h.fixture.listen({
      onConnection: (conn) => {
        if (conn.remoteAddr.port % 2 === 0) throw new Error("sync failure");
        return Promise.reject(new Error("async failure"));
      },
      onError: (error) => h.errors.push(error),
    });
    try {
      for (let i = 0; i < 2; i++) {
        const client = await h.fixture.connect(failing.addr.port);
        const reading = (async () => {
          for await (const _ of client.frames());
        })();
        const info = await within(client.closed, "handler failure closes the connection");
        assert.equal(info.reason, "peer_closed", info.error?.message);
        await reading;
      }
      assert.equal(h.errors.length, 2);
      assert.ok(h.errors.every((e) => /failure/.test(e.message)));
      assert.equal(failing.connections(), 0);
    } finally {
      await failing.close();
    }
    h.errors.length = 0;
  });
}
