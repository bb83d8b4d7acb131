/**
 * Portal sessions on pooled plaintexts (src/channel/plaintext_pool.ts): a
 * session queues the DATA it receives, under the channel's lease, until
 * its socket write completes, and only then does the buffer go back to
 * the pool. Several sessions share the pool, so a buffer given back while
 * still queued (or while its write is pending) would be filled with
 * another session's record and show as corrupt bytes at the far end.
 *
 * Run on a synchronous record cipher (OpenSSL when the library is there,
 * else node:crypto), the path that lends plaintexts; over real TCP, with
 * sockets read slowly so that the sessions' queues fill up.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { nodeAesGcm, openSslAesGcm } from "../crypto/aes_gcm.ts";
import { connectSecureChannel, listenSecureChannels } from "../channel/handshake.ts";
import { plaintextPool } from "../channel/plaintext_pool.ts";
import { setRecordCipher } from "../channel/transport_cipher.ts";
import { parsePolicy } from "../policy/mod.ts";
import { Node } from "../routing/node.ts";
import { TcpTransport } from "../transport/tcp_transport.ts";
import { authority, eventually, member } from "../testdata/channel_fixtures.ts";
import { createInlet, createOutlet } from "./portal.ts";
import { patternBytes as stream } from "../testdata/test_helpers.ts";

// This test module's own process-wide backend (each test module runs on its own).
setRecordCipher((() => {
  try {
    return openSslAesGcm();
  } catch {
    return nodeAesGcm;
  }
})());

const KiB = 1024;
const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A backend that waits `delayMs`, then echoes what it reads in small,
 * spaced-out steps, so that the outlet's session queues what the inlet
 * sends while its writes to this socket wait.
 */
function slowEcho(delayMs: number): Deno.Listener {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) {
      (async () => {
        await pause(delayMs);
        const buffer = new Uint8Array(16 * KiB);
        for (let reads = 0;; reads++) {
          const n = await conn.read(buffer);
          if (n === null) break;
          for (let w = 0; w < n;) w += await conn.write(buffer.subarray(w, n));
          if (reads % 8 === 0) await pause(1);
        }
        await conn.closeWrite().catch(() => {});
        conn.close();
      })().catch(() => {});
    }
  })().catch(() => {});
  return listener;
}

/** Writes `data` to the inlet; reads the echo back slowly, after `delayMs`. */
async function slowClient(port: number, data: Uint8Array, delayMs: number): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const writing = (async () => {
    for (let w = 0; w < data.length;) {
      w += await conn.write(data.subarray(w, Math.min(data.length, w + 256 * KiB)));
    }
    await conn.closeWrite();
  })();
  await pause(delayMs);
  const received = new Uint8Array(data.length + 1);
  let at = 0;
  for (let reads = 0;; reads++) {
    const n = await conn.read(received.subarray(at, Math.min(received.length, at + 16 * KiB)));
    if (n === null) break;
    at += n;
    if (reads % 8 === 0) await pause(1);
  }
  await writing;
  conn.close();
  return received.subarray(0, at);
}

Deno.test("portal: queued DATA keeps its pooled buffer until written; every byte intact across sessions both ways", async () => {
  const server = slowEcho(300);
  const ca = await authority();
  const gatewayNode = new Node({ name: "gateway" });
  const edgeNode = new Node({ name: "edge" });
  const tg = new TcpTransport(gatewayNode);
  const te = new TcpTransport(edgeNode);
  listenSecureChannels({
    node: gatewayNode,
    address: "api",
    local: await member(ca.identity, { role: "gateway" }),
    policy: { trust: ca.trust },
  });
  const outlet = createOutlet({
    node: gatewayNode,
    name: "echo",
    backend: { hostname: "127.0.0.1", port: (server.addr as Deno.NetAddr).port },
    policy: parsePolicy('subject.role == "edge"'),
  });
  const listener = tg.listen({ hostname: "127.0.0.1", port: 0 });
  const conn = await te.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const channel = await connectSecureChannel({
    node: edgeNode,
    route: [conn.address, "api"],
    local: await member(ca.identity, { role: "edge" }),
    policy: { trust: ca.trust },
  });
  const inlet = createInlet({
    node: edgeNode,
    listen: { hostname: "127.0.0.1", port: 0 },
    route: () => [channel.address, "outlet.echo"],
  });
  try {
    const before = { ...plaintextPool.stats };
    const SESSIONS = 4;
    const SIZE = 4 * 1024 * KiB;
    const sent = Array.from({ length: SESSIONS }, (_, i) => stream(i, SIZE));
    const echoed = await Promise.all(
      sent.map((data, i) => slowClient(inlet.addr.port, data, 200 + 50 * i)),
    );
    echoed.forEach((bytes, i) => {
      assert.equal(bytes.length, SIZE, `session ${i}: length`);
      assert.equal(sha(bytes), sha(sent[i]), `session ${i}: bytes changed on the way`);
    });
    const lent = plaintextPool.stats.lent - before.lent;
    const reused = plaintextPool.stats.reused - before.reused;
    const released = plaintextPool.stats.released - before.released;
    // Both directions went through pooled buffers, and most were used again:
    // without that the test would prove nothing.
    assert.ok(lent >= (2 * SESSIONS * SIZE) / (128 * KiB), `pooled plaintexts: ${lent}`);
    assert.ok(reused >= lent / 2, `reused ${reused} of ${lent}`);
    assert.ok(released >= reused, `given back ${released}`);
    await eventually(() => outlet.stats.open === 0 && inlet.stats.open === 0);
  } finally {
    inlet.close();
    await channel.close();
    await te.close();
    await tg.close();
    server.close();
  }
});
