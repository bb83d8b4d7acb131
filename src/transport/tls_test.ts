/**
 * The transport conformance suite over TLS, and what is specific to TLS:
 * certificate and name checks, `serverName`, failed and stalled incoming
 * handshakes, aborts during the handshake, handshakes in progress counted
 * against `maxConnectionsPerSource`.
 *
 * Certificates: a throwaway CA and a server certificate for `localhost` and
 * 127.0.0.1 (P-256, one day), made with the `openssl` CLI in a temporary
 * directory when the first test needs them; the directory is removed as
 * soon as the PEM text has been read.
 */
import assert from "node:assert/strict";
import { TransportError } from "../errors.ts";
import type { FramedConnection } from "./connection.ts";
import { ConnectionLimitError, connectTcp, listenTcp } from "./tcp.ts";
import { transportConformance, type TransportFixture, within } from "./transport_conformance.ts";

const HOST = "127.0.0.1";

/** PEM text of a CA certificate and of a server certificate and key it signed. */
interface TestPki {
  caCert: string;
  cert: string;
  key: string;
  /** A second CA, unrelated to the server certificate. */
  otherCaCert: string;
}

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const { code, stderr } = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null" })
    .output();
  if (code !== 0) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(stderr)}`);
  }
}

async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(
    dir,
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.crt`,
    "-days",
    "1",
    "-subj",
    `/CN=Nexus transport test ${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  );
}

async function makePki(): Promise<TestPki> {
  const dir = await Deno.makeTempDir({ prefix: "nexus_tls_test_" });
  try {
    await makeCa(dir, "ca");
    await makeCa(dir, "other");
    await openssl(
      dir,
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      "server.key",
      "-out",
      "server.csr",
      "-subj",
      "/CN=localhost",
    );
    await Deno.writeTextFile(
      `${dir}/server.ext`,
      [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature",
        "extendedKeyUsage=serverAuth",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "",
      ].join("\n"),
    );
    await openssl(
      dir,
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.crt",
      "-days",
      "1",
      "-extfile",
      "server.ext",
    );
    const read = (name: string) => Deno.readTextFile(`${dir}/${name}`);
    return {
      caCert: await read("ca.crt"),
      cert: await read("server.crt"),
      key: await read("server.key"),
      otherCaCert: await read("other.crt"),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

let pkiPromise: Promise<TestPki> | undefined;
/** The certificates, made once for the whole file. */
function pki(): Promise<TestPki> {
  return pkiPromise ??= makePki();
}

async function tlsFixture(): Promise<TransportFixture> {
  const { caCert, cert, key } = await pki();
  return {
    transport: "tls",
    listen: (options) => listenTcp({ hostname: HOST, port: 0, tls: { cert, key }, ...options }),
    connect: (port, options) =>
      connectTcp({ hostname: HOST, port, tls: { caCerts: [caCert] }, ...options }),
    rawConnect: (port) => Deno.connectTls({ hostname: HOST, port, caCerts: [caCert] }),
    rawListen: () => Deno.listenTls({ hostname: HOST, port: 0, cert, key }),
    acceptedNoDelay: false,
  };
}

transportConformance("tls", tlsFixture);

/** A TLS listener that echoes, recording onError reports. */
async function echoListener(options: { handshakeTimeoutMs?: number } = {}) {
  const { cert, key } = await pki();
  const errors: Error[] = [];
  const loops: Promise<void>[] = [];
  const listener = listenTcp({
    hostname: HOST,
    port: 0,
    tls: { cert, key },
    ...options,
    onConnection: (conn) => {
      loops.push((async () => {
        for await (const frame of conn.frames()) await conn.send(frame).catch(() => {});
      })());
    },
    onError: (error) => errors.push(error),
  });
  return {
    listener,
    errors,
    async close() {
      await listener.close();
      await Promise.all(loops);
    },
  };
}

async function assertEcho(conn: Awaited<ReturnType<typeof connectTcp>>): Promise<void> {
  await conn.send(new Uint8Array([1, 2, 3]));
  const frames = conn.frames();
  const { value } = await within(frames.next(), "echo");
  assert.deepEqual([...value!], [1, 2, 3]);
  await frames.return?.();
}

function assertTlsFailed(error: unknown): true {
  assert.ok(error instanceof TransportError, `expected TransportError, got ${error}`);
  assert.equal(error.code, "tls_failed", error.message);
  assert.ok(error.cause instanceof Error);
  return true;
}

Deno.test("tls: a certificate from another CA is refused at connect, as tls_failed", async () => {
  const { otherCaCert } = await pki();
  const server = await echoListener();
  try {
    await assert.rejects(
      connectTcp({
        hostname: HOST,
        port: server.listener.addr.port,
        tls: { caCerts: [otherCaCert] },
      }),
      assertTlsFailed,
    );
    await assert.rejects(
      connectTcp({ hostname: HOST, port: server.listener.addr.port, tls: { caCerts: [] } }),
      assertTlsFailed,
    );
    // The server side reports its failed handshakes and keeps serving.
    for (let i = 0; i < 100 && server.errors.length < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(server.errors.length, 2);
    assert.ok(server.errors.every((e) => e instanceof TransportError && e.code === "tls_failed"));
    assert.equal(server.listener.connections(), 0);
  } finally {
    await server.close();
  }
});

Deno.test("tls: serverName picks the name checked; a name not in the certificate fails", async () => {
  const { caCert } = await pki();
  const server = await echoListener();
  const port = server.listener.addr.port;
  try {
    const byName = await connectTcp({
      hostname: HOST,
      port,
      tls: { caCerts: [caCert], serverName: "localhost" },
    });
    try {
      assert.equal(byName.transport, "tls");
      await assertEcho(byName);
    } finally {
      byName.close();
    }
    const viaLocalhost = await connectTcp({
      hostname: "localhost",
      port,
      tls: { caCerts: [caCert] },
    })
      .catch((error) => error);
    // "localhost" may resolve to ::1 first, where nothing listens; either
    // way the name check itself must not be what fails.
    if (!(viaLocalhost instanceof Error)) {
      await assertEcho(viaLocalhost);
      viaLocalhost.close();
    } else {
      assert.equal((viaLocalhost as TransportError).code, "connect_failed");
    }
    await assert.rejects(
      connectTcp({ hostname: HOST, port, tls: { caCerts: [caCert], serverName: "example.com" } }),
      assertTlsFailed,
    );
    await assert.rejects(
      connectTcp({ hostname: HOST, port, tls: { caCerts: [caCert], serverName: "127.0.0.2" } }),
      assertTlsFailed,
    );
  } finally {
    await server.close();
  }
});

Deno.test("tls: plain bytes to the TLS listener fail that handshake only", async () => {
  const { caCert } = await pki();
  const server = await echoListener();
  const port = server.listener.addr.port;
  try {
    const good = await connectTcp({ hostname: HOST, port, tls: { caCerts: [caCert] } });
    try {
      const raw = await Deno.connect({ hostname: HOST, port });
      try {
        // The framing's version byte and a frame, without TLS.
        await raw.write(new Uint8Array([1, 0, 0, 0, 1, 42, 0x16, 0x03, 0x01, 0xff, 0xff]));
        const buffer = new Uint8Array(1024);
        try {
          while (await within(raw.read(buffer), "the server drops it") !== null);
        } catch {
          // a reset is fine
        }
      } finally {
        raw.close();
      }
      assert.ok(server.errors.length >= 1);
      assert.ok(server.errors.every((e) => e instanceof TransportError && e.code === "tls_failed"));
      await assertEcho(good);
      assert.equal(server.listener.connections(), 1);
    } finally {
      good.close();
    }
  } finally {
    await server.close();
  }
});

Deno.test("tls: an incoming handshake that stalls is given up after handshakeTimeoutMs", async () => {
  const server = await echoListener({ handshakeTimeoutMs: 200 });
  const port = server.listener.addr.port;
  try {
    const raw = await Deno.connect({ hostname: HOST, port });
    try {
      const started = performance.now();
      while (server.errors.length === 0 && performance.now() - started < 5000) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const elapsed = performance.now() - started;
      assert.equal(server.errors.length, 1, "no handshake_timeout reported");
      assert.ok(elapsed >= 150, `given up after ${elapsed} ms`);
      assert.ok(server.errors[0] instanceof TransportError);
      assert.equal((server.errors[0] as TransportError).code, "handshake_timeout");
      assert.equal(server.listener.connections(), 0);
      // Deno (rustls-tokio-stream) finishes a pending server handshake in a
      // task of its own even after the conn is closed, so the socket itself
      // only goes away when this peer sends or closes; see tcp.ts.
    } finally {
      raw.close();
    }
  } finally {
    await server.close();
  }
});

Deno.test("tls: a signal aborts a handshake the server never answers", async () => {
  const { caCert } = await pki();
  // A plain TCP listener that accepts and says nothing.
  const silent = Deno.listen({ hostname: HOST, port: 0 });
  const accepted = silent.accept();
  try {
    const controller = new AbortController();
    const connecting = connectTcp({
      hostname: HOST,
      port: silent.addr.port,
      tls: { caCerts: [caCert] },
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(new Error("give up")), 100);
    await assert.rejects(connecting, (error: unknown) => {
      assert.ok(error instanceof TransportError);
      assert.equal(error.code, "aborted");
      assert.equal((error.cause as Error).message, "give up");
      return true;
    });
  } finally {
    (await accepted).close();
    silent.close();
  }
});

Deno.test("tls: a handshake in progress counts against maxConnectionsPerSource", async () => {
  const { caCert, cert, key } = await pki();
  const errors: Error[] = [];
  const loops: Promise<void>[] = [];
  const listener = listenTcp({
    hostname: HOST,
    port: 0,
    tls: { cert, key },
    handshakeTimeoutMs: 300,
    maxConnectionsPerSource: 1,
    onConnection: (conn) => {
      loops.push((async () => {
        for await (const frame of conn.frames()) await conn.send(frame).catch(() => {});
      })());
    },
    onError: (error) => errors.push(error),
  });
  const port = listener.addr.port;
  const wait = async (condition: () => boolean, what: string) => {
    for (let i = 0; i < 500 && !condition(); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok(condition(), `timed out: ${what}`);
  };
  // A peer that opens TCP and never says hello holds its source's one slot...
  const silent = await Deno.connect({ hostname: HOST, port });
  try {
    // ...so a real client from the same address is closed on accept.
    // (Deno may still complete the TLS handshake of a conn the listener has
    // closed, see tcp.ts; the client then sees the end of the stream at once.)
    const refused: FramedConnection | Error = await connectTcp({
      hostname: HOST,
      port,
      tls: { caCerts: [caCert] },
    }).catch((error) => error);
    if (refused instanceof Error) {
      assertTlsFailed(refused);
    } else {
      const frames = refused.frames();
      await refused.send(new Uint8Array([1])).catch(() => {});
      assert.equal((await within(frames.next(), "the refused client's end")).done, true);
      assert.equal((await refused.closed).reason, "peer_closed");
    }
    await wait(() => errors.some((e) => e instanceof ConnectionLimitError), "the refusal");
    const refusal = errors.find((e) => e instanceof ConnectionLimitError)!;
    assert.equal((refusal as ConnectionLimitError).source, HOST);
    assert.deepEqual(listener.refused(), { maxConnections: 0, maxConnectionsPerSource: 1 });
    // The stalled handshake is given up, which frees the slot.
    await wait(
      () => errors.some((e) => e instanceof TransportError && e.code === "handshake_timeout"),
      "the handshake timeout",
    );
    const client = await connectTcp({ hostname: HOST, port, tls: { caCerts: [caCert] } });
    try {
      await assertEcho(client);
    } finally {
      client.close();
    }
  } finally {
    silent.close();
    await listener.close();
    await Promise.all(loops);
  }
});
