/**
 * Services started by tests and benchmarks print one banner line on stdout
 * once they listen: `LISTENING host:port [identifier] [metrics=host:port]`.
 */

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
 * Reads `child`'s first stdout line and parses it. The reader lock is
 * released afterwards, so the caller can still cancel stdout.
 * @throws {Error} when the child exits first or prints something else.
 */
export async function readBanner(child: Deno.ChildProcess): Promise<Banner> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  try {
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) {
        throw new Error(`the service exited before listening (printed: ${JSON.stringify(text)})`);
      }
      text += value;
    }
  } finally {
    reader.releaseLock();
  }
  const line = text.slice(0, text.indexOf("\n")).trim();
  const [word, address, ...rest] = line.split(" ");
  if (word !== "LISTENING" || address === undefined) throw new Error(`unexpected banner: ${line}`);
  const metrics = rest.find((field) => field.startsWith("metrics="))?.slice("metrics=".length);
  const identifier = rest.find((field) => /^I[0-9a-f]{64}$/.test(field));
  return { port: Number(address.split(":").at(-1)), identifier, metrics, line };
}
