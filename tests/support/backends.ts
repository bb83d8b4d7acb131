/**
 * Backends and clients shared by the cross-process portal tests
 * (tests/gateway_test.ts, tests/e2e_test.ts): a TCP backend whose first byte
 * picks its behaviour, an exchange that half-closes, redis-server and
 * redis-cli, and small helpers.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { freePort } from "../../scripts/support/free_port.ts";

export function concat(chunks: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
  let at = 0;
  for (const c of chunks) all.set(c, at), at += c.length;
  return all;
}

export function randomBytes(length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let at = 0; at < length; at += 65536) {
    crypto.getRandomValues(out.subarray(at, Math.min(length, at + 65536)));
  }
  return out;
}

export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no result in ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A TCP backend; the first byte of each connection picks what it does:
 * - `R`: read to end of stream, answer SHA-256(rest) (32 bytes) then the
 *   rest reversed, then close: both directions checked independently;
 * - `G<n>`: read to end of stream, wait 200 ms, answer SHA-256 of `n`
 *   random bytes then those bytes, then close (a reply after half-close);
 * - `E`: echo every chunk at once until the client leaves.
 */
export function tcpBackend() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const stats = { connections: 0, open: 0, eofs: 0 };
  /** performance.now() when each `E` connection ended, by order of arrival. */
  const echoEnded: (number | null)[] = [];
  const writeAll = async (conn: Deno.Conn, bytes: Uint8Array) => {
    for (let w = 0; w < bytes.length;) w += await conn.write(bytes.subarray(w));
  };
  const handle = async (conn: Deno.Conn) => {
    stats.connections++;
    stats.open++;
    const buffer = new Uint8Array(64 * 1024);
    const chunks: Uint8Array[] = [];
    let mode = 0;
    try {
      const first = await conn.read(buffer);
      if (first === null) return;
      mode = buffer[0];
      if (mode === 0x45 /* E */) {
        const index = echoEnded.push(null) - 1;
        try {
          if (first > 1) await writeAll(conn, buffer.slice(1, first));
          for (;;) {
            const n = await conn.read(buffer);
            if (n === null) break;
            await writeAll(conn, buffer.slice(0, n));
          }
        } finally {
          echoEnded[index] = performance.now();
        }
        return;
      }
      chunks.push(buffer.slice(1, first));
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null) break;
        chunks.push(buffer.slice(0, n));
      }
      stats.eofs++;
      const rest = concat(chunks);
      if (mode === 0x52 /* R */) {
        await writeAll(conn, createHash("sha256").update(rest).digest());
        await writeAll(conn, rest.reverse());
      } else if (mode === 0x47 /* G */) {
        const size = Number(new TextDecoder().decode(rest));
        await new Promise((r) => setTimeout(r, 200));
        const reply = randomBytes(size);
        await writeAll(conn, createHash("sha256").update(reply).digest());
        await writeAll(conn, reply);
      }
    } catch {
      /* the client went away */
    } finally {
      stats.open--;
      try {
        conn.close();
      } catch { /* closed */ }
    }
  };
  (async () => {
    for await (const conn of listener) void handle(conn);
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    stats,
    echoEnded,
    close: () => listener.close(),
  };
}

/** Sends `payload`, shuts the write side, reads to the end (bounded by `ms`). */
export async function exchange(
  port: number,
  payload: Uint8Array,
  ms = 20_000,
): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), ms);
  try {
    const writing = (async () => {
      for (let w = 0; w < payload.length;) w += await conn.write(payload.subarray(w));
      await conn.closeWrite();
    })();
    writing.catch(() => {});
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(64 * 1024);
    for (;;) {
      let n: number | null;
      try {
        n = await conn.read(buffer);
      } catch (error) {
        if (error instanceof Deno.errors.BadResource) throw new Error(`no end within ${ms} ms`);
        if (error instanceof Deno.errors.ConnectionReset) break; // a reset ends it too
        throw error;
      }
      if (n === null) break;
      chunks.push(buffer.slice(0, n));
    }
    await writing.catch(() => {});
    return concat(chunks);
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

export async function haveCommands(...names: string[]): Promise<boolean> {
  const out = await new Deno.Command("sh", {
    args: ["-c", names.map((n) => `command -v ${n} >/dev/null`).join(" && ")],
    stdout: "null",
    stderr: "null",
  }).output();
  return out.success;
}

/** redis-server on a free loopback port, without persistence. */
export async function redisServer() {
  const port = freePort();
  const child = new Deno.Command("redis-server", {
    args: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch (error) {
      if (Date.now() > deadline) throw new Error("redis-server did not listen", { cause: error });
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    port,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

export async function redisCli(port: number, args: string[], stdin?: Uint8Array): Promise<string> {
  const child = new Deno.Command("redis-cli", {
    args: ["-h", "127.0.0.1", "-p", String(port), ...args],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(stdin);
    await writer.close();
  }
  const out = await withTimeout(child.output(), 15_000, `redis-cli ${args.join(" ")}`);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `redis-cli ${args.join(" ")}: ${stderr}`);
  return new TextDecoder().decode(out.stdout).trim();
}
