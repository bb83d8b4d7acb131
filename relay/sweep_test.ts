/**
 * The relay's sweep parks quiet connections (they wait for bytes with a
 * small read buffer, src/transport/connection.ts) and leaves busy ones
 * alone: parking is per quiet spell, decided once per sweep, never per
 * frame.
 */
import assert from "node:assert/strict";
import { issueCredential } from "../src/credential/credential.ts";
import type { Credential } from "../src/credential/credential.ts";
import { Identity } from "../src/identity/identity.ts";
import { SoftwareSigner } from "../src/identity/software_signer.ts";
import { connectRelay } from "../src/relay_client/relay_client.ts";
import { Node } from "../src/routing/node.ts";
import { authority, eventually, member } from "../src/testdata/channel_fixtures.ts";
import type { FramedConnection, SocketConnection } from "../src/transport/connection.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import { startRelay } from "./relay.ts";

/** The sweep's period with these options: max(100, min(idle / 4, slow / 4, 5000)) ms. */
const SWEEP_MS = 200;
const IDLE_BUFFER = 512;
const READ_BUFFER = 4096;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("relay: the sweep parks a connection quiet since the sweep before, never a busy one", async () => {
  const ca = await authority();
  const identity = await Identity.create(await SoftwareSigner.generate());
  let credential: Credential | null = null;
  /** The relay's end of each admitted connection, by the client's port, and its park() calls. */
  const ends = new Map<number, { conn: SocketConnection; parks: number }>();
  const relay = startRelay({
    hostname: "127.0.0.1",
    port: 0,
    trust: ca.trust,
    identity,
    credential: () => credential,
    idleTimeoutMs: 8 * SWEEP_MS * 4,
    slowConsumerTimeoutMs: SWEEP_MS * 4,
    readBufferBytes: READ_BUFFER,
    idleReadBufferBytes: IDLE_BUFFER,
    onAdmitted: (conn: FramedConnection) => {
      const end = { conn: conn as SocketConnection, parks: 0 };
      const park = conn.park.bind(conn);
      conn.park = () => {
        end.parks++;
        park();
      };
      ends.set(conn.remoteAddr.port, end);
    },
  });
  credential = await issueCredential(ca.identity, {
    subject: identity.identifier,
    subjectKey: identity.primaryKey,
    attributes: { role: "relay", relay_addresses: [`127.0.0.1:${relay.addr.port}`] },
  });
  const node = new Node({ name: "members" });
  const transport = new TcpTransport(node);
  let sending = true;
  try {
    const edge = await member(ca.identity, { role: "edge" });
    const open = () =>
      connectRelay({
        transport,
        hostname: "127.0.0.1",
        port: relay.addr.port,
        identity: edge.identity,
        credential: edge.credentials()[0],
        trust: ca.trust,
      });
    const [busy, quiet] = [await open(), await open()];
    await eventually(() => ends.size === 2);
    const busyEnd = ends.get(busy.connection.localAddr.port)!;
    const quietEnd = ends.get(quiet.connection.localAddr.port)!;
    // Admitted: both wait parked, on the small buffer alone.
    for (const end of [busyEnd, quietEnd]) {
      assert.equal(end.parks, 1, "parked once, when admitted");
      await eventually(() => end.conn.readBufferedBytes === IDLE_BUFFER);
    }

    // Frames larger than the small buffer (to an address the relay drops)
    // unpark a connection.
    const frame = new Uint8Array(2 * READ_BUFFER);
    const drop = (from: typeof busy) =>
      node.route({ onward: [from.address, "c.0000000000000000"], return: [], payload: frame });
    const dropped = relay.stats.dropped;
    await drop(quiet);
    await drop(busy);
    await eventually(() => relay.stats.dropped === dropped + 2);
    assert.equal(quietEnd.conn.parked, false, "a full small read unparks");
    assert.equal(busyEnd.conn.parked, false);

    // The busy one sends every 10 ms for six sweeps, the other nothing.
    const pump = (async () => {
      while (sending) {
        await drop(busy);
        await sleep(10);
      }
    })();
    await sleep(6 * SWEEP_MS);
    assert.equal(busyEnd.parks, 1, "the sweep never parked the busy connection");
    assert.equal(busyEnd.conn.parked, false);
    assert.ok(
      busyEnd.conn.readBufferedBytes >= READ_BUFFER,
      `the busy one keeps its full read buffer (${busyEnd.conn.readBufferedBytes} bytes)`,
    );
    assert.ok(quietEnd.parks >= 2, `the sweep parked the quiet one (${quietEnd.parks} parks)`);
    assert.equal(quietEnd.conn.parked, true);
    sending = false;
    await pump;

    // Parking applies from the quiet one's next wait: after one more frame
    // (read into the buffer its waiting read had) it waits on the small one.
    const small = new Uint8Array(100);
    await node.route({ onward: [quiet.address, "c.0000000000000000"], return: [], payload: small });
    await eventually(() => quietEnd.conn.readBufferedBytes === IDLE_BUFFER);
    assert.equal(quietEnd.conn.parked, true, "a short read leaves it parked");
  } finally {
    sending = false;
    await transport.close();
    await relay.close();
  }
});
