/**
 * The transport conformance suite over plain TCP, and what is specific to
 * plain TCP: connect errors and aborts; and, over real loopback sockets,
 * what bounds the memory unauthenticated peers can make a listener hold:
 * headers alone reserve no frame-sized buffers, `maxReceiveFrameBytes` and
 * `setMaxReceiveFrameBytes`, `maxConnectionsPerSource` (IPv4 here; IPv6 /64
 * and IPv4-mapped sources in a child process that may listen on `::`).
 */
import assert from "node:assert/strict";
import { TransportError } from "../errors.ts";
import { type FramedConnection, SocketConnection } from "./connection.ts";
import {
  encodeFrameHeader,
  FrameError,
  MAX_FRAME_BYTES,
  MIN_PARTIAL_BYTES,
  PROTOCOL_VERSION,
} from "./frame_decoder.ts";
import { ConnectionLimitError, connectionSource, connectTcp, listenTcp } from "./tcp.ts";
import { transportConformance, type TransportFixture, within } from "./transport_conformance.ts";

const HOST = "127.0.0.1";

const tcp: TransportFixture = {
  transport: "tcp",
  listen: (options) => listenTcp({ hostname: HOST, port: 0, ...options }),
  connect: (port, options) => connectTcp({ hostname: HOST, port, ...options }),
  rawConnect: (port) => Deno.connect({ hostname: HOST, port }),
  rawListen: () => Deno.listen({ hostname: HOST, port: 0 }),
  acceptedNoDelay: true,
};

transportConformance("tcp", () => Promise.resolve(tcp));

/**
 * The suite again with the relay's way of reading on the listener's side:
 * connections start parked (a small read buffer), and a read that fills it
 * unparks them (pooled read buffers).
 */
transportConformance("tcp, idle read buffers", () =>
  Promise.resolve({
    ...tcp,
    listen: (options) =>
      listenTcp({
        hostname: HOST,
        port: 0,
        readBufferBytes: 1024,
        idleReadBufferBytes: 64,
        ...options,
      }),
  }));

Deno.test("tcp: a refused connect is connect_failed, with Deno's error as cause", async () => {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = listener.addr.port;
  listener.close(); // nothing listens there now
  await assert.rejects(connectTcp({ hostname: HOST, port }), (error: unknown) => {
    assert.ok(error instanceof TransportError);
    assert.equal(error.code, "connect_failed");
    assert.ok(error.cause instanceof Deno.errors.ConnectionRefused, String(error.cause));
    return true;
  });
});

Deno.test("tcp: a signal aborted before the connect is aborted", async () => {
  const controller = new AbortController();
  controller.abort(new Error("stop"));
  await assert.rejects(
    connectTcp({ hostname: HOST, port: 9, signal: controller.signal }),
    (error: unknown) => {
      assert.ok(error instanceof TransportError);
      assert.equal(error.code, "aborted");
      assert.equal((error.cause as Error).message, "stop");
      return true;
    },
  );
});

Deno.test("tcp: listenTcp refuses bad options and a port in use", () => {
  const onConnection = () => {};
  assert.throws(
    () => listenTcp({ hostname: HOST, port: 0, maxFrameBytes: 0, onConnection }),
    RangeError,
  );
  for (const handshakeTimeoutMs of [0, -1, Infinity, NaN]) {
    assert.throws(
      () => listenTcp({ hostname: HOST, port: 0, handshakeTimeoutMs, onConnection }),
      RangeError,
    );
  }
  for (const bytes of [0, 63, 1.5, 2 ** 30]) {
    assert.throws(
      () => listenTcp({ hostname: HOST, port: 0, readBufferBytes: bytes, onConnection }),
      RangeError,
    );
    assert.throws(
      () => listenTcp({ hostname: HOST, port: 0, writeBufferBytes: bytes, onConnection }),
      RangeError,
    );
  }
  const listener = listenTcp({ hostname: HOST, port: 0, onConnection });
  try {
    assert.throws(
      () => listenTcp({ hostname: HOST, port: listener.addr.port, onConnection }),
      Deno.errors.AddrInUse,
    );
  } finally {
    listener.close();
  }
});

Deno.test("tcp: maxConnections closes connections beyond the limit on accept", async () => {
  const accepted: Promise<unknown>[] = [];
  const listener = listenTcp({
    hostname: HOST,
    port: 0,
    maxConnections: 1,
    onConnection: (conn) => {
      accepted.push((async () => {
        for await (const frame of conn.frames()) await conn.send(frame);
      })());
    },
  });
  const first = await connectTcp({ hostname: HOST, port: listener.addr.port });
  const second = await connectTcp({ hostname: HOST, port: listener.addr.port });
  try {
    const reading = (async () => {
      for await (const _ of second.frames());
    })();
    assert.equal((await second.closed).reason, "peer_closed");
    await reading;
    await first.send(new Uint8Array([1, 2, 3]));
    const frames = first.frames();
    assert.deepEqual([...(await frames.next()).value!], [1, 2, 3]);
    await frames.return?.();
    assert.equal(listener.connections(), 1);
  } finally {
    first.close();
    await listener.close();
    await Promise.all(accepted);
  }
});

Deno.test("tcp: tiny read and write buffers still carry frames of every size intact", async () => {
  const loops: Promise<void>[] = [];
  const small = { readBufferBytes: 64, writeBufferBytes: 64 };
  const listener = listenTcp({
    hostname: HOST,
    port: 0,
    ...small,
    onConnection: (conn) => {
      loops.push((async () => {
        for await (const frame of conn.frames()) await conn.send(frame);
      })());
    },
  });
  const client = await connectTcp({ hostname: HOST, port: listener.addr.port, ...small });
  try {
    // Around the 64-byte buffers, around the 16 KiB direct-write minimum,
    // and up to the maximum; sent all at once, so batches mix them.
    const sizes = [1, 55, 59, 60, 61, 64, 65, 100, 16_383, 16_384, 16_385, 70_000, 262_144];
    const frames = sizes.map((size, i) =>
      Uint8Array.from({ length: size }, (_, j) => (i + j) & 255)
    );
    const sends = Promise.all(frames.map((frame) => client.send(frame)));
    let i = 0;
    for await (const echoed of client.frames()) {
      assert.deepEqual(echoed, frames[i], `frame ${i} of ${sizes[i]} bytes`);
      if (++i === frames.length) break;
    }
    await sends;
  } finally {
    client.close();
    await listener.close();
    await Promise.all(loops);
  }
});

Deno.test("tcp: with an idle read buffer, frames of every size arrive intact and parked connections hold only it", async () => {
  const IDLE = 512;
  const READ = 4096;
  const server = echoListener({ readBufferBytes: READ, idleReadBufferBytes: IDLE });
  const clients: FramedConnection[] = [];
  try {
    for (let i = 0; i < 8; i++) {
      clients.push(await connectTcp({ hostname: HOST, port: server.listener.addr.port }));
    }
    const ends = await Promise.all(clients.map((client) => server.serverOf(client)));
    // One at a time, the server end parked before each (so each frame's
    // first read after the one already waiting is small), then many at
    // once (reads come back full: pooled buffers, direct reads).
    const sizes = [
      1,
      100,
      IDLE - 5,
      IDLE - 4,
      IDLE,
      IDLE + 1,
      READ,
      READ + 1,
      70_000,
      MAX_FRAME_BYTES,
    ];
    for (const [i, client] of clients.entries()) {
      for (const size of sizes) {
        ends[i].park();
        await assertEchoes(client, size, `client ${i}, ${size} bytes`);
      }
    }
    const burst = Array.from(
      { length: 300 },
      (_, i) => Uint8Array.from({ length: 1 + (i * 7919) % 20_000 }, (_, j) => (i + j) & 255),
    );
    await Promise.all(clients.map(async (client, c) => {
      const sends = Promise.all(burst.map((frame) => client.send(frame)));
      let i = 0;
      for await (const echoed of client.frames()) {
        assert.deepEqual(echoed, burst[i], `client ${c}: frame ${i} of the burst`);
        if (++i === burst.length) break;
      }
      await sends;
    }));
    // Quiet now, and parked: after one more frame (read into the buffer
    // its waiting read had), each server end waits with its small buffer
    // alone (the pooled one back, the decoder's given up between frames).
    for (const end of ends) end.park();
    for (const client of clients) await assertEchoes(client, 100, "parked");
    await until(
      () => ends.every((conn) => (conn as SocketConnection).readBufferedBytes === IDLE),
      "every quiet server end holds its idle buffer only",
    );
    // And they still carry frames.
    for (const client of clients) await assertEchoes(client, 70_000, "after the quiet spell");
  } finally {
    for (const client of clients) client.close();
    await server.close();
  }
});

Deno.test("tcp: parking costs one small read per quiet spell, never one per frame", async () => {
  const IDLE = 512;
  const READ = 4096;
  const raw = Deno.listen({ hostname: HOST, port: 0 });
  const client = await connectTcp({ hostname: HOST, port: raw.addr.port });
  const accepted = await raw.accept();
  raw.close();
  /** The size of what each read of the server end reads into. */
  const reads: number[] = [];
  const counting = new Proxy(accepted, {
    get(target, key) {
      if (key === "read") {
        return (buffer: Uint8Array) => {
          reads.push(buffer.length);
          return target.read(buffer);
        };
      }
      const value = Reflect.get(target, key);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const server = new SocketConnection(counting, {
    transport: "tcp",
    readBufferBytes: READ,
    idleReadBufferBytes: IDLE,
  });
  const echo = (async () => {
    for await (const frame of server.frames()) await server.send(frame).catch(() => {});
  })();
  const roundTrips = async (length: number, what: string) => {
    for (let i = 0; i < 20; i++) await assertEchoes(client, length, `${what} ${i}`);
  };
  const small = () => reads.filter((size) => size === IDLE).length;
  try {
    // A new connection starts parked: its first read is small, and since
    // it fills, every read after it takes a full buffer.
    assert.equal(server.parked, true);
    await roundTrips(1000, "1000 bytes, from parked");
    assert.equal(small(), 1, `reads: ${reads}`);
    assert.equal(server.parked, false);
    // Frames flowing, small or large: never the small buffer again.
    reads.length = 0;
    await roundTrips(100, "100 bytes, unparked");
    await roundTrips(3000, "3000 bytes, unparked");
    assert.equal(small(), 0, `reads: ${reads}`);
    assert.ok(server.readBufferedBytes >= READ);
    // Parked (as a sweep would): from the next wait on, the small buffer
    // alone, and short reads leave it parked.
    server.park();
    reads.length = 0;
    await roundTrips(100, "100 bytes, parked");
    assert.deepEqual(new Set(reads), new Set([IDLE]), `reads: ${reads}`);
    assert.equal(server.parked, true);
    await until(() => server.readBufferedBytes === IDLE, "a parked end holds its idle buffer only");
    // The first frame larger than the small buffer unparks it: the small
    // read already waiting, then full-size ones.
    assert.equal(reads.at(-1), IDLE, "it waits with the small buffer");
    reads.splice(0, reads.length - 1);
    await roundTrips(1000, "1000 bytes, from parked again");
    assert.equal(small(), 1, `reads: ${reads}`);
    assert.equal(server.parked, false);
  } finally {
    client.close();
    await echo;
    server.close();
  }
});

Deno.test("tcp: idleReadBufferBytes must lie from 64 bytes to readBufferBytes", () => {
  const onConnection = () => {};
  for (const idle of [0, 63, 4097, 1.5]) {
    assert.throws(
      () =>
        listenTcp({
          hostname: HOST,
          port: 0,
          readBufferBytes: 4096,
          idleReadBufferBytes: idle,
          onConnection,
        }),
      RangeError,
      String(idle),
    );
  }
});

// ---------------------------------------------------------------------------
// What unauthenticated peers can make a listener hold

/** Waits until `condition()` holds, polling; fails after `ms` naming `what`. */
async function until(condition: () => boolean, what: string, ms = 10_000): Promise<void> {
  const started = performance.now();
  while (!condition()) {
    if (performance.now() - started > ms) assert.fail(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

/** The version byte and the header of a frame of `length` bytes, as a raw peer sends them. */
function versionAndHeader(length: number): Uint8Array {
  const bytes = new Uint8Array(5);
  bytes[0] = PROTOCOL_VERSION;
  encodeFrameHeader(length, bytes, 1);
  return bytes;
}

/** Reads a raw conn until the peer closes it (EOF or reset). */
async function readUntilClosed(conn: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(4096);
  try {
    while (await conn.read(buffer) !== null);
  } catch {
    // A reset is a close too.
  }
}

/** A listener whose connections echo, recording what it accepted and reported. */
function echoListener(options: Partial<Parameters<typeof listenTcp>[0]> = {}) {
  const accepted: FramedConnection[] = [];
  const errors: Error[] = [];
  const loops: Promise<void>[] = [];
  const listener = listenTcp({
    hostname: HOST,
    port: 0,
    ...options,
    onConnection: (conn) => {
      accepted.push(conn);
      loops.push((async () => {
        for await (const frame of conn.frames()) await conn.send(frame).catch(() => {});
      })());
    },
    onError: (error) => errors.push(error),
  });
  /** The server end of `client`. */
  const serverOf = async (client: FramedConnection | Deno.Conn) => {
    const port = (client.localAddr as Deno.NetAddr).port;
    const find = () => accepted.find((conn) => conn.remoteAddr.port === port);
    await until(() => find() !== undefined, `accepting port ${port}`);
    return find()!;
  };
  return {
    listener,
    accepted,
    errors,
    serverOf,
    async close() {
      await listener.close();
      await Promise.all(loops);
    },
  };
}

async function assertEchoes(conn: FramedConnection, length: number, what: string): Promise<void> {
  const frame = Uint8Array.from({ length }, (_, i) => (i * 13 + length) & 0xff);
  await within(conn.send(frame), `${what}: send`);
  const frames = conn.frames();
  try {
    const { value, done } = await within(frames.next(), `${what}: echo`);
    assert.ok(!done, `${what}: the connection closed`);
    assert.deepEqual(value, frame, `${what}: echoed bytes`);
  } finally {
    await frames.return?.();
  }
}

function assertOversized(info: { reason: string; error?: Error }): void {
  assert.equal(info.reason, "oversized", info.error?.message);
  assert.ok(info.error instanceof FrameError);
  assert.equal(info.error.code, "oversized");
}

Deno.test("tcp: peers that send only a maximal frame's header hold no frame-sized buffers", async () => {
  const PEERS = 40;
  const READ_BUFFER = 4096;
  const server = echoListener({ readBufferBytes: READ_BUFFER });
  const raws: Deno.Conn[] = [];
  try {
    for (let i = 0; i < PEERS; i++) {
      const raw = await Deno.connect({ hostname: HOST, port: server.listener.addr.port });
      raws.push(raw);
      await writeAll(raw, versionAndHeader(MAX_FRAME_BYTES));
    }
    // Each server end reads the header; its decoder then holds a partial frame.
    const held = () =>
      server.accepted.map((conn) => {
        assert.ok(conn instanceof SocketConnection);
        return conn.readBufferedBytes;
      });
    await until(
      () => server.accepted.length === PEERS && held().every((bytes) => bytes > READ_BUFFER),
      "every server end has read its header",
    );
    for (const bytes of held()) {
      assert.ok(
        bytes <= READ_BUFFER + MIN_PARTIAL_BYTES,
        `a header-only peer holds ${bytes} bytes`,
      );
    }
    // All of them together hold less than one of the frames they claim.
    const total = held().reduce((a, b) => a + b, 0);
    assert.ok(total < MAX_FRAME_BYTES, `${PEERS} header-only peers hold ${total} bytes in all`);

    // The bytes themselves are welcome: one peer sends its frame's body, in
    // pieces, and gets the frame back whole; the buffer grew with the body.
    const first = await server.serverOf(raws[0]) as SocketConnection;
    const body = Uint8Array.from({ length: MAX_FRAME_BYTES }, (_, i) => (i * 7) & 0xff);
    await writeAll(raws[0], body.subarray(0, 1000));
    await until(() => first.readBufferedBytes > READ_BUFFER + MIN_PARTIAL_BYTES, "growth");
    assert.ok(first.readBufferedBytes <= READ_BUFFER + 3 * 1004, `${first.readBufferedBytes}`);
    const echo = new Uint8Array(5 + MAX_FRAME_BYTES);
    const reading = (async () => {
      for (let at = 0; at < echo.length;) {
        const n = await raws[0].read(echo.subarray(at));
        if (n === null) throw new Error("closed before the echo");
        at += n;
      }
    })();
    await writeAll(raws[0], body.subarray(1000));
    await within(reading, "the echo of the whole frame");
    assert.deepEqual(echo.subarray(0, 5), versionAndHeader(MAX_FRAME_BYTES));
    assert.deepEqual(echo.subarray(5), body);
    assert.ok(held().slice(1).every((bytes) => bytes <= READ_BUFFER + MIN_PARTIAL_BYTES));
    assert.equal(server.listener.connections(), PEERS);
  } finally {
    for (const raw of raws) raw.close();
    await server.close();
  }
});

Deno.test("tcp: maxReceiveFrameBytes holds frames to a lower limit until the connection raises it", async () => {
  const LIMIT = 1000;
  const server = echoListener({ maxReceiveFrameBytes: LIMIT });
  const port = server.listener.addr.port;
  const good = await connectTcp({ hostname: HOST, port });
  const raw = await Deno.connect({ hostname: HOST, port });
  try {
    const goodServer = await server.serverOf(good);
    assert.equal(goodServer.maxFrameBytes, MAX_FRAME_BYTES);
    assert.equal(goodServer.maxReceiveFrameBytes, LIMIT);
    assert.equal(good.maxReceiveFrameBytes, MAX_FRAME_BYTES, "the client's own limit");
    await assertEchoes(good, LIMIT, "a frame at the limit");

    // A peer whose header is one byte over the limit loses its connection,
    // from the header alone; the listener and the other connection carry on.
    const victim = server.serverOf(raw);
    await writeAll(raw, versionAndHeader(LIMIT + 1));
    assertOversized(await within((await victim).closed, "the oversized close"));
    await within(readUntilClosed(raw), "the raw socket is dropped");
    await assertEchoes(good, 10, "the other connection");
    assert.equal(server.listener.connections(), 1);
    assert.deepEqual(server.errors, []);

    // Authenticated: the server raises the limit, and a maximal frame passes.
    goodServer.setMaxReceiveFrameBytes(goodServer.maxFrameBytes);
    assert.equal(goodServer.maxReceiveFrameBytes, MAX_FRAME_BYTES);
    await assertEchoes(good, MAX_FRAME_BYTES, "a maximal frame after raising");
    for (const bad of [0, -1, 1.5, NaN, MAX_FRAME_BYTES + 1]) {
      assert.throws(() => goodServer.setMaxReceiveFrameBytes(bad), RangeError);
    }
    // Lowered again, it holds for the next header.
    goodServer.setMaxReceiveFrameBytes(10);
    const clientReading = (async () => {
      for await (const _ of good.frames());
    })();
    await good.send(new Uint8Array(11));
    assertOversized(await within(goodServer.closed, "lowered limit"));
    assert.equal((await within(good.closed, "the client sees the close")).reason, "peer_closed");
    await clientReading;
  } finally {
    good.close();
    raw.close();
    await server.close();
  }
});

Deno.test("tcp: maxReceiveFrameBytes is checked up front, and binds a client's receiving too", async () => {
  const onConnection = () => {};
  for (const maxReceiveFrameBytes of [0, 1.5, MAX_FRAME_BYTES + 1]) {
    assert.throws(
      () => listenTcp({ hostname: HOST, port: 0, maxReceiveFrameBytes, onConnection }),
      RangeError,
    );
  }
  assert.throws(
    () =>
      listenTcp({
        hostname: HOST,
        port: 0,
        maxFrameBytes: 100,
        maxReceiveFrameBytes: 101,
        onConnection,
      }),
    RangeError,
  );
  await assert.rejects(
    connectTcp({ hostname: HOST, port: 9, maxReceiveFrameBytes: 0 }),
    RangeError,
  );

  const server = echoListener();
  const client = await connectTcp({
    hostname: HOST,
    port: server.listener.addr.port,
    maxReceiveFrameBytes: 10,
  });
  try {
    assert.equal(client.maxReceiveFrameBytes, 10);
    await assertEchoes(client, 10, "a frame at the client's limit");
    const reading = (async () => {
      for await (const _ of client.frames());
    })();
    // The client may send what it may not receive: its echo closes it.
    await client.send(new Uint8Array(11));
    assertOversized(await within(client.closed, "the client refuses the echo"));
    await reading;
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("tcp: maxConnectionsPerSource refuses one address's extra connections, counted and reported", async () => {
  const server = echoListener({ maxConnectionsPerSource: 2 });
  const port = server.listener.addr.port;
  const clients: FramedConnection[] = [];
  const connect = async () => {
    const client = await connectTcp({ hostname: HOST, port });
    clients.push(client);
    return client;
  };
  try {
    const [a, b] = [await connect(), await connect()];
    await server.serverOf(a);
    await server.serverOf(b);
    assert.deepEqual(server.listener.refused(), { maxConnections: 0, maxConnectionsPerSource: 0 });

    const c = await connect();
    const reading = (async () => {
      for await (const _ of c.frames());
    })();
    assert.equal((await within(c.closed, "the third is closed")).reason, "peer_closed");
    await reading;
    await until(() => server.errors.length === 1, "the refusal is reported");
    const error = server.errors[0];
    assert.ok(error instanceof ConnectionLimitError, String(error));
    assert.equal(error.code, "too_many_from_source");
    assert.equal(error.source, "127.0.0.1");
    assert.equal(error.remoteAddr.port, c.localAddr.port);
    assert.deepEqual(server.listener.refused(), { maxConnections: 0, maxConnectionsPerSource: 1 });
    assert.equal(server.listener.connections(), 2);
    assert.ok(server.accepted.every((conn) => conn.remoteAddr.port !== c.localAddr.port));
    await assertEchoes(a, 100, "a");
    await assertEchoes(b, 100, "b");

    // A connection that closes frees its source's slot.
    a.close();
    await until(() => server.listener.connections() === 1, "a's server end closes");
    const d = await connect();
    await server.serverOf(d);
    await assertEchoes(d, 100, "d, in a's place");
    assert.deepEqual(server.listener.refused(), { maxConnections: 0, maxConnectionsPerSource: 1 });
  } finally {
    for (const client of clients) client.close();
    await server.close();
  }
});

Deno.test("tcp: maxConnections refusals are counted too, and not reported", async () => {
  const server = echoListener({ maxConnections: 1, maxConnectionsPerSource: 5 });
  const port = server.listener.addr.port;
  const first = await connectTcp({ hostname: HOST, port });
  const second = await connectTcp({ hostname: HOST, port });
  try {
    await server.serverOf(first);
    const reading = (async () => {
      for await (const _ of second.frames());
    })();
    assert.equal((await within(second.closed, "refused")).reason, "peer_closed");
    await reading;
    assert.deepEqual(server.listener.refused(), { maxConnections: 1, maxConnectionsPerSource: 0 });
    assert.deepEqual(server.errors, []);
    for (const bad of [0, -1, NaN]) {
      assert.throws(
        () =>
          listenTcp({ hostname: HOST, port: 0, maxConnectionsPerSource: bad, onConnection() {} }),
        RangeError,
      );
    }
  } finally {
    first.close();
    second.close();
    await server.close();
  }
});

Deno.test("connectionSource: an IPv4 address, an IPv6 /64, a mapped IPv4 address as IPv4", () => {
  const cases: [string, string][] = [
    ["203.0.113.7", "203.0.113.7"],
    ["127.0.0.1", "127.0.0.1"],
    ["2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"],
    ["2001:db8:1:2::1", "2001:db8:1:2::/64"],
    ["2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"],
    ["2001:db8:1:3::1", "2001:db8:1:3::/64"],
    ["2001:0DB8:0000:0000:ffff::1", "2001:db8::/64"],
    ["2001:db8::", "2001:db8::/64"],
    ["2001:db8:0:1::5", "2001:db8:0:1::/64"],
    ["0:0:1::", "0:0:1::/64"],
    ["::1", "::/64"],
    ["::", "::/64"],
    ["fe80::1%eth0", "fe80::/64"],
    ["[2001:db8::1]", "2001:db8::/64"],
    ["::ffff:192.0.2.1", "192.0.2.1"],
    ["::ffff:c000:201", "192.0.2.1"],
    ["64:ff9b::192.0.2.1", "64:ff9b::/64"],
    // Not addresses: each is its own source.
    ["1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8:9"],
    ["1::2::3", "1::2::3"],
    ["::ffff:1.2.3", "::ffff:1.2.3"],
    ["12345::", "12345::"],
    ["1.2.3.4::", "1.2.3.4::"],
    ["::1.2.3.4:5", "::1.2.3.4:5"],
  ];
  for (const [hostname, source] of cases) {
    assert.equal(connectionSource(hostname), source, hostname);
  }
});

Deno.test("tcp: maxConnectionsPerSource over IPv6: ::1 is one /64, a mapped 127.0.0.1 another", async () => {
  // The test's own permissions allow 127.0.0.1 only, so a child process
  // listens on :: (dual-stack) and connects from ::1 and from 127.0.0.1.
  const tcp = new URL("./tcp.ts", import.meta.url).href;
  const script = `
    import { connectTcp, listenTcp } from ${JSON.stringify(tcp)};
    let listener;
    try {
      listener = listenTcp({
        hostname: "::", port: 0, maxConnectionsPerSource: 1,
        onConnection: async (conn) => { for await (const f of conn.frames()) await conn.send(f); },
        onError: (error) => errors.push(error),
      });
    } catch (error) {
      console.log(JSON.stringify({ unavailable: String(error) }));
      Deno.exit(0);
    }
    const errors = [];
    const port = listener.addr.port;
    const open = [];
    const attempt = async (hostname) => {
      const conn = await connectTcp({ hostname, port });
      open.push(conn);
      await conn.send(new Uint8Array([1, 2, 3]));
      const frames = conn.frames();
      const timer = setTimeout(() => conn.close("no echo"), 5000);
      const { done } = await frames.next();
      clearTimeout(timer);
      await frames.return();
      return done ? (await conn.closed).reason : "echoed";
    };
    const results = [];
    for (const hostname of ["::1", "::1", "127.0.0.1", "127.0.0.1"]) {
      results.push([hostname, await attempt(hostname)]);
    }
    console.log(JSON.stringify({
      results,
      sources: errors.map((e) => e.source),
      codes: errors.map((e) => e.code),
      refused: listener.refused(),
      connections: listener.connections(),
    }));
    for (const conn of open) conn.close();
    await listener.close();
  `;
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(stdout).trim();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  const result = JSON.parse(text);
  if (result.unavailable) {
    console.log(`skipped: cannot listen on :: here (${result.unavailable})`);
    return;
  }
  assert.deepEqual(result.results, [
    ["::1", "echoed"],
    ["::1", "peer_closed"],
    ["127.0.0.1", "echoed"],
    ["127.0.0.1", "peer_closed"],
  ]);
  assert.deepEqual(result.sources, ["::/64", "127.0.0.1"]);
  assert.deepEqual(result.codes, ["too_many_from_source", "too_many_from_source"]);
  assert.deepEqual(result.refused, { maxConnections: 0, maxConnectionsPerSource: 2 });
  assert.equal(result.connections, 2);
});
