/**
 * {@link TcpTransport} over real loopback sockets: routed messages both
 * ways, and `listen`'s `maxReceiveFrameBytes`, which holds what a peer may
 * send before something authenticates it and raises the limit on its
 * connection.
 */
import assert from "node:assert/strict";
import { Node } from "../routing/node.ts";
import type { FramedConnection } from "./connection.ts";
import { FrameError, MAX_FRAME_BYTES } from "./frame_decoder.ts";
import { within } from "./transport_conformance.ts";
import { type AttachedConnection, TcpTransport } from "./tcp_transport.ts";

/** A server node with an echo worker, and its transport listening on loopback. */
function echoServer(onConnection?: (attached: AttachedConnection) => void) {
  const node = new Node({ name: "server" });
  node.register("echo", async (message) => {
    await node.send(message.return, message.payload.slice());
  });
  const transport = new TcpTransport(node, { onConnection });
  return { node, transport };
}

/** A client node whose inbox resolves the next reply. */
function client() {
  const node = new Node({ name: "client" });
  let next = Promise.withResolvers<Uint8Array>();
  node.register("inbox", (message) => {
    next.resolve(message.payload.slice());
    next = Promise.withResolvers<Uint8Array>();
  });
  const transport = new TcpTransport(node);
  return {
    node,
    transport,
    /** Sends `payload` to the server's echo worker through `address`; resolves with the echo. */
    async echo(address: string, payload: Uint8Array): Promise<Uint8Array> {
      const reply = next.promise;
      await node.send([address, "echo"], payload, ["inbox"]);
      return await within(reply, "the echo");
    },
  };
}

Deno.test("TcpTransport.listen: maxReceiveFrameBytes holds messages until the connection raises it", async () => {
  const LIMIT = 1024;
  const accepted: FramedConnection[] = [];
  const server = echoServer(({ connection }) => accepted.push(connection));
  const listener = server.transport.listen({
    hostname: "127.0.0.1",
    port: 0,
    maxReceiveFrameBytes: LIMIT,
    maxConnectionsPerSource: 4,
  });
  const a = client();
  const b = client();
  try {
    const toA = await a.transport.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    const small = Uint8Array.from({ length: 100 }, (_, i) => i);
    assert.deepEqual(await a.echo(toA.address, small), small);
    assert.equal(accepted.length, 1);
    assert.equal(accepted[0].maxReceiveFrameBytes, LIMIT);

    // Before it is raised, a message larger than the limit closes that
    // connection, from its frame header.
    await a.node.send([toA.address, "echo"], new Uint8Array(2 * LIMIT), ["inbox"]);
    const info = await within(accepted[0].closed, "the oversized close");
    assert.equal(info.reason, "oversized");
    assert.ok(info.error instanceof FrameError);
    assert.equal((await within(toA.connection.closed, "the client sees it")).reason, "peer_closed");

    // Another connection, raised once its peer is known: large messages pass.
    const toB = await b.transport.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    assert.deepEqual(await b.echo(toB.address, small), small);
    accepted[1].setMaxReceiveFrameBytes(MAX_FRAME_BYTES);
    const large = Uint8Array.from({ length: 200 * 1024 }, (_, i) => (i * 31) & 0xff);
    assert.deepEqual(await b.echo(toB.address, large), large);
    assert.equal(listener.connections(), 1);
  } finally {
    await a.transport.close();
    await b.transport.close();
    await server.transport.close();
  }
});
