/**
 * Watching what a process sends and receives, for tests that must show
 * something never appears there (tests/e2e_test.ts):
 *
 * - {@link startTap}: a TCP proxy in front of a service that keeps every
 *   byte crossing it, both ways;
 * - {@link scanMemory}: searches a process's resident memory (as root,
 *   through /proc/<pid>/mem) for byte strings.
 */
import { Buffer } from "node:buffer";

/** A TCP proxy that records both directions of every connection. */
export interface Tap {
  /** The port to connect to instead of the target's. */
  readonly port: number;
  /** Bytes seen so far, both directions. */
  readonly bytes: () => number;
  /** How many times `needle` occurs in what crossed the tap (within one chunk or across two). */
  count(needle: string): number;
  close(): void;
}

/** Starts a tap on loopback `port` (default: a free one), forwarding to 127.0.0.1:`target`. */
export function startTap(target: number, port = 0): Tap {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const chunks: Buffer[] = [];
  let total = 0;
  const conns = new Set<Deno.Conn>();
  const pump = async (from: Deno.Conn, to: Deno.Conn) => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buffer);
        if (n === null) break;
        chunks.push(Buffer.from(buffer.slice(0, n)));
        total += n;
        for (let w = 0; w < n;) w += await to.write(buffer.subarray(w, n));
      }
    } catch { /* closed */ }
    await to.closeWrite().catch(() => {});
  };
  (async () => {
    for await (const inbound of listener) {
      (async () => {
        let outbound: Deno.Conn;
        try {
          outbound = await Deno.connect({ hostname: "127.0.0.1", port: target });
        } catch {
          try {
            inbound.close();
          } catch { /* closed */ }
          return;
        }
        conns.add(inbound).add(outbound);
        await Promise.all([pump(inbound, outbound), pump(outbound, inbound)]);
        for (const c of [inbound, outbound]) {
          conns.delete(c);
          try {
            c.close();
          } catch { /* closed */ }
        }
      })();
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    bytes: () => total,
    count(needle) {
      // Chunks are searched pairwise joined, so a needle split by a read
      // boundary is found too.
      const n = Buffer.from(needle);
      let found = 0;
      for (let i = 0; i < chunks.length; i++) {
        const joined = i + 1 < chunks.length
          ? Buffer.concat([chunks[i], chunks[i + 1].subarray(0, n.length - 1)])
          : chunks[i];
        for (let at = joined.indexOf(n); at >= 0; at = joined.indexOf(n, at + 1)) found++;
      }
      return found;
    },
    close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
}

/**
 * {@link scanMemory} in a process of its own (memory_scan.ts, `-A`: Deno
 * reads nothing under /proc/<pid>/ without every permission), for tests
 * under their permission set.
 */
export async function scanMemoryOf(
  pid: number,
  needles: string[],
): Promise<Map<string, number>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./memory_scan.ts", import.meta.url).pathname,
      String(pid),
      ...needles,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`memory scan of ${pid} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new Map(Object.entries(JSON.parse(new TextDecoder().decode(out.stdout))));
}

/**
 * How many times each of `needles` occurs in the resident memory of
 * process `pid`: every mapping that is readable and has resident pages
 * (from /proc/<pid>/smaps), read through /proc/<pid>/mem. Needs the right
 * to trace the process (root, or the same user with ptrace allowed).
 */
export async function scanMemory(pid: number, needles: string[]): Promise<Map<string, number>> {
  const smaps = await Deno.readTextFile(`/proc/${pid}/smaps`);
  const regions: [number, number][] = [];
  let current: [number, number, boolean] | null = null;
  for (const line of smaps.split("\n")) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S{4})/.exec(line);
    if (head) {
      current = [parseInt(head[1], 16), parseInt(head[2], 16), head[3][0] === "r"];
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss && current !== null && current[2] && Number(rss[1]) > 0) {
      regions.push([current[0], current[1]]);
    }
  }
  const counts = new Map(needles.map((n) => [n, 0]));
  const bytes = needles.map((n) => Buffer.from(n));
  const overlap = Math.max(...bytes.map((b) => b.length));
  using mem = await Deno.open(`/proc/${pid}/mem`, { read: true });
  using pagemap = await Deno.open(`/proc/${pid}/pagemap`, { read: true });
  const PAGE = 4096;
  const readAt = async (file: Deno.FsFile, offset: number, into: Uint8Array) => {
    await file.seek(offset, Deno.SeekMode.Start);
    let got = 0;
    while (got < into.length) {
      const n = await file.read(into.subarray(got));
      if (n === null || n === 0) break;
      got += n;
    }
    return got;
  };
  const search = (buffer: Buffer) => {
    bytes.forEach((needle, i) => {
      for (let k = buffer.indexOf(needle); k >= 0; k = buffer.indexOf(needle, k + 1)) {
        counts.set(needles[i], counts.get(needles[i])! + 1);
      }
    });
  };
  // Only the pages that are present (pagemap bit 63), read in runs: a
  // sparse mapping of gigabytes (V8 reserves them) costs its resident pages.
  const MAX_RUN = 1024; // pages per read (4 MiB)
  for (const [start, end] of regions) {
    const pages = (end - start) / PAGE;
    for (let first = 0; first < pages; first += 65536) {
      const count = Math.min(65536, pages - first);
      const entries = new Uint8Array(count * 8);
      try {
        await readAt(pagemap, ((start / PAGE) + first) * 8, entries);
      } catch {
        continue;
      }
      const view = new DataView(entries.buffer);
      for (let i = 0; i < count;) {
        if ((view.getUint8(i * 8 + 7) & 0x80) === 0) {
          i++;
          continue;
        }
        let j = i;
        while (j < count && j - i < MAX_RUN && (view.getUint8(j * 8 + 7) & 0x80) !== 0) j++;
        const from = start + (first + i) * PAGE;
        const length = Math.min((j - i) * PAGE + overlap, end - from);
        const buffer = Buffer.alloc(length);
        try {
          const got = await readAt(mem, from, buffer);
          search(buffer.subarray(0, got));
        } catch { /* gone meanwhile */ }
        i = j;
      }
    }
  }
  return counts;
}
