/**
 * The transport conformance suite over plain TCP, and what is specific to
 * plain TCP: connect errors and aborts.
 */
import assert from "node:assert/strict";
import { TransportError } from "../errors.ts";
import { connectTcp, listenTcp } from "./tcp.ts";
import { transportConformance, type TransportFixture } from "./transport_conformance.ts";

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
