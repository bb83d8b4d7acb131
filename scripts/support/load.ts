/**
 * The benchmarks' clients and statistics (`bench:portal`, `bench:e2e`):
 * pushing bytes to a sink over several connections at once, reading an
 * echo in full, nearest-rank quantiles, tables by key.
 *
 * @module
 */

/** Writes `bytes` to `port`, half-closes, waits for the peer's close. */
export async function pushOne(port: number, bytes: number, block: Uint8Array): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    for (let sent = 0; sent < bytes;) {
      const chunk = block.subarray(0, Math.min(block.length, bytes - sent));
      for (let w = 0; w < chunk.length;) w += await conn.write(chunk.subarray(w));
      sent += chunk.length;
    }
    await conn.closeWrite();
    if (await conn.read(new Uint8Array(1)) !== null) throw new Error("the sink sent something");
  } finally {
    conn.close();
  }
}

/**
 * Seconds to push `total` bytes to `port` over `sessions` connections at
 * once, in writes of `writeBytes` random bytes.
 */
export async function throughput(
  port: number,
  total: number,
  sessions: number,
  writeBytes: number,
): Promise<number> {
  const block = new Uint8Array(writeBytes);
  for (let at = 0; at < block.length; at += 65536) {
    crypto.getRandomValues(block.subarray(at, at + 65536));
  }
  const started = performance.now();
  await Promise.all(
    Array.from({ length: sessions }, () => pushOne(port, total / sessions, block)),
  );
  return (performance.now() - started) / 1000;
}

/** Reads exactly `into.length` bytes. */
export async function readFull(conn: Deno.Conn, into: Uint8Array): Promise<void> {
  for (let at = 0; at < into.length;) {
    const n = await conn.read(into.subarray(at));
    if (n === null) throw new Error("the echo backend closed early");
    at += n;
  }
}

/** The value below which `q` of `values` lie (nearest rank). */
export function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

/** The nearest-rank median. */
export const median = (values: number[]): number => quantile(values, 0.5);

/** `{ key: value(key) }` for every key of `keys`. */
export function tabulate<K extends string, V>(
  keys: readonly K[],
  value: (key: K) => V,
): Record<K, V> {
  return Object.fromEntries(keys.map((key) => [key, value(key)])) as Record<K, V>;
}
