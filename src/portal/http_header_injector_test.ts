/**
 * Tests of the HTTP inlet's header injector (`http_header_injector.ts`).
 *
 * - Framing: GET without a body, Content-Length bodies (also listed twice),
 *   chunked bodies with extensions and trailers, three pipelined requests in
 *   one chunk, heads cut byte by byte, HTTP/1.0, empty lines before a
 *   request, a stream ending inside a body (clean) or inside a line (an
 *   error, the partial line not forwarded).
 * - The injected header: right after the request line, the client's copies
 *   (any case, `_` or other punctuation for `-`, head and trailers)
 *   removed, everything else byte for byte.
 * - Refusals: the options (CR/LF in the value, names that are not tokens or
 *   frame the request); every malformed head, with its error class, the
 *   400/431 answer written when nothing was returned yet and not after;
 *   errors in bodies, chunk extensions by RFC 9112's grammar; errors never
 *   quote the value.
 * - CONNECT and upgrades pass through raw after their head.
 * - Bodies stream in whole spans, read straight into the caller's buffer.
 * - Property (fast-check, PROPERTY_SEED / PROPERTY_RUNS as elsewhere):
 *   random valid requests, cut at random boundaries and read with random
 *   sizes, come out as a simple reference says.
 * - Real sockets: raw keep-alive requests over loopback TCP, and `fetch`
 *   streaming a chunked body.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { describeConfiguration, propertyParameters } from "../testdata/mutations.ts";
import { type ByteReader, injectHeader } from "./http_header_injector.ts";

console.log(describeConfiguration("http_header_injector_test"));

/** Runs of the property when PROPERTY_RUNS is not set. */
const RUNS = 1_000;

const NAME = "X-License-Key";
const SECRET = "nxl_live_7Qz9 tab\there_e2e";
const INJECTED = `${NAME}: ${SECRET}\r\n`;
const BAD_REQUEST = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
const TOO_LARGE =
  "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/** One byte per char: the tests write HTTP as strings, bodies included. */
function bytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

/** The inverse of {@link bytes}. */
function text(data: Uint8Array): string {
  let out = "";
  for (let i = 0; i < data.length; i += 4096) {
    out += String.fromCharCode(...data.subarray(i, i + 4096));
  }
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) out.set(part, at), at += part.length;
  return out;
}

/** `head` (request line, fields, blank line) with the injected header after its request line. */
function injected(head: string): string {
  const end = head.indexOf("\r\n") + 2;
  return head.slice(0, end) + INJECTED + head.slice(end);
}

/**
 * A client socket: each read returns the next chunk (what is left of it
 * when the buffer is smaller), then null. Records what is written to it
 * and the buffers it was asked to fill.
 */
class FakeClient implements ByteReader {
  readonly chunks: Uint8Array[];
  /** The next chunk to read (an index: shifting 60,000 chunks would be quadratic). */
  next = 0;
  readonly written: Uint8Array[] = [];
  readonly readInto: Uint8Array[] = [];
  reads = 0;

  constructor(chunks: (string | Uint8Array)[]) {
    this.chunks = chunks.map((c) => typeof c === "string" ? bytes(c) : c);
  }

  read(p: Uint8Array): Promise<number | null> {
    this.reads++;
    this.readInto.push(p);
    while (this.next < this.chunks.length && this.chunks[this.next].length === 0) this.next++;
    const chunk = this.chunks[this.next];
    if (chunk === undefined) return Promise.resolve(null);
    const n = Math.min(p.length, chunk.length);
    p.set(chunk.subarray(0, n));
    if (n === chunk.length) this.next++;
    else this.chunks[this.next] = chunk.subarray(n);
    return Promise.resolve(n);
  }

  write(p: Uint8Array): Promise<number> {
    // Partial writes, to check the answer is written in a loop.
    const n = Math.min(p.length, 7);
    this.written.push(p.slice(0, n));
    return Promise.resolve(n);
  }

  get writtenText(): string {
    return text(concat(this.written));
  }
}

/** A client without `write` (a reader that is not a socket). */
function readOnly(client: FakeClient): ByteReader {
  return { read: (p) => client.read(p) };
}

/**
 * Reads `reader` to its end with buffers of `sizes` (cycled), checking each
 * read's count; returns everything read, and the error if one ended it.
 */
async function drain(
  reader: ByteReader,
  sizes: number[] = [4096],
): Promise<{ output: string; error?: unknown; reads: number }> {
  const parts: Uint8Array[] = [];
  for (let i = 0;; i++) {
    const buffer = new Uint8Array(sizes[i % sizes.length]);
    let n: number | null;
    try {
      n = await reader.read(buffer);
    } catch (error) {
      return { output: text(concat(parts)), error, reads: i };
    }
    if (n === null) return { output: text(concat(parts)), reads: i };
    assert.ok(Number.isInteger(n) && n >= 0 && n <= buffer.length, `read returned ${n}`);
    parts.push(buffer.slice(0, n));
  }
}

/** Injects into `chunks` and reads to the end, which must be clean. */
async function pass(
  chunks: (string | Uint8Array)[],
  sizes?: number[],
  tunnels = false,
): Promise<string> {
  const { output, error } = await drain(
    injectHeader(new FakeClient(chunks), { ...options(), tunnels }),
    sizes,
  );
  if (error !== undefined) throw error;
  return output;
}

function options(maxHeaderBytes?: number) {
  return { name: NAME, value: SECRET, maxHeaderBytes };
}

type ErrorClass = typeof TypeError | typeof RangeError;

/** Checks `error` is exactly of `cls`, matches `message`, and does not leak the value. */
function assertError(error: unknown, cls: ErrorClass, message: RegExp, what: string): void {
  assert.ok(error instanceof Error, `${what}: expected ${cls.name}, got ${error}`);
  assert.equal(error.constructor, cls, `${what}: ${error.constructor.name}: ${error.message}`);
  assert.match(error.message, message, what);
  assert.ok(!error.message.includes(SECRET), `${what}: message leaks the value`);
  assert.ok(!error.message.includes("nxl_"), `${what}: message leaks the value`);
}

// ---------------------------------------------------------------------------
// Framing

Deno.test("a GET without a body: the header right after the request line, the rest unchanged", async () => {
  const head = "GET /a?b=c HTTP/1.1\r\nHost: localhost:8080\r\nAccept: */*\r\n" +
    "User-Agent: t/1\r\nx-lower: Mixed Case  \r\n\r\n";
  assert.equal(await pass([head]), injected(head));
  // The client's end right after a head is a clean end.
  const reader = injectHeader(new FakeClient([head]), options());
  const buffer = new Uint8Array(4096);
  assert.equal(await reader.read(buffer), injected(head).length);
  assert.equal(await reader.read(buffer), null);
  assert.equal(await reader.read(buffer), null);
});

Deno.test("a POST with Content-Length, then another request on the same connection", async () => {
  const post = "POST /submit HTTP/1.1\r\nHost: h\r\nContent-Length: 27\r\n" +
    "Content-Type: text/plain\r\n\r\n";
  // The body looks like a request and has bare LFs: it is not parsed.
  const body = "GET /x HTTP/1.1\r\nA: b\n\r\n\0\xff!";
  assert.equal(body.length, 27);
  const get = "GET /next HTTP/1.1\r\nHost: h\r\n\r\n";
  const expected = injected(post) + body + injected(get);
  assert.equal(await pass([post + body + get]), expected);
  assert.equal(await pass([post, body.slice(0, 5), body.slice(5) + get]), expected);
  assert.equal(
    await pass([post + body.slice(0, 26), body.slice(26) + get.slice(0, 3), get.slice(3)]),
    expected,
  );
  // Content-Length: 0 is no body.
  const empty = "POST /e HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
  assert.equal(await pass([empty + get]), injected(empty) + injected(get));
});

Deno.test("Content-Length listed twice, or as a list, with the same value is accepted", async () => {
  const get = "GET / HTTP/1.1\r\n\r\n";
  for (
    const fields of [
      "Content-Length: 3\r\nContent-Length: 3\r\n",
      "Content-Length: 3, 3\r\n",
      "Content-Length:3 ,\t3\r\n",
      "Content-Length: 003\r\n",
      "content-length: 3\r\nCONTENT-LENGTH: 0003\r\n",
    ]
  ) {
    const head = `PUT /x HTTP/1.1\r\n${fields}\r\n`;
    assert.equal(await pass([head + "abc" + get]), injected(head) + "abc" + injected(get), fields);
  }
});

Deno.test("a chunked body with extensions and trailers passes byte for byte", async () => {
  const head = "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n";
  const body = "5\r\nhello\r\n" +
    '00A;name=value;quoted="a b;c"\r\n0123456789\r\n' +
    "1 ; bws = x\r\n\n\r\n" + // a data byte that is a bare LF
    "c;ext\r\n\r\n0\r\n\r\nGET /\r\n" + // data that looks like chunk framing
    "0;last=1\r\nExpires: never\r\nX-Checksum: abc\r\n\r\n";
  const get = "GET /after HTTP/1.1\r\n\r\n";
  const expected = injected(head) + body + injected(get);
  assert.equal(await pass([head + body + get]), expected);
  const all = head + body + get;
  // Every single cut, and byte by byte.
  for (let cut = 0; cut <= all.length; cut++) {
    assert.equal(await pass([all.slice(0, cut), all.slice(cut)]), expected, `cut at ${cut}`);
  }
  assert.equal(await pass(all.split("")), expected);
  assert.equal(await pass([all], [1]), expected);
  // No trailers, a size with leading zeros, Transfer-Encoding on two lines.
  const two = "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
  const plain = "0003\r\nabc\r\n000\r\n\r\n";
  assert.equal(await pass([two + plain + get]), injected(two) + plain + injected(get));
});

Deno.test("three pipelined requests in one chunk, read with every buffer size", async () => {
  const a = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n";
  const b = "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\n";
  const c = "PUT /3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  const input = a + b + "body" + c + "2\r\nok\r\n0\r\n\r\n";
  const expected = injected(a) + injected(b) + "body" + injected(c) + "2\r\nok\r\n0\r\n\r\n";
  for (const size of [1, 2, 3, 7, 16, 64, 100, 4096]) {
    assert.equal(await pass([input], [size]), expected, `size ${size}`);
  }
  assert.equal(await pass(input.split("")), expected);
  assert.equal(await pass(input.split(""), [1]), expected);
});

Deno.test("a head arriving byte by byte, read one byte at a time", async () => {
  const head = "DELETE /item/7 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer x\r\n\r\n";
  const reader = injectHeader(new FakeClient(head.split("")), options());
  const one = new Uint8Array(1);
  let out = "";
  for (;;) {
    const n = await reader.read(one);
    if (n === null) break;
    assert.equal(n, 1);
    out += String.fromCharCode(one[0]);
  }
  assert.equal(out, injected(head));
  assert.equal(await reader.read(new Uint8Array(0)), 0, "an empty buffer reads 0");
});

Deno.test("HTTP/1.0 requests, with and without a body", async () => {
  const get = "GET / HTTP/1.0\r\n\r\n";
  const post = "POST /form HTTP/1.0\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n";
  assert.equal(await pass([get + post + "a=b"]), injected(get) + injected(post) + "a=b");
});

Deno.test("empty lines before a request line pass through (RFC 9112 §2.2)", async () => {
  const post = "POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nok";
  const get = "GET / HTTP/1.1\r\n\r\n";
  const expected = "\r\n" + injected(post.slice(0, -2)) + "ok\r\n\r\n" + injected(get);
  assert.equal(await pass(["\r\n" + post + "\r\n\r\n" + get]), expected);
  assert.equal(await pass(("\r\n" + post + "\r\n\r\n" + get).split("")), expected);
  assert.equal(await pass(["\r\n\r\n"]), "\r\n\r\n");
});

Deno.test("a stream ending inside a body or between lines: what came passes, then the end", async () => {
  const head = "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n";
  assert.equal(await pass([head + "abcd"]), injected(head) + "abcd");
  const chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (const partial of ["", "5\r\nab", "5\r\nabcde", "0\r\n", "0\r\nA: b\r\n"]) {
    assert.equal(await pass([chunked + partial]), injected(chunked) + partial, partial);
    assert.equal(await pass((chunked + partial).split("")), injected(chunked) + partial, partial);
  }
  // A size this large is allowed; the body just ends early.
  assert.equal(
    await pass([chunked + "1fffffffffffff\r\nab"]),
    injected(chunked) + "1fffffffffffff\r\nab",
  );
});

Deno.test("a stream ending inside a chunk-size line, a chunk's CRLF or a trailer line: that partial line is dropped, then an error", async () => {
  // A lenient server may take the bytes before the end of stream as a whole
  // line: a partial trailer line would then be a field the injector never
  // checked (a forged copy of the header, say).
  const chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  const cases: [string, string, RegExp][] = [
    ["1\r\na\r\n0\r\n", `${NAME}: forged`, /truncated trailer section/],
    ["1\r\na\r\n0\r\n", "X_License_Key: forged", /truncated trailer section/],
    ["0\r\nDigest: d\r\n", "X-License-Key:", /truncated trailer section/],
    ["0\r\n", "A: b", /truncated trailer section/],
    ["0\r\n", "\r", /truncated trailer section/],
    ["", "1", /truncated chunk-size line/],
    ["1\r\na\r\n", "1;e=", /truncated chunk-size line/],
    ["5\r\nabcde", "\r", /truncated chunk: no CRLF after its data/],
  ];
  for (const [complete, partial, message] of cases) {
    const what = JSON.stringify(complete + partial);
    const all = chunked + complete + partial;
    for (const chunks of [[all], all.split(""), [chunked + complete, partial]]) {
      const client = new FakeClient(chunks);
      const reader = injectHeader(client, options());
      const { output, error } = await drain(reader);
      assert.equal(output, injected(chunked) + complete, what);
      assert.ok(!output.includes("forged"), what);
      assertError(error, TypeError, message, what);
      // Sticky; the server has the request in progress, so no answer.
      await assert.rejects(reader.read(new Uint8Array(10)), (again: unknown) => again === error);
      assert.equal(client.writtenText, "", what);
    }
  }
  // The same for a later request on the connection (a head's end is
  // covered with the malformed heads).
  const get = "GET / HTTP/1.1\r\n\r\n";
  const { output, error } = await drain(
    injectHeader(new FakeClient([get + chunked + "0\r\nX-License-Key: f"]), options()),
  );
  assert.equal(output, injected(get) + injected(chunked) + "0\r\n");
  assertError(error, TypeError, /truncated trailer section/, "second request");
});

Deno.test("an empty stream ends at once", async () => {
  assert.equal(await pass([]), "");
});

// ---------------------------------------------------------------------------
// The header

Deno.test("the client's copies of the header are removed, in any case, head and trailers", async () => {
  const head = "GET / HTTP/1.1\r\nx-license-key: forged\r\nHost: h\r\nX-LICENSE-KEY:again\r\n" +
    "X-License-Key:\r\nX-License-Key-Id: kept\r\nX-License: kept\r\nx-LiCeNsE-kEy: \tlast \r\n\r\n";
  const kept = "GET / HTTP/1.1\r\n" + INJECTED +
    "Host: h\r\nX-License-Key-Id: kept\r\nX-License: kept\r\n\r\n";
  assert.equal(await pass([head]), kept);
  assert.equal(await pass(head.split("")), kept);

  const chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-License-Key: x\r\n\r\n";
  const body = "1\r\na\r\n0\r\nX-License-Key: trailer\r\nDigest: d\r\nx-license-key: t2\r\n\r\n";
  assert.equal(
    await pass([chunked + body]),
    "POST / HTTP/1.1\r\n" + INJECTED + "Transfer-Encoding: chunked\r\n\r\n" +
      "1\r\na\r\n0\r\nDigest: d\r\n\r\n",
  );
});

Deno.test("fields named like the header with _ (or other punctuation) for - are removed too, head and trailers", async () => {
  // CGI and WSGI name a field HTTP_ + its name upper-cased with - made _
  // (RFC 3875 §4.1.18), so X_License_Key reaches such a backend as the
  // same variable as X-License-Key; some gateways make every character
  // that is not a letter or digit _.
  const variants = [
    "X_License_Key",
    "x_license_key",
    "X-LICENSE_KEY",
    "X_License-Key",
    "X.License.Key",
    "x~license|key",
  ];
  const head = "GET / HTTP/1.1\r\nHost: h\r\n" +
    variants.map((name, i) => `${name}: forged${i}\r\n`).join("") +
    "X_License_Key_Id: kept\r\nX_License: kept\r\nXXLicenseXKey: kept\r\n\r\n";
  const kept = "GET / HTTP/1.1\r\n" + INJECTED +
    "Host: h\r\nX_License_Key_Id: kept\r\nX_License: kept\r\nXXLicenseXKey: kept\r\n\r\n";
  assert.equal(await pass([head]), kept);
  assert.equal(await pass(head.split("")), kept);

  const chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX_License_Key: x\r\n\r\n";
  const body = "1\r\na\r\n0\r\nX_LICENSE_KEY: forged\r\nDigest: d\r\nx.license-key: forged\r\n\r\n";
  const expected = "POST / HTTP/1.1\r\n" + INJECTED + "Transfer-Encoding: chunked\r\n\r\n" +
    "1\r\na\r\n0\r\nDigest: d\r\n\r\n";
  assert.equal(await pass([chunked + body]), expected);
  assert.equal(await pass((chunked + body).split(""), [1]), expected);
  assert.ok(!expected.includes("forged"));

  // An injected name with _ in it: the client's - spelling is its copy too.
  const underscored = { name: "X_License_Key", value: SECRET };
  const { output } = await drain(
    injectHeader(new FakeClient(["GET / HTTP/1.1\r\nX-License-Key: forged\r\n\r\n"]), underscored),
  );
  assert.equal(output, `GET / HTTP/1.1\r\nX_License_Key: ${SECRET}\r\n\r\n`);
});

Deno.test("the options are checked when the injector is made; the value is never quoted", () => {
  const client = new FakeClient([]);
  for (
    const value of ["a\r\nEvil: 1", "a\nb", "a\rb", "a\0b", "a\x7fb", "a\x01b", "é", "a\u2028"]
  ) {
    assert.throws(
      () => injectHeader(client, { name: NAME, value: `nxl_${value}` }),
      (error: unknown) => {
        assertError(error, TypeError, /value of X-License-Key/, JSON.stringify(value));
        return true;
      },
    );
  }
  for (const value of [" nxl_lead", "nxl_trail\t"]) {
    assert.throws(() => injectHeader(client, { name: NAME, value }), (error: unknown) => {
      assertError(error, TypeError, /whitespace/, value);
      return true;
    });
  }
  for (const name of ["", "X License", "X:Key", "X-Key\r\n", "Ключ", "(x)"]) {
    assert.throws(
      () => injectHeader(client, { name, value: "v" }),
      TypeError,
      JSON.stringify(name),
    );
  }
  for (
    const name of [
      "Content-Length",
      "transfer-encoding",
      "Host",
      "CONNECTION",
      "Upgrade",
      "TE",
      // The same names with _ or other punctuation for -: the injector would
      // take the client's framing fields for copies of its own.
      "Content_Length",
      "Transfer.Encoding",
      "keep_alive",
      "Proxy~Connection",
    ]
  ) {
    assert.throws(() => injectHeader(client, { name, value: "v" }), TypeError, name);
  }
  for (const max of [0, -1, 1.5, NaN, Infinity]) {
    assert.throws(() => injectHeader(client, { ...options(max) }), RangeError, String(max));
  }
  // Tabs and spaces inside, and every visible character, are fine.
  injectHeader(client, { name: "!#$%&'*+-.^_`|~09azAZ", value: 'a \t!~"\\' });
  injectHeader(client, { name: NAME, value: "" });
});

// ---------------------------------------------------------------------------
// Refusals

/** Heads refused: input, error class, message. */
const MALFORMED: [string, ErrorClass, RegExp][] = [
  ["GET / HTTP/1.1\nHost: h\r\n\r\n", TypeError, /bare LF .*request head/],
  ["GET / HTTP/1.1\r\nHost: h\n\r\n", TypeError, /bare LF/],
  ["GET / HTTP/1.1\r\nHost: h\r\n\n", TypeError, /bare LF/],
  ["\n", TypeError, /bare LF/],
  ["GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", TypeError, /bare CR/],
  ["GET / HTTP/1.1\r\nA: \x01\r\n\r\n", TypeError, /control character 0x01/],
  ["GET / HTTP/1.1\r\nA: \x7f\r\n\r\n", TypeError, /control character 0x7f/],
  ["GET / HTTP/1.1\r\nA: 1\r\n continued\r\n\r\n", TypeError, /header line 2 .*obs-fold/],
  ["GET / HTTP/1.1\r\nA: 1\r\n\tcontinued\r\n\r\n", TypeError, /obs-fold/],
  ["GET / HTTP/1.1\r\n Host: h\r\n\r\n", TypeError, /header line 1 .*obs-fold/],
  ["GET / HTTP/1.1\r\nBad Name: 1\r\n\r\n", TypeError, /not an HTTP token/],
  ["GET / HTTP/1.1\r\nHost : h\r\n\r\n", TypeError, /not an HTTP token/],
  ["GET / HTTP/1.1\r\nX-(a): h\r\n\r\n", TypeError, /not an HTTP token/],
  ["GET / HTTP/1.1\r\n: h\r\n\r\n", TypeError, /empty field name/],
  ["GET / HTTP/1.1\r\nHost\r\n\r\n", TypeError, /header line 1 has no colon/],
  ["GET / HTTP/1.1\r\nA: b\r\nno colon here\r\n\r\n", TypeError, /header line 2 has no colon/],
  ["PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", TypeError, /HTTP\/2 connection preface/],
  ["GET / HTTP/2.0\r\n\r\n", TypeError, /unsupported HTTP version HTTP\/2.0/],
  ["GET / HTTP/1.2\r\n\r\n", TypeError, /unsupported HTTP version HTTP\/1.2/],
  ["GET / HTTP/0.9\r\n\r\n", TypeError, /unsupported HTTP version/],
  ["GET /\r\n\r\n", TypeError, /malformed request line/],
  ["GET / http/1.1\r\n\r\n", TypeError, /malformed request line/],
  ["GET / HTTP/1.1 \r\n\r\n", TypeError, /malformed request line/],
  ["GET  / HTTP/1.1\r\n\r\n", TypeError, /malformed request line/],
  [" GET / HTTP/1.1\r\n\r\n", TypeError, /malformed request line/],
  ["G(T / HTTP/1.1\r\n\r\n", TypeError, /malformed request line/],
  ["GET /a\x01b HTTP/1.1\r\n\r\n", TypeError, /malformed request line/],
  ["\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", TypeError, /malformed request line/],
  [
    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    TypeError,
    /both Transfer-Encoding and Content-Length \(request smuggling\)/,
  ],
  [
    "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    TypeError,
    /request smuggling/,
  ],
  ["POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", TypeError, /does not end in chunked/],
  [
    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    TypeError,
    /does not end in chunked/,
  ],
  ["POST / HTTP/1.1\r\nTransfer-Encoding: chunked\xa0\r\n\r\n", TypeError, /not a token/],
  ['POST / HTTP/1.1\r\nTransfer-Encoding: "chunked"\r\n\r\n', TypeError, /not a token/],
  ["POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", TypeError, /more than once/],
  ["POST / HTTP/1.1\r\nTransfer-Encoding: ,\r\n\r\n", TypeError, /Transfer-Encoding is empty/],
  ["POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", TypeError, /HTTP\/1.0/],
  ["POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", TypeError, /conflicting/],
  ["POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n", TypeError, /conflicting/],
  ["POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", TypeError, /not a decimal/],
  ["POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", TypeError, /not a decimal/],
  ["POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", TypeError, /not a decimal/],
  ["POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", TypeError, /not a decimal/],
  ["POST / HTTP/1.1\r\nContent-Length: 1.0\r\n\r\n", TypeError, /not a decimal/],
  ["POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", TypeError, /not a decimal/],
  ["POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", TypeError, /not a decimal/],
  ["POST / HTTP/1.1\r\nContent-Length: 3,\r\n\r\n", TypeError, /not a decimal/],
  ["POST / HTTP/1.1\r\nContent-Length: 9007199254740992\r\n\r\n", RangeError, /Content-Length/],
  ["POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", RangeError, /Content-Length/],
  ["GET / HTTP/1.1\r\nHost: h\r\n", TypeError, /truncated request head/],
  ["GET / HTTP/1.1\r\nHost: h\r\n\r", TypeError, /truncated request head/],
  ["GET / HTT", TypeError, /truncated request head/],
  ["\r", TypeError, /truncated request head/],
];

Deno.test("every malformed head: its error, and a 400 answer when nothing was returned", async () => {
  for (const [input, cls, message] of MALFORMED) {
    const what = JSON.stringify(input);
    for (const chunks of [[input], input.split("")]) {
      const client = new FakeClient(chunks);
      const reader = injectHeader(client, options());
      const { output, error } = await drain(reader);
      assert.equal(output, "", what);
      assertError(error, cls, message, what);
      assert.equal(client.writtenText, BAD_REQUEST, what);
      // Sticky, and answered once.
      await assert.rejects(reader.read(new Uint8Array(10)), (again: unknown) => again === error);
      assert.equal(client.writtenText, BAD_REQUEST, what);
    }
    // Without `write`, the error alone.
    const { error } = await drain(injectHeader(readOnly(new FakeClient([input])), options()));
    assertError(error, cls, message, what);
  }
});

Deno.test("a head over maxHeaderBytes is a RangeError answered 431; exactly the limit passes", async () => {
  const head = "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: " + "p".repeat(60) + "\r\n\r\n";
  const limit = head.length;
  assert.equal(
    (await drain(injectHeader(new FakeClient([head]), options(limit)))).output,
    injected(head),
  );
  const over = head.replace("Host", "Hosts");
  for (const chunks of [[over], over.split("")]) {
    const client = new FakeClient(chunks);
    const { output, error } = await drain(injectHeader(client, options(limit)));
    assert.equal(output, "");
    assertError(error, RangeError, new RegExp(`request head longer than ${limit} bytes`), "over");
    assert.equal(client.writtenText, TOO_LARGE);
  }
  // Refused as soon as the limit is passed, without waiting for the end of the head.
  const endless = new FakeClient(["GET / HTTP/1.1\r\nX: ", ..."a".repeat(200).split("")]);
  const { error } = await drain(injectHeader(endless, options(100)));
  assertError(error, RangeError, /request head longer than 100 bytes/, "endless");
  assert.ok(endless.next < endless.chunks.length, "stopped reading at the limit");
  // The default: 64 KiB.
  const big = "GET / HTTP/1.1\r\nX: " + "b".repeat(64 * 1024) + "\r\n\r\n";
  const client = new FakeClient([big]);
  assertError((await drain(injectHeader(client, options()))).error, RangeError, /65536/, "default");
  assert.equal(client.writtenText, TOO_LARGE);
});

Deno.test("an error after bytes were returned: those bytes first, no answer, then the error", async () => {
  const get = "GET / HTTP/1.1\r\n\r\n";
  for (
    const [rest, cls, message] of [
      ["GET / HTTP/1.1\nHost: h\r\n\r\n", TypeError, /bare LF/],
      ["POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", TypeError, /chunked/],
      ["GET / HTTP/1.1\r\n", TypeError, /truncated request head/],
    ] as const
  ) {
    for (const chunks of [[get + rest], [get, rest]]) {
      const client = new FakeClient(chunks);
      const reader = injectHeader(client, options());
      const { output, error } = await drain(reader);
      assert.equal(output, injected(get), rest);
      assertError(error, cls, message, rest);
      assert.equal(client.writtenText, "", "the server is answering the first request");
    }
  }
});

Deno.test("malformed chunked bodies are refused after their head passed", async () => {
  const head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  const cases: [string, ErrorClass, RegExp][] = [
    ["xyz\r\n", TypeError, /does not start with a hex size/],
    [";ext\r\n", TypeError, /does not start with a hex size/],
    ["5 \r\nhello\r\n", TypeError, /unexpected bytes after the size/],
    ["5x\r\nhello\r\n", TypeError, /unexpected bytes after the size/],
    ["5;a\x01\r\nhello\r\n", TypeError, /control character/],
    ["5;a\rb\r\nhello\r\n", TypeError, /control character/],
    ['5;a="b\x00"\r\nhello\r\n', TypeError, /control character/],
    ["5;a=b\x7f\r\nhello\r\n", TypeError, /control character/],
    ["5\nhello\r\n", TypeError, /bare LF .*chunk-size line/],
    ["5\r\nhelloX\r\n", TypeError, /chunk data not followed by CRLF/],
    ["5\r\nhello\n", TypeError, /chunk data not followed by CRLF/],
    ["5\r\nhello\rX", TypeError, /chunk data not followed by CRLF/],
    ["20000000000000\r\n", RangeError, /chunk size larger than Number.MAX_SAFE_INTEGER/],
    ["ffffffffffffffffffffffff\r\n", RangeError, /MAX_SAFE_INTEGER/],
    ["0\r\nA: b\n\r\n", TypeError, /bare LF .*trailer/],
    ["0\r\nA: b\r\n folded\r\n\r\n", TypeError, /trailer field .*obs-fold/],
    ["0\r\nno colon\r\n\r\n", TypeError, /trailer field has no colon/],
    ["0\r\nA: \0\r\n\r\n", TypeError, /control character 0x00/],
  ];
  for (const [body, cls, message] of cases) {
    for (const chunks of [[head + body], (head + body).split("")]) {
      const client = new FakeClient(chunks);
      const { output, error } = await drain(injectHeader(client, options()));
      assert.ok(output.startsWith(injected(head)), body);
      assertError(error, cls, message, JSON.stringify(body));
      assert.equal(client.writtenText, "");
    }
  }
  // The largest safe size is accepted.
  const max = Number.MAX_SAFE_INTEGER.toString(16);
  assert.equal(await pass([head + max + "\r\n"]), injected(head) + max + "\r\n");
  // Lines and trailer sections are bounded by maxHeaderBytes too, refused
  // as soon as the limit is passed (without waiting for the line's end).
  const long = "1;" + "e".repeat(200) + "\r\n";
  for (const chunks of [[head + long], [head, ...long.split("")]]) {
    const client = new FakeClient(chunks);
    assertError(
      (await drain(injectHeader(client, options(100)))).error,
      RangeError,
      /chunk-size line longer than 100 bytes/,
      "long chunk line",
    );
    if (chunks.length > 1) assert.ok(client.next < 110, "stopped reading at the limit");
  }
  const trailers = "0\r\n" + "T: 123456789\r\n".repeat(10) + "\r\n";
  assertError(
    (await drain(injectHeader(new FakeClient([head + trailers]), options(100)))).error,
    RangeError,
    /trailer section longer than 100 bytes/,
    "long trailers",
  );
});

Deno.test("chunk extensions are checked by RFC 9112 §7.1.1's grammar: well-formed ones pass unchanged, the rest is refused", async () => {
  // chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ).
  const head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  const get = "GET / HTTP/1.1\r\n\r\n";
  for (
    const ext of [
      ";x",
      ";name=value",
      ' ; name = "quoted \\" value"',
      "\t;\tname\t=\tv",
      ";a;b=c;d",
      ';a="";b="\\\\"',
      ';a="x\ty ;=\\\t"',
      ';a="\x80\xff\\\xa0"', // obs-text, also quoted
      ";!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~",
    ]
  ) {
    const body = `5${ext}\r\nhello\r\n0${ext}\r\n\r\n`;
    const expected = injected(head) + body + injected(get);
    assert.equal(await pass([head + body + get]), expected, ext);
    assert.equal(await pass((head + body + get).split("")), expected, ext);
  }
  for (
    const ext of [
      " ",
      "\t",
      ";",
      " ;",
      " ; ",
      ";;a",
      ";a;",
      ";a ",
      ";a b",
      ";=v",
      ";a=",
      ";a= ",
      ";a=b ",
      ";a=b c",
      ";a==b",
      ";a=b=c",
      ';a="unterminated',
      ';a="ends in a backslash\\"',
      ';a="b"c',
      ';a="b"=c',
      ';a="b" c',
      ';"a"=b',
      ";(a)",
      ";a=(b)",
      ";a=b,c",
      ";a=\x80",
      ";\xff",
      ";a/b",
      ",a",
    ]
  ) {
    const what = JSON.stringify(ext);
    for (const line of [`5${ext}\r\nhello\r\n0\r\n\r\n`, `0${ext}\r\n\r\n`]) {
      for (const chunks of [[head + line + get], (head + line + get).split("")]) {
        const client = new FakeClient(chunks);
        const { output, error } = await drain(injectHeader(client, options()));
        assert.equal(output, injected(head), what);
        assertError(
          error,
          TypeError,
          /chunk-size line: (malformed chunk extension|unexpected bytes after the size)/,
          what,
        );
        assert.equal(client.writtenText, "", what);
      }
    }
  }
});

// ---------------------------------------------------------------------------
// Tunnels

Deno.test("tunnels on: after a CONNECT head everything passes raw", async () => {
  const head = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
  // A TLS hello, then things that would be refused as HTTP.
  const raw = "\x16\x03\x01\x00\x05hello\nGET / HTTP/1.1\r\nX-License-Key: forged\r\n\r\n\0";
  assert.equal(await pass([head + raw], undefined, true), injected(head) + raw);
  assert.equal(await pass((head + raw).split(""), [3], true), injected(head) + raw);
  // A body declared on a CONNECT is part of the tunnel.
  const declared = "CONNECT h:1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n";
  assert.equal(await pass([declared + raw], undefined, true), injected(declared) + raw);
});

Deno.test("tunnels on: after an upgrade request (Upgrade and Connection: upgrade) everything passes raw", async () => {
  const head = "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n" +
    "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
    "Sec-WebSocket-Version: 13\r\n\r\n";
  const frames = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58\n\r\nGET / HTTP/9\r\n\r\n";
  assert.equal(await pass([head + frames], undefined, true), injected(head) + frames);
  assert.equal(await pass((head + frames).split(""), [1], true), injected(head) + frames);
  const h2c = "GET / HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n" +
    "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n";
  const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
  assert.equal(await pass([h2c + preface], undefined, true), injected(h2c) + preface);
});

Deno.test("tunnels on: an Upgrade the server must ignore keeps the connection parsed", async () => {
  const get = "GET / HTTP/1.1\r\n\r\n";
  // No upgrade connection option, or HTTP/1.0 (RFC 9110 §7.8): no upgrade
  // will happen, so the next request still gets the header.
  for (
    const head of [
      "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
      "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n\r\n",
      "GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
      "GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n",
    ]
  ) {
    assert.equal(await pass([head + get], undefined, true), injected(head) + injected(get), head);
  }
});

Deno.test("tunnels off (default): Upgrade fields removed, every request keeps the header; CONNECT refused", async () => {
  const ws = "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
  // The server saw no Upgrade and answered over HTTP; the client's next
  // request (with its own header) is still parsed and rewritten.
  const next = `GET /other HTTP/1.1\r\n${NAME}: forged\r\n\r\n`;
  const expected = injected("GET /chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n\r\n") +
    injected("GET /other HTTP/1.1\r\n\r\n");
  assert.equal(await pass([ws + next]), expected);
  assert.equal(await pass((ws + next).split("")), expected);
  const client = new FakeClient(["CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n"]);
  const { error } = await drain(injectHeader(client, options()));
  assertError(error, TypeError, /CONNECT is not allowed/, "CONNECT");
  assert.match(new TextDecoder().decode(concat(client.written)), /^HTTP\/1\.1 400 Bad Request/);
});

// ---------------------------------------------------------------------------
// Speed

Deno.test("bodies stream in whole spans, read straight into the caller's buffer", async () => {
  const size = 4 * 1024 * 1024;
  const body = new Uint8Array(size);
  for (let i = 0; i < size; i += 4096) body[i] = i >> 12;
  const head = bytes(`POST /big HTTP/1.1\r\nContent-Length: ${size}\r\n\r\n`);
  const chunks: Uint8Array[] = [concat([head, body.subarray(0, 1000)])];
  for (let at = 1000; at < size; at += 64 * 1024) chunks.push(body.subarray(at, at + 64 * 1024));
  const client = new FakeClient(chunks);
  const reader = injectHeader(client, options());
  const buffer = new Uint8Array(64 * 1024);
  const out: Uint8Array[] = [];
  let reads = 0;
  for (let n = await reader.read(buffer); n !== null; n = await reader.read(buffer)) {
    out.push(buffer.slice(0, n));
    reads++;
  }
  const all = concat(out);
  const headOut = bytes(injected(text(head)));
  assert.equal(all.length, headOut.length + size);
  assert.deepEqual(all.subarray(0, headOut.length), headOut);
  assert.ok(all.subarray(headOut.length).every((b, i) => b === body[i]), "body intact");
  // One read per 64 KiB of body, give or take the first and last.
  assert.ok(reads <= size / buffer.length + 3, `${reads} reads`);
  // After the first, every read went straight into the caller's buffer.
  const direct = client.readInto.filter((p) => p.buffer === buffer.buffer).length;
  assert.ok(
    direct >= client.reads - 2,
    `${direct} of ${client.reads} reads into the caller's buffer`,
  );
});

Deno.test("a head is scanned once, however it is cut (no rescans of a growing head)", async () => {
  // 60,000 one-byte reads of a head near the limit: quadratic rescans
  // would take seconds here, a single scan takes milliseconds.
  const head = "GET / HTTP/1.1\r\n" + "X-F: 0123456789012345678901234567\r\n".repeat(1700) + "\r\n";
  const started = performance.now();
  assert.equal(await pass(head.split(""), [65536]), injected(head));
  assert.ok(performance.now() - started < 5_000, "took too long");
});

// ---------------------------------------------------------------------------
// Property: random valid requests against a reference

/** A random request: the bytes the client sends and the bytes the server must get. */
interface Sample {
  input: Uint8Array;
  expected: Uint8Array;
}

const TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const token = fc.string({ unit: fc.constantFrom(...TCHARS), minLength: 1, maxLength: 10 });
/** Field names the reference does not treat specially. */
const plainName = token.filter((n) =>
  !["content-length", "transfer-encoding", "upgrade", "connection"].includes(n.toLowerCase())
);
/** The injected name with random letter case, and `_` or `.` for some of its `-`. */
const clientCopyName = fc.tuple(
  fc.array(fc.boolean(), { minLength: NAME.length, maxLength: NAME.length }),
  fc.array(fc.constantFrom("-", "-", "_", "."), { minLength: NAME.length, maxLength: NAME.length }),
).map(([upper, dash]) =>
  [...NAME].map((c, i) => c === "-" ? dash[i] : upper[i] ? c.toUpperCase() : c.toLowerCase())
    .join("")
);
/** A name folded as a CGI variable name is: lower case, punctuation one character. */
const folded = (name: string) => name.toLowerCase().replace(/[^a-z0-9]/g, "-");
/** Field value bytes: visible ASCII, obs-text, SP and HTAB anywhere (OWS included). */
const fieldValue = fc.array(
  fc.oneof(
    fc.integer({ min: 0x21, max: 0x7e }),
    fc.integer({ min: 0x80, max: 0xff }),
    fc.constantFrom(0x20, 0x09),
  ),
  { maxLength: 20 },
).map((codes) => String.fromCharCode(...codes));
const field = fc.record({
  name: fc.oneof({ weight: 5, arbitrary: plainName }, { weight: 1, arbitrary: clientCopyName }),
  value: fieldValue,
});
const bodyBytes = fc.uint8Array({ maxLength: 300 }).map((b) => text(b));
/** BWS. */
const bws = fc.string({ unit: fc.constantFrom(" ", "\t"), maxLength: 2 });
/** A quoted-string: qdtext (obs-text included) and quoted-pairs. */
const quoted = fc.array(
  fc.oneof(
    fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x22 && c !== 0x5c && c !== 0x7f)
      .map((c) => String.fromCharCode(c)),
    fc.constant("\t"),
    fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x7f)
      .map((c) => "\\" + String.fromCharCode(c)),
  ),
  { maxLength: 8 },
).map((parts) => `"${parts.join("")}"`);
const chunkExt = fc.oneof(
  fc.constant(""),
  fc.tuple(token, fc.option(token)).map(([n, v]) => `;${n}${v === null ? "" : `=${v}`}`),
  fc.constant(' ; q = "a;b"'),
  fc.array(
    fc.tuple(bws, bws, token, fc.option(fc.tuple(bws, bws, fc.oneof(token, quoted)))).map((
      [a, b, n, v],
    ) => `${a};${b}${n}${v === null ? "" : `${v[0]}=${v[1]}${v[2]}`}`),
    { minLength: 1, maxLength: 3 },
  ).map((exts) => exts.join("")),
);

const request: fc.Arbitrary<Sample> = fc.record({
  lead: fc.constantFrom("", "", "", "\r\n"),
  method: fc.oneof(fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"), token),
  target: fc.string({
    unit: fc.constantFrom(..."/abc-._~%?=&+:@!$'()*,;0123456789"),
    maxLength: 20,
  })
    .map((t) => "/" + t),
  http11: fc.boolean(),
  fields: fc.array(field, { maxLength: 8 }),
  framingAt: fc.nat(),
  body: fc.oneof(
    fc.record({ kind: fc.constant("none" as const) }),
    fc.record({ kind: fc.constant("length" as const), data: bodyBytes }),
    fc.record({
      kind: fc.constant("chunked" as const),
      chunks: fc.array(
        fc.record({
          data: bodyBytes.filter((b) => b.length > 0),
          ext: chunkExt,
          zeros: fc.nat(2),
          upper: fc.boolean(),
        }),
        { maxLength: 4 },
      ),
      lastExt: chunkExt,
      trailers: fc.array(field, { maxLength: 3 }),
    }),
  ),
}).map((r) => {
  const line = (f: { name: string; value: string }) => `${f.name}:${f.value}\r\n`;
  const isCopy = (f: { name: string }) => folded(f.name) === folded(NAME);
  const body = !r.http11 && r.body.kind === "chunked" ? { kind: "none" as const } : r.body;
  const fields = r.fields.map((f) => ({ text: line(f), copy: isCopy(f) }));
  let wire = "";
  let expectedBody = "";
  if (body.kind === "length") {
    fields.splice(r.framingAt % (fields.length + 1), 0, {
      text: `Content-Length: ${body.data.length}\r\n`,
      copy: false,
    });
    wire = expectedBody = body.data;
  } else if (body.kind === "chunked") {
    fields.splice(r.framingAt % (fields.length + 1), 0, {
      text: "Transfer-Encoding: chunked\r\n",
      copy: false,
    });
    for (const c of body.chunks) {
      const size = "0".repeat(c.zeros) + c.data.length.toString(16);
      wire += `${c.upper ? size.toUpperCase() : size}${c.ext}\r\n${c.data}\r\n`;
    }
    wire += `0${body.lastExt}\r\n`;
    expectedBody = wire;
    for (const t of body.trailers) {
      wire += line(t);
      if (!isCopy(t)) expectedBody += line(t);
    }
    wire += "\r\n";
    expectedBody += "\r\n";
  }
  const requestLine = `${r.method} ${r.target} HTTP/1.${r.http11 ? 1 : 0}\r\n`;
  const all = fields.map((f) => f.text).join("");
  const kept = fields.filter((f) => !f.copy).map((f) => f.text).join("");
  return {
    input: bytes(r.lead + requestLine + all + "\r\n" + wire),
    expected: bytes(r.lead + requestLine + INJECTED + kept + "\r\n" + expectedBody),
  };
});

Deno.test("property: random requests, cut and read at random, come out as the reference says", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(request, { minLength: 1, maxLength: 5 }),
      fc.array(fc.nat(), { maxLength: 12 }),
      fc.array(fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 5000 })), {
        minLength: 1,
        maxLength: 8,
      }),
      async (requests, cuts, sizes) => {
        const input = concat(requests.map((r) => r.input));
        const expected = concat(requests.map((r) => r.expected));
        const at = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
        const chunks: Uint8Array[] = [];
        let from = 0;
        for (const cut of [...at, input.length]) chunks.push(input.subarray(from, cut)), from = cut;
        const { output, error } = await drain(
          injectHeader(new FakeClient(chunks), options()),
          sizes,
        );
        if (error !== undefined) throw error;
        assert.equal(output, text(expected));
      },
    ),
    propertyParameters(RUNS),
  );
});

// ---------------------------------------------------------------------------
// Real sockets

/** Reads `reader` until `done(output so far)`; returns the output. */
async function readUntil(reader: ByteReader, done: (output: string) => boolean): Promise<string> {
  const buffer = new Uint8Array(64 * 1024);
  let output = "";
  while (!done(output)) {
    const n = await reader.read(buffer);
    if (n === null) throw new Error(`end of stream after ${JSON.stringify(output)}`);
    output += text(buffer.subarray(0, n));
  }
  return output;
}

Deno.test("over TCP: two keep-alive requests written in pieces by a raw client", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const get = "GET /one HTTP/1.1\r\nHost: 127.0.0.1\r\nX-License-Key: forged\r\n\r\n";
  const post = "POST /two HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 11\r\n\r\n";
  const body = "hello\r\nworld".slice(0, 11);
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const server = await listener.accept();
  try {
    const reader = injectHeader(server, options());
    const writing = (async () => {
      for (
        const piece of [get.slice(0, 10), get.slice(10) + post.slice(0, 30), post.slice(30), body]
      ) {
        await client.write(bytes(piece));
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      await client.closeWrite();
    })();
    const expected = "GET /one HTTP/1.1\r\n" + INJECTED + "Host: 127.0.0.1\r\n\r\n" +
      injected(post) + body;
    const output = await readUntil(reader, (o) => o.length >= expected.length);
    assert.equal(output, expected);
    await writing;
    assert.equal(await reader.read(new Uint8Array(16)), null);
  } finally {
    client.close();
    server.close();
  }
});

Deno.test("over TCP: a malformed first head is answered 400 on the socket", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const server = await listener.accept();
  try {
    await client.write(bytes("GET / HTTP/1.1\nHost: h\r\n\r\n"));
    const reader = injectHeader(server, options());
    await assert.rejects(reader.read(new Uint8Array(1024)), TypeError);
    server.close();
    const answer: Uint8Array[] = [];
    const buffer = new Uint8Array(1024);
    for (let n = await client.read(buffer); n !== null; n = await client.read(buffer)) {
      answer.push(buffer.slice(0, n));
    }
    assert.equal(text(concat(answer)), BAD_REQUEST);
  } finally {
    client.close();
  }
});

/**
 * The body of the chunked request in `output` (a head, then chunks without
 * extensions and an empty trailer section), or null while it is incomplete.
 */
function chunkedBody(output: string): string | null {
  const headEnd = output.indexOf("\r\n\r\n");
  if (headEnd === -1) return null;
  let body = "";
  for (let at = headEnd + 4;;) {
    const lineEnd = output.indexOf("\r\n", at);
    if (lineEnd === -1) return null;
    const size = parseInt(output.slice(at, lineEnd), 16);
    if (size === 0) return output.slice(lineEnd, lineEnd + 4) === "\r\n\r\n" ? body : null;
    if (output.length < lineEnd + 2 + size + 2) return null;
    body += output.slice(lineEnd + 2, lineEnd + 2 + size);
    at = lineEnd + 2 + size + 2;
  }
}

Deno.test("over TCP: fetch streaming a chunked body, with its own copy of the header", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const parts = ["first part,", "second\r\n0\r\n\r\npart,", "x".repeat(100_000)];
  const served = (async () => {
    const conn = await listener.accept();
    try {
      const reader = injectHeader(conn, options());
      const output = await readUntil(reader, (o) => chunkedBody(o) !== null);
      const reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
      const answer = bytes(reply);
      for (let w = 0; w < answer.length;) w += await conn.write(answer.subarray(w));
      return output;
    } finally {
      conn.close();
    }
  })();
  const encoder = new TextEncoder();
  const response = await fetch(`http://127.0.0.1:${listener.addr.port}/upload?x=1`, {
    method: "POST",
    headers: { "X-License-Key": "forged", "X-Other": "kept" },
    body: new ReadableStream({
      start(controller) {
        for (const part of parts) controller.enqueue(encoder.encode(part));
        controller.close();
      },
    }),
  });
  assert.equal(await response.text(), "ok");
  const output = await served;

  const headEnd = output.indexOf("\r\n\r\n") + 4;
  const lines = output.slice(0, headEnd).split("\r\n");
  assert.equal(lines[0], "POST /upload?x=1 HTTP/1.1");
  assert.equal(lines[1], INJECTED.slice(0, -2));
  const rest = lines.slice(2).map((l) => l.toLowerCase());
  assert.ok(!rest.some((l) => l.startsWith("x-license-key")), "the client's copy is gone");
  assert.ok(rest.includes("x-other: kept"));
  assert.ok(rest.includes("transfer-encoding: chunked"));
  // The body is unchanged: its chunks decode back to what fetch sent.
  assert.equal(chunkedBody(output), parts.join(""));
});
