/**
 * What the HTTP inlet's header injection costs. `deno bench` prints each
 * case's ratio against its group's baseline, measured in the same run: the
 * same bytes read through a reader that only copies (what a TCP inlet does
 * with them), so the ratio is the parser's share alone.
 *
 * - `body`: one POST with a 4 MiB Content-Length body, read in 64 KiB
 *   calls (the portal's chunk size): bodies must stream as spans.
 * - `heads`: 1,000 pipelined small GETs in one buffer (typical API calls):
 *   the head parser and the rewrite of each head.
 * - `chunks`: one POST with a 4 MiB chunked body in 256-byte chunks, each
 *   with a chunk extension, and a trailer section: the chunk-size line
 *   parser (16,384 lines) between short spans of body.
 *
 * @module
 */
import { type ByteReader, injectHeader } from "./http_header_injector.ts";
import { MAX_CHUNK } from "./portal.ts";

const encoder = new TextEncoder();

/** A source handing out `chunks` in order, each as large as the caller's buffer allows. */
function source(chunks: Uint8Array[]): ByteReader {
  let index = 0;
  let at = 0;
  return {
    read(p) {
      if (index === chunks.length) return Promise.resolve(null);
      const chunk = chunks[index];
      const n = Math.min(p.length, chunk.length - at);
      p.set(chunk.subarray(at, at + n));
      at += n;
      if (at === chunk.length) index++, at = 0;
      return Promise.resolve(n);
    },
  };
}

async function drain(reader: ByteReader): Promise<number> {
  const buffer = new Uint8Array(MAX_CHUNK);
  let total = 0;
  for (let n = await reader.read(buffer); n !== null; n = await reader.read(buffer)) total += n;
  return total;
}

const BODY = 4 * 1024 * 1024;
const post = [
  encoder.encode(`POST /ingest HTTP/1.1\r\nHost: backend\r\nContent-Length: ${BODY}\r\n\r\n`),
  ...Array.from({ length: BODY / MAX_CHUNK }, () => new Uint8Array(MAX_CHUNK).fill(0x61)),
];
const get = "GET /v1/context?q=1 HTTP/1.1\r\nHost: backend\r\nAccept: application/json\r\n" +
  "User-Agent: bench\r\n\r\n";
const pipelined = [encoder.encode(get.repeat(1000))];
const CHUNK = 256;
const chunkedBody = encoder.encode(
  `${CHUNK.toString(16)};name=value;q="a \\" b"\r\n${"c".repeat(CHUNK)}\r\n`.repeat(
    BODY / CHUNK,
  ) + "0\r\nDigest: sha-256=abc\r\nExpires: never\r\n\r\n",
);
const chunked = [
  encoder.encode("POST /ingest HTTP/1.1\r\nHost: backend\r\nTransfer-Encoding: chunked\r\n\r\n"),
  ...Array.from(
    { length: Math.ceil(chunkedBody.length / MAX_CHUNK) },
    (_, i) => chunkedBody.subarray(i * MAX_CHUNK, (i + 1) * MAX_CHUNK),
  ),
];
const options = { name: "X-License-Key", value: "nxl_" + "k".repeat(32) };

Deno.bench({
  name: "copy only (4 MiB POST)",
  group: "body",
  baseline: true,
  async fn() {
    await drain(source(post));
  },
});

Deno.bench({
  name: "injectHeader (4 MiB POST)",
  group: "body",
  async fn() {
    await drain(injectHeader(source(post), options));
  },
});

Deno.bench({
  name: "copy only (1,000 pipelined GETs)",
  group: "heads",
  baseline: true,
  async fn() {
    await drain(source(pipelined));
  },
});

Deno.bench({
  name: "injectHeader (1,000 pipelined GETs)",
  group: "heads",
  async fn() {
    await drain(injectHeader(source(pipelined), options));
  },
});

Deno.bench({
  name: "copy only (4 MiB chunked POST, 256-byte chunks)",
  group: "chunks",
  baseline: true,
  async fn() {
    await drain(source(chunked));
  },
});

Deno.bench({
  name: "injectHeader (4 MiB chunked POST, 256-byte chunks)",
  group: "chunks",
  async fn() {
    await drain(injectHeader(source(chunked), options));
  },
});
