/**
 * Services started by tests, benchmarks and the local stack print one
 * banner line on stdout once they listen:
 * `LISTENING host:port [identifier] [metrics=host:port]` (the host may be
 * left out: `LISTENING port …`).
 *
 * @module
 */
import { lineReader } from "./lines.ts";

/** The parsed banner. */
export interface Banner {
  /** The listening port. */
  port: number;
  /** The identifier, when the service prints one. */
  identifier: string | undefined;
  /** The operations endpoint, `host:port`, when the service prints one. */
  metrics: string | undefined;
  /** The whole line. */
  line: string;
}

/**
 * Parses a banner line.
 * @throws {Error} when `line` is not one.
 */
export function parseBanner(line: string): Banner {
  line = line.trim();
  const [word, address, ...rest] = line.split(" ");
  const port = Number(address?.split(":").at(-1));
  if (word !== "LISTENING" || address === undefined || !Number.isInteger(port)) {
    throw new Error(`unexpected banner: ${line}`);
  }
  const metrics = rest.find((field) => field.startsWith("metrics="))?.slice("metrics=".length);
  const identifier = rest.find((field) => /^I[0-9a-f]{64}$/.test(field));
  return { port, identifier, metrics, line };
}

/**
 * Reads `child`'s first stdout line and parses it. The reader lock is
 * released afterwards; the rest of stdout is left unread.
 * @throws {Error} when the child exits first or prints something else.
 */
export async function readBanner(child: Deno.ChildProcess): Promise<Banner> {
  const reader = lineReader(child.stdout);
  let line: string | null;
  try {
    line = await reader.next();
  } finally {
    reader.release();
  }
  if (line === null) throw new Error("the service exited before listening (printed nothing)");
  return parseBanner(line);
}
