/**
 * HTTP inlet mode: a reader wrapped around a local client's socket that adds
 * one header (the edge's license id, say `X-License-Id: 3f9a…`: the license's
 * public name, never the key that enrolls edges) to every HTTP/1.x request
 * the client sends, before the bytes enter the secure channel.
 *
 * What it guarantees, so that a local app can neither drop, override nor
 * duplicate the header, nor smuggle a request past it:
 *
 * - Every request on a keep-alive connection is framed the way RFC 9112 §6
 *   frames it (Transfer-Encoding chunked, else Content-Length, else no
 *   body), so the next request's head is always found where the server will
 *   find it. Anything ambiguous (both framings, differing lengths, a coding
 *   list not ending in chunked, bare LF, bare CR, obs-fold, a chunk
 *   extension outside RFC 9112 §7.1.1's grammar) is refused rather than
 *   guessed at.
 * - The header is inserted right after the request line; any field of the
 *   same name the client sent (in the head or in a chunked trailer section)
 *   is removed. "The same name" is the name as a CGI or WSGI backend sees
 *   it: in any case, and with `_` (or any other character that is not a
 *   letter or digit) for `-`, since `X_License_Id` and `X-License-Id`
 *   both become `HTTP_X_LICENSE_ID` there. Every other byte passes through
 *   unchanged.
 * - Only complete, checked lines are forwarded: a stream that ends inside a
 *   head, a chunk-size line, the CRLF after a chunk's data or a trailer line
 *   ends with an error, and the partial line is not forwarded (a lenient
 *   server could take it as complete).
 * - After a CONNECT, or an HTTP/1.1 request asking to upgrade (`Upgrade`
 *   plus the `upgrade` connection option, as servers require), the rest of
 *   the connection is another protocol and passes through raw.
 *
 * Speed: only heads, chunk-size lines and trailers are scanned, each byte
 * once (the scan resumes where the last read stopped, so a head arriving
 * byte by byte costs no rescans). Bodies pass as whole spans: when nothing
 * is buffered, a body is read straight into the caller's buffer (no copy at
 * all), else copied once with `set`.
 *
 * @module
 */
import type { ByteReader } from "./byte_reader.ts";

export type { ByteReader };

/** Options of {@link injectHeader}. */
export interface HeaderInjectorOptions {
  /** The header's name: an HTTP token (RFC 9110 §5.6.2), e.g. `X-License-Id`. */
  name: string;
  /**
   * The header's value: visible ASCII, spaces and tabs inside (not at either
   * end, where a server would strip them). A secret: error messages never
   * contain it.
   */
  value: string;
  /**
   * Largest request head accepted, request line and header fields with their
   * line endings, as the client sent it (the injected header is not counted).
   * Also bounds a chunk-size line and a trailer section. Default 64 KiB.
   */
  maxHeaderBytes?: number;
  /**
   * Whether CONNECT and protocol upgrades (WebSocket, h2c) may pass: after
   * such a request the rest of the connection passes raw. Default false,
   * because this injector sees only the client's side: if the server
   * declined the upgrade and kept speaking HTTP, the client's next requests
   * would pass raw too, without the header or with its own. When false,
   * CONNECT is refused and `Upgrade` header fields are removed, so the
   * server never switches and every request stays parsed.
   */
  tunnels?: boolean;
}

/** Default of {@link HeaderInjectorOptions.maxHeaderBytes}. */
const DEFAULT_MAX_HEADER_BYTES = 64 * 1024;

/** Size of the buffer that heads and short spans are read into. */
const INPUT_BYTES = 16 * 1024;

/**
 * Header names the injector may not own: removing the client's copy would
 * change how the request is framed or how the connection is managed.
 */
const RESERVED_NAMES = new Set([
  "connection",
  "content-length",
  "host",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;
const SEMICOLON = 0x3b;
const EQUALS = 0x3d;
const DQUOTE = 0x22;
const BACKSLASH = 0x5c;
const HYPHEN = 0x2d;

/** `tchar` of RFC 9110 §5.6.2, as a table indexed by byte. */
const TCHAR = (() => {
  const table = new Uint8Array(256);
  for (let b = 0x30; b <= 0x39; b++) table[b] = 1;
  for (let b = 0x41; b <= 0x5a; b++) table[b] = 1;
  for (let b = 0x61; b <= 0x7a; b++) table[b] = 1;
  for (const c of "!#$%&'*+-.^_`|~") table[c.charCodeAt(0)] = 1;
  return table;
})();

/**
 * A field name's byte as a CGI or WSGI backend names the field (RFC 3875
 * §4.1.18: `HTTP_` and the name upper-cased with `-` made `_`; some
 * gateways, Apache httpd before 2.4 among them, make every character that
 * is not a letter or digit `_`): letters in lower case, digits as they
 * are, anything else `-`. Two names that fold alike may reach such a
 * backend as one variable.
 */
const NAME_FOLD = (() => {
  const table = new Uint8Array(256).fill(HYPHEN);
  for (let b = 0x30; b <= 0x39; b++) table[b] = b;
  for (let b = 0x61; b <= 0x7a; b++) table[b] = table[b - 0x20] = b;
  return table;
})();

/** {@link NAME_FOLD} of a token (ASCII). */
function foldName(name: string): string {
  let out = "";
  for (let i = 0; i < name.length; i++) out += String.fromCharCode(NAME_FOLD[name.charCodeAt(i)]);
  return out;
}

/**
 * Bytes of a quoted-string (RFC 9110 §5.6.4): 1 for qdtext (HTAB, SP,
 * visible ASCII but `"` and `\`, obs-text), 2 for what only a quoted-pair
 * may carry after its `\` (`"` and `\`).
 */
const QUOTED = (() => {
  const table = new Uint8Array(256);
  table[HTAB] = 1;
  for (let b = SP; b <= 0xff; b++) if (b !== 0x7f) table[b] = 1;
  table[DQUOTE] = table[BACKSLASH] = 2;
  return table;
})();

/** Hex digit values, -1 for anything else. */
const HEX = (() => {
  const table = new Int8Array(256).fill(-1);
  for (let d = 0; d < 10; d++) table[0x30 + d] = d;
  for (let d = 0; d < 6; d++) table[0x41 + d] = table[0x61 + d] = 10 + d;
  return table;
})();

/** The response written when the first head is refused. */
const BAD_REQUEST = new TextEncoder().encode(
  "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
);
const HEAD_TOO_LARGE = new TextEncoder().encode(
  "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
);
const CRLF = new Uint8Array([CR, LF]);

/** Errors that answer 431 rather than 400. */
const tooLarge = new WeakSet<Error>();

/** Where the parser is in the client's stream (numbers: compared on every step). */
const State = {
  /** Reading a request head (or empty lines before one). */
  Head: 0,
  /** In a Content-Length body: `#remaining` bytes to go. */
  Length: 1,
  /** Reading a chunk-size line. */
  ChunkSize: 2,
  /** In chunk data: `#remaining` bytes to go. */
  ChunkData: 3,
  /** Expecting the CRLF after chunk data. */
  ChunkEnd: 4,
  /** Reading the trailer section after the last chunk. */
  Trailer: 5,
  /** Not HTTP any more (CONNECT, upgrade): everything passes. */
  Raw: 6,
} as const;
type State = typeof State[keyof typeof State];

/** What the head being read says, gathered line by line. */
interface RequestHead {
  /** End of the request line, after its CRLF, in the line buffer. */
  lineEnd: number;
  /** HTTP/1.1 (true) or HTTP/1.0. */
  http11: boolean;
  connect: boolean;
  /** Spans [start, end) of the line buffer to leave out: the client's copies of the header. */
  drops: number[];
  dropped: number;
  /** Field lines seen, for error messages. */
  fields: number;
  contentLength: number | undefined;
  /** Values of every Transfer-Encoding line, in order. */
  transferEncoding: string[];
  upgrade: boolean;
  connectionUpgrade: boolean;
}

/**
 * Wraps `source` (the client's socket). Returns a reader that yields the
 * client's bytes with `name: value` added to every request (and any header
 * of the same name the client sent removed, case-insensitively, so a local
 * app cannot override or duplicate it).
 *
 * The reader's `read` is not re-entrant: call it again only after the last
 * call settled (as a copy loop does). It resolves to null after the client's
 * end of stream and every byte before it; a stream ending inside a body, or
 * between the lines of a chunked body, ends the same way, and the session's
 * FIN tells the server. A stream ending inside a line (of a head, a
 * chunk-size line, the CRLF after a chunk's data, a trailer line) is an
 * error, as below, and that partial line is not returned.
 *
 * A request the injector cannot frame unambiguously makes `read` throw (and
 * throw the same error ever after): a TypeError naming the problem, or a
 * RangeError for a size over its limit. When nothing of the connection has
 * been returned yet and `source` has `write` (a socket), the client is first
 * answered `400 Bad Request` (`431` for a head over `maxHeaderBytes`) with
 * `Connection: close`. When bytes were already returned, the server has a
 * request in progress and answers; the error then comes at the next `read`,
 * after every byte before the fault.
 *
 * @throws {TypeError} when `name` is not a token or is a framing or
 *   connection header (`Content-Length`, `Transfer-Encoding`, `Host`,
 *   `Connection`, `Upgrade`, ..., also spelled with `_` for `-`, as the
 *   client's copies are matched), or `value` has a character outside
 *   visible ASCII, space and tab, or starts or ends with whitespace.
 * @throws {RangeError} when `maxHeaderBytes` is not a positive integer.
 *
 * @example
 * ```ts
 * import { injectHeader } from "./http_header_injector.ts";
 *
 * // A client's bytes, from memory here; in an inlet, the accepted socket.
 * const request = new TextEncoder().encode(
 *   "GET /v1/search HTTP/1.1\r\nHost: api\r\nX-License-Id: forged\r\n\r\n",
 * );
 * let offered = false;
 * const client = {
 *   read(p: Uint8Array): Promise<number | null> {
 *     if (offered) return Promise.resolve(null);
 *     offered = true;
 *     p.set(request);
 *     return Promise.resolve(request.length);
 *   },
 * };
 *
 * const reader = injectHeader(client, { name: "X-License-Id", value: "3f9a0c" });
 * const buffer = new Uint8Array(1024);
 * let forwarded = "";
 * for (let n; (n = await reader.read(buffer)) !== null;) {
 *   forwarded += new TextDecoder().decode(buffer.subarray(0, n));
 * }
 * console.log(forwarded);
 * // GET /v1/search HTTP/1.1
 * // X-License-Id: 3f9a0c
 * // Host: api
 * ```
 */
export function injectHeader(
  source: ByteReader & { write?(p: Uint8Array): Promise<number> },
  options: HeaderInjectorOptions,
): ByteReader {
  const { name, value } = options;
  if (typeof name !== "string" || name.length === 0) {
    throw new TypeError("header name must be a non-empty string");
  }
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c > 0xff || TCHAR[c] === 0) {
      throw new TypeError(`header name ${JSON.stringify(name)} is not an HTTP token`);
    }
  }
  // Folded as the client's copies are matched: else `Content_Length` would
  // make the injector drop the client's Content-Length as a copy.
  if (RESERVED_NAMES.has(foldName(name))) {
    throw new TypeError(`header name ${name} frames the request or manages the connection`);
  }
  if (typeof value !== "string") throw new TypeError(`value of ${name} must be a string`);
  // The value is never quoted in a message: it is a secret.
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === CR || c === LF || c === 0) {
      throw new TypeError(`value of ${name} contains CR, LF or NUL (at index ${i})`);
    }
    if (c !== HTAB && (c < SP || c > 0x7e)) {
      throw new TypeError(
        `value of ${name} has a character that is not visible ASCII, space or tab (at index ${i})`,
      );
    }
  }
  if (/^[ \t]|[ \t]$/.test(value)) {
    throw new TypeError(`value of ${name} starts or ends with whitespace`);
  }
  const max = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  if (!Number.isSafeInteger(max) || max < 1) {
    throw new RangeError(`maxHeaderBytes must be a positive integer, got ${max}`);
  }
  return new HeaderInjector(source, name, value, max, options.tunnels ?? false);
}

/** A name as bytes, all ASCII. */
function ascii(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

/** Bytes as a string, one char per byte (no decoding: these are ASCII or refused later). */
function latin1(bytes: Uint8Array, start: number, end: number): string {
  let out = "";
  for (let i = start; i < end; i++) out += String.fromCharCode(bytes[i]);
  return out;
}

/**
 * Strips optional whitespace (SP, HTAB) from both ends. Not `trim()`, which
 * also strips U+00A0 (byte 0xA0 here) and so would read `chunked\xA0` as
 * `chunked`, unlike the server.
 */
function trimOws(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && (text[start] === " " || text[start] === "\t")) start++;
  while (end > start && (text[end - 1] === " " || text[end - 1] === "\t")) end--;
  return text.slice(start, end);
}

function isToken(text: string): boolean {
  if (text.length === 0) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff || TCHAR[c] === 0) return false;
  }
  return true;
}

const LOWER_CONTENT_LENGTH = ascii("content-length");
const LOWER_TRANSFER_ENCODING = ascii("transfer-encoding");
const LOWER_UPGRADE = ascii("upgrade");
const LOWER_CONNECTION = ascii("connection");
const CONNECT_METHOD = ascii("CONNECT");
const PRI_METHOD = ascii("PRI");

class HeaderInjector implements ByteReader {
  readonly #source: ByteReader & { write?(p: Uint8Array): Promise<number> };
  /** `name: value\r\n`. */
  readonly #injected: Uint8Array;
  /** The name folded by {@link NAME_FOLD}, to match the client's copies. */
  readonly #foldedName: Uint8Array;
  readonly #max: number;

  #state: State = State.Head;
  /** Bytes left in a Content-Length body or in a chunk's data. */
  #remaining = 0;

  /** Bytes read from the client not yet parsed: `#in[#inStart .. #inEnd)`. */
  #in: Uint8Array | null = null;
  #inStart = 0;
  #inEnd = 0;
  #eof = false;

  /**
   * The head (or chunk-size line, or trailer line) being read, copied out of
   * `#in` as it arrives: `#line[0 .. #lineLength)`. Complete lines end before
   * `#lineStart`; each byte is scanned once, when it is appended.
   */
  #line = new Uint8Array(256);
  #lineLength = 0;
  #lineStart = 0;
  #request: RequestHead | null = null;
  /** Bytes of the trailer section so far. */
  #trailerBytes = 0;

  /**
   * Output made by the parser (rewritten heads, chunk-size lines, trailers)
   * waiting for the caller: `#out[0]` from `#outAt`, then the rest. Each is
   * its own copy, and all are drained before the client is read again, so
   * at most one head (bounded by `maxHeaderBytes`) waits here.
   */
  #out: Uint8Array[] = [];
  #outAt = 0;
  /** {@link HeaderInjectorOptions.tunnels}. */
  #tunnels: boolean;

  /** Bytes returned to the caller so far. */
  #returned = 0;
  #error: Error | null = null;

  constructor(
    source: ByteReader & { write?(p: Uint8Array): Promise<number> },
    name: string,
    value: string,
    max: number,
    tunnels: boolean,
  ) {
    this.#tunnels = tunnels;
    this.#source = source;
    this.#injected = ascii(`${name}: ${value}\r\n`);
    this.#foldedName = ascii(foldName(name));
    this.#max = max;
  }

  async read(p: Uint8Array): Promise<number | null> {
    if (this.#error !== null) throw this.#error;
    if (p.length === 0) return 0;
    let n = 0;
    for (;;) {
      n = this.#drain(p, n);
      if (n === p.length) break;
      // Here `#out` is empty.
      if (this.#inStart < this.#inEnd) {
        try {
          n = this.#step(p, n);
        } catch (error) {
          return await this.#fail(error, n);
        }
        continue;
      }
      // Never wait on the client while holding bytes for the caller.
      if (n > 0) break;
      if (this.#eof) {
        try {
          this.#finish();
        } catch (error) {
          return await this.#fail(error, 0);
        }
        return null;
      }
      const state = this.#state;
      if (state === State.Raw || state === State.Length || state === State.ChunkData) {
        // A body with nothing buffered: straight into the caller's buffer,
        // at most to the body's end, so no byte of the next head lands there.
        const want = state === State.Raw ? p.length : Math.min(p.length, this.#remaining);
        const got = await this.#source.read(p.subarray(0, want));
        if (got === null) {
          this.#eof = true;
          continue;
        }
        if (state !== State.Raw) {
          this.#remaining -= got;
          if (this.#remaining === 0) this.#endOfSpan();
        }
        n = got;
        if (n > 0) break;
        continue;
      }
      const input = this.#in ??= new Uint8Array(INPUT_BYTES);
      const got = await this.#source.read(input);
      if (got === null) {
        this.#eof = true;
        continue;
      }
      this.#inStart = 0;
      this.#inEnd = got;
    }
    this.#returned += n;
    return n;
  }

  /** Copies pending output into `p` from `n`; returns the new fill. */
  #drain(p: Uint8Array, n: number): number {
    while (this.#out.length > 0 && n < p.length) {
      const chunk = this.#out[0];
      const take = Math.min(chunk.length - this.#outAt, p.length - n);
      p.set(chunk.subarray(this.#outAt, this.#outAt + take), n);
      n += take;
      this.#outAt += take;
      if (this.#outAt === chunk.length) {
        this.#out.shift();
        this.#outAt = 0;
      }
    }
    return n;
  }

  /**
   * Parses one step of buffered input: a span of body into `p` (whole, by
   * `set`), or the bytes up to the next LF into the line buffer.
   */
  #step(p: Uint8Array, n: number): number {
    const input = this.#in!;
    const state = this.#state;
    if (state === State.Raw || state === State.Length || state === State.ChunkData) {
      let take = Math.min(this.#inEnd - this.#inStart, p.length - n);
      if (state !== State.Raw) take = Math.min(take, this.#remaining);
      p.set(input.subarray(this.#inStart, this.#inStart + take), n);
      this.#inStart += take;
      if (state !== State.Raw) {
        this.#remaining -= take;
        if (this.#remaining === 0) this.#endOfSpan();
      }
      return n + take;
    }
    this.#takeLine(input);
    return n;
  }

  /** A Content-Length body or a chunk's data has ended. */
  #endOfSpan(): void {
    this.#state = this.#state === State.Length ? State.Head : State.ChunkEnd;
  }

  /** Appends input up to and including the next LF to the line buffer; handles a complete line. */
  #takeLine(input: Uint8Array): void {
    const start = this.#inStart;
    const found = input.subarray(start, this.#inEnd).indexOf(LF);
    const stop = found === -1 ? this.#inEnd : start + found + 1;
    const count = stop - start;
    if (this.#lineLength + count > this.#lineLimit()) this.#overLimit();
    this.#append(input, start, stop);
    this.#inStart = stop;
    if (this.#state === State.ChunkEnd) {
      // Refused at the first wrong byte: a client sending more data than it
      // declared is not waited for.
      const line = this.#line;
      if (line[0] !== CR || (this.#lineLength === 2 && line[1] !== LF)) {
        throw new TypeError("chunk data not followed by CRLF");
      }
    }
    if (found !== -1) this.#onLine();
  }

  /** Most bytes the line buffer may hold in the current state. */
  #lineLimit(): number {
    switch (this.#state) {
      case State.Head:
        return this.#max;
      case State.ChunkSize:
        return this.#max;
      case State.ChunkEnd:
        return 2;
      default:
        return this.#max - this.#trailerBytes;
    }
  }

  #overLimit(): never {
    switch (this.#state) {
      case State.Head: {
        const error = new RangeError(`request head longer than ${this.#max} bytes`);
        tooLarge.add(error);
        throw error;
      }
      case State.ChunkSize:
        throw new RangeError(`chunk-size line longer than ${this.#max} bytes`);
      case State.ChunkEnd:
        throw new TypeError("chunk data not followed by CRLF");
      default:
        throw new RangeError(`trailer section longer than ${this.#max} bytes`);
    }
  }

  #append(input: Uint8Array, start: number, stop: number): void {
    const need = this.#lineLength + stop - start;
    if (need > this.#line.length) {
      // Doubling keeps appends linear; the limit check above bounds the size.
      const grown = new Uint8Array(Math.max(need, this.#line.length * 2));
      grown.set(this.#line.subarray(0, this.#lineLength));
      this.#line = grown;
    }
    this.#line.set(input.subarray(start, stop), this.#lineLength);
    this.#lineLength = need;
  }

  /** Handles the complete line `#line[#lineStart .. #lineLength)`, which ends in LF. */
  #onLine(): void {
    const line = this.#line;
    const start = this.#lineStart;
    const end = this.#lineLength;
    const state = this.#state;
    if (end - start < 2 || line[end - 2] !== CR) {
      if (state === State.ChunkEnd) throw new TypeError("chunk data not followed by CRLF");
      const where = state === State.Head
        ? "request head"
        : state === State.ChunkSize
        ? "chunk-size line"
        : "trailer section";
      throw new TypeError(`bare LF line ending in ${where} (HTTP/1.x lines end in CRLF)`);
    }
    const contentEnd = end - 2;
    switch (state) {
      case State.Head:
        this.#onHeadLine(start, contentEnd, end);
        return;
      case State.ChunkSize:
        this.#onChunkSize(contentEnd);
        return;
      case State.ChunkEnd:
        if (contentEnd !== 0) throw new TypeError("chunk data not followed by CRLF");
        this.#out.push(CRLF);
        this.#lineLength = 0;
        this.#state = State.ChunkSize;
        return;
      default:
        this.#onTrailerLine(contentEnd, end);
    }
  }

  #onHeadLine(start: number, contentEnd: number, end: number): void {
    const request = this.#request;
    if (request === null) {
      if (contentEnd === start) {
        // An empty line before a request line: RFC 9112 §2.2 asks servers to
        // ignore it (some clients send one after a body), so it passes.
        this.#out.push(CRLF);
        this.#lineLength = 0;
        return;
      }
      this.#request = this.#parseRequestLine(contentEnd, end);
      this.#lineStart = end;
      return;
    }
    if (contentEnd === start) {
      this.#endOfHead(request);
      return;
    }
    request.fields++;
    const where = `header line ${request.fields}`;
    const [nameEnd, valueStart, valueEnd] = this.#parseField(start, contentEnd, where);
    const line = this.#line;
    if (this.#isCopy(start, nameEnd)) {
      request.drops.push(start, end);
      request.dropped += end - start;
    } else if (this.#nameIs(start, nameEnd, LOWER_CONTENT_LENGTH)) {
      const length = parseContentLength(latin1(line, valueStart, valueEnd));
      if (request.contentLength !== undefined && request.contentLength !== length) {
        throw new TypeError("conflicting Content-Length values");
      }
      request.contentLength = length;
    } else if (this.#nameIs(start, nameEnd, LOWER_TRANSFER_ENCODING)) {
      request.transferEncoding.push(latin1(line, valueStart, valueEnd));
    } else if (this.#nameIs(start, nameEnd, LOWER_UPGRADE)) {
      if (!this.#tunnels) {
        // Removed: without it the server keeps speaking HTTP/1.1 (RFC 9110 §7.8).
        request.drops.push(start, end);
        request.dropped += end - start;
      } else if (valueEnd > valueStart) request.upgrade = true;
    } else if (this.#nameIs(start, nameEnd, LOWER_CONNECTION)) {
      for (const option of latin1(line, valueStart, valueEnd).split(",")) {
        if (trimOws(option).toLowerCase() === "upgrade") request.connectionUpgrade = true;
      }
    }
    this.#lineStart = end;
  }

  /** `METHOD SP request-target SP HTTP-version` in `#line[0 .. contentEnd)`. */
  #parseRequestLine(contentEnd: number, end: number): RequestHead {
    const line = this.#line;
    let i = 0;
    while (i < contentEnd && TCHAR[line[i]] === 1) i++;
    const methodEnd = i;
    if (methodEnd === 0 || i === contentEnd || line[i] !== SP) {
      throw new TypeError("malformed request line: expected a method token and a space");
    }
    const targetStart = ++i;
    // Any visible byte, obs-text included; no space, no control character.
    while (i < contentEnd && line[i] > SP && line[i] !== 0x7f) i++;
    if (i === targetStart || i === contentEnd || line[i] !== SP) {
      throw new TypeError(
        "malformed request line: expected METHOD SP request-target SP HTTP-version",
      );
    }
    const version = latin1(line, i + 1, contentEnd);
    if (version !== "HTTP/1.1" && version !== "HTTP/1.0") {
      if (version === "HTTP/2.0" && this.#bytesAre(0, methodEnd, PRI_METHOD)) {
        throw new TypeError("HTTP/2 connection preface: only HTTP/1.0 and HTTP/1.1 are supported");
      }
      if (/^HTTP\/[0-9]\.[0-9]$/.test(version)) {
        throw new TypeError(
          `unsupported HTTP version ${version}: only HTTP/1.0 and HTTP/1.1 are supported`,
        );
      }
      throw new TypeError("malformed request line: no HTTP/1.x version after the target");
    }
    return {
      lineEnd: end,
      http11: version === "HTTP/1.1",
      connect: this.#bytesAre(0, methodEnd, CONNECT_METHOD),
      drops: [],
      dropped: 0,
      fields: 0,
      contentLength: undefined,
      transferEncoding: [],
      upgrade: false,
      connectionUpgrade: false,
    };
  }

  /**
   * Checks `name ":" OWS value OWS` in `#line[start .. contentEnd)`; returns
   * the name's end and the value's bounds without the OWS.
   */
  #parseField(start: number, contentEnd: number, where: string): [number, number, number] {
    const line = this.#line;
    if (line[start] === SP || line[start] === HTAB) {
      throw new TypeError(`${where} starts with whitespace (obs-fold line folding is refused)`);
    }
    const colon = line.subarray(start, contentEnd).indexOf(COLON);
    if (colon === -1) throw new TypeError(`${where} has no colon`);
    const nameEnd = start + colon;
    if (colon === 0) throw new TypeError(`${where} has an empty field name`);
    for (let i = start; i < nameEnd; i++) {
      if (TCHAR[line[i]] === 0) throw new TypeError(`${where}: field name is not an HTTP token`);
    }
    for (let i = nameEnd + 1; i < contentEnd; i++) {
      const c = line[i];
      if ((c < SP && c !== HTAB) || c === 0x7f) {
        throw new TypeError(
          c === CR
            ? `${where}: bare CR in field value`
            : `${where}: control character 0x${c.toString(16).padStart(2, "0")} in field value`,
        );
      }
    }
    let valueStart = nameEnd + 1;
    let valueEnd = contentEnd;
    while (valueStart < valueEnd && (line[valueStart] === SP || line[valueStart] === HTAB)) {
      valueStart++;
    }
    while (valueEnd > valueStart && (line[valueEnd - 1] === SP || line[valueEnd - 1] === HTAB)) {
      valueEnd--;
    }
    return [nameEnd, valueStart, valueEnd];
  }

  /** Whether `#line[start .. end)` is `lower`, ignoring ASCII case. */
  #nameIs(start: number, end: number, lower: Uint8Array): boolean {
    if (end - start !== lower.length) return false;
    const line = this.#line;
    for (let i = 0; i < lower.length; i++) {
      let c = line[start + i];
      if (c >= 0x41 && c <= 0x5a) c |= 0x20;
      if (c !== lower[i]) return false;
    }
    return true;
  }

  /**
   * Whether the field name `#line[start .. end)` is the client's copy of the
   * header: the same name once both are folded by {@link NAME_FOLD} (so
   * `X_License_Id` and `x.license-ID` are copies of `X-License-Id`).
   *
   * Such a field is dropped rather than refused. Either way the backend
   * never sees the client's value, and dropping treats every spelling as the
   * exact name's copy is treated (also dropped: an app configured with its
   * own key keeps working); refusing would add no protection, only end the
   * connection of a client that gains nothing by sending it.
   */
  #isCopy(start: number, end: number): boolean {
    const folded = this.#foldedName;
    if (end - start !== folded.length) return false;
    const line = this.#line;
    for (let i = 0; i < folded.length; i++) {
      if (NAME_FOLD[line[start + i]] !== folded[i]) return false;
    }
    return true;
  }

  /** Whether `#line[start .. end)` is exactly `bytes`. */
  #bytesAre(start: number, end: number, bytes: Uint8Array): boolean {
    if (end - start !== bytes.length) return false;
    for (let i = 0; i < bytes.length; i++) if (this.#line[start + i] !== bytes[i]) return false;
    return true;
  }

  /** The blank line: decides the framing and queues the rewritten head. */
  #endOfHead(request: RequestHead): void {
    if (request.connect && !this.#tunnels) {
      throw new TypeError("CONNECT is not allowed here (tunnels are off)");
    }
    const chunked = request.transferEncoding.length > 0;
    if (chunked) {
      // RFC 9112 §6.1 and §6.3: these are how requests get smuggled past
      // one parser and read differently by the next.
      if (request.contentLength !== undefined) {
        throw new TypeError(
          "request has both Transfer-Encoding and Content-Length (request smuggling)",
        );
      }
      if (!request.http11) throw new TypeError("Transfer-Encoding in an HTTP/1.0 request");
      checkTransferEncoding(request.transferEncoding);
    }

    const line = this.#line;
    const headEnd = this.#lineLength;
    const out = new Uint8Array(headEnd - request.dropped + this.#injected.length);
    out.set(line.subarray(0, request.lineEnd));
    out.set(this.#injected, request.lineEnd);
    let at = request.lineEnd + this.#injected.length;
    let from = request.lineEnd;
    for (let d = 0; d < request.drops.length; d += 2) {
      out.set(line.subarray(from, request.drops[d]), at);
      at += request.drops[d] - from;
      from = request.drops[d + 1];
    }
    out.set(line.subarray(from, headEnd), at);
    this.#out.push(out);

    this.#request = null;
    this.#lineLength = 0;
    this.#lineStart = 0;
    if (request.connect || (request.http11 && request.upgrade && request.connectionUpgrade)) {
      // Whatever follows (a body included) is the tunnelled protocol.
      this.#state = State.Raw;
    } else if (chunked) {
      this.#state = State.ChunkSize;
    } else if (request.contentLength !== undefined && request.contentLength > 0) {
      this.#state = State.Length;
      this.#remaining = request.contentLength;
    } else {
      this.#state = State.Head;
    }
  }

  /** `chunk-size [ chunk-ext ]` in `#line[0 .. contentEnd)`; the line passes unchanged. */
  #onChunkSize(contentEnd: number): void {
    const line = this.#line;
    let size = 0;
    let i = 0;
    for (; i < contentEnd && HEX[line[i]] !== -1; i++) {
      // Exact until it passes 2^53: multiplying by 16 is exact, and a sum
      // that rounds still compares above the limit.
      size = size * 16 + HEX[line[i]];
      if (size > Number.MAX_SAFE_INTEGER) {
        throw new RangeError("chunk size larger than Number.MAX_SAFE_INTEGER");
      }
    }
    if (i === 0) throw new TypeError("chunk-size line does not start with a hex size");
    if (i < contentEnd) this.#checkChunkExt(i, contentEnd);
    this.#out.push(line.slice(0, this.#lineLength));
    this.#lineLength = 0;
    if (size === 0) {
      this.#state = State.Trailer;
      this.#trailerBytes = 0;
    } else {
      this.#state = State.ChunkData;
      this.#remaining = size;
    }
  }

  /**
   * Checks that `#line[i .. end)`, after a chunk size, is a chunk-ext (RFC
   * 9112 §7.1.1), each byte looked at once:
   *
   *     chunk-ext      = *( BWS ";" BWS chunk-ext-name
   *                         [ BWS "=" BWS chunk-ext-val ] )
   *     chunk-ext-name = token
   *     chunk-ext-val  = token / quoted-string
   *
   * Anything else is refused: servers that parse extensions strictly refuse
   * it too, and lenient ones may each read it their own way.
   */
  #checkChunkExt(i: number, end: number): void {
    const line = this.#line;
    for (let first = true; i < end; first = false) {
      while (i < end && (line[i] === SP || line[i] === HTAB)) i++;
      if (i === end || line[i] !== SEMICOLON) {
        // Without a first ";" (`5 `, `5x`) this is no extension at all.
        if (first) throw new TypeError("chunk-size line: unexpected bytes after the size");
        this.#badChunkExt(i, end);
      }
      i++;
      while (i < end && (line[i] === SP || line[i] === HTAB)) i++;
      const nameStart = i;
      while (i < end && TCHAR[line[i]] === 1) i++;
      if (i === nameStart) this.#badChunkExt(i, end);
      // BWS here belongs to a "=" if one follows, else to the next ";".
      let j = i;
      while (j < end && (line[j] === SP || line[j] === HTAB)) j++;
      if (j === end || line[j] !== EQUALS) continue;
      i = j + 1;
      while (i < end && (line[i] === SP || line[i] === HTAB)) i++;
      if (i < end && line[i] === DQUOTE) {
        for (i++;; i++) {
          if (i === end) this.#badChunkExt(i, end);
          if (QUOTED[line[i]] === 1) continue;
          if (line[i] === DQUOTE) break;
          // A quoted-pair: a backslash, then what qdtext allows or `"` or `\`.
          if (line[i] !== BACKSLASH || ++i === end || QUOTED[line[i]] === 0) {
            this.#badChunkExt(i, end);
          }
        }
        i++;
      } else {
        const valueStart = i;
        while (i < end && TCHAR[line[i]] === 1) i++;
        if (i === valueStart) this.#badChunkExt(i, end);
      }
    }
  }

  /** Refuses a chunk extension at `#line[i]` (`end` when it stops short). */
  #badChunkExt(i: number, end: number): never {
    throw new TypeError(
      i < end && isControl(this.#line[i])
        ? "chunk-size line: control character in a chunk extension"
        : "chunk-size line: malformed chunk extension (RFC 9112 §7.1.1)",
    );
  }

  /** One line of the trailer section, or its end. */
  #onTrailerLine(contentEnd: number, end: number): void {
    this.#trailerBytes += end;
    this.#lineLength = 0;
    if (contentEnd === 0) {
      this.#out.push(CRLF);
      this.#state = State.Head;
      return;
    }
    const [nameEnd] = this.#parseField(0, contentEnd, "trailer field");
    // The client's copy of the header is left out here too: a server may
    // merge trailers into the header fields.
    if (!this.#isCopy(0, nameEnd)) this.#out.push(this.#line.slice(0, end));
  }

  /**
   * The client's end of stream with nothing buffered. Between lines (or in
   * a body, which does not get here) it is a clean end. Inside a line it
   * throws, and the partial line is never forwarded: it was not checked (a
   * partial trailer line may be the client's copy of the header), and a
   * lenient server could take bytes ended by the end of stream as a line.
   */
  #finish(): void {
    if (this.#lineLength === 0) return;
    this.#lineLength = 0;
    switch (this.#state) {
      case State.Head:
        throw new TypeError("truncated request head");
      case State.ChunkSize:
        throw new TypeError("truncated chunk-size line");
      case State.ChunkEnd:
        throw new TypeError("truncated chunk: no CRLF after its data");
      default:
        throw new TypeError("truncated trailer section");
    }
  }

  /**
   * Makes `error` sticky. With bytes for the caller, returns them first (they
   * precede the fault); else answers the client when nothing was returned
   * yet, and throws.
   */
  async #fail(error: unknown, n: number): Promise<number> {
    this.#error = error instanceof Error ? error : new Error(String(error));
    this.#out = [];
    this.#inStart = this.#inEnd = 0;
    if (n > 0) {
      this.#returned += n;
      return n;
    }
    if (this.#returned === 0 && this.#source.write !== undefined) {
      const response = tooLarge.has(this.#error) ? HEAD_TOO_LARGE : BAD_REQUEST;
      try {
        for (let w = 0; w < response.length;) w += await this.#source.write(response.subarray(w));
      } catch { /* the client may be gone already; the error below is what matters */ }
    }
    throw this.#error;
  }
}

/** A control character other than HTAB: not allowed anywhere in a line's content. */
function isControl(c: number): boolean {
  return (c < SP && c !== HTAB) || c === 0x7f;
}

/** A Content-Length value: one decimal, or a list of identical ones (RFC 9110 §8.6). */
function parseContentLength(text: string): number {
  let length: number | undefined;
  for (const element of text.split(",")) {
    const digits = trimOws(element);
    if (!/^[0-9]+$/.test(digits)) throw new TypeError("Content-Length is not a decimal number");
    const significant = digits.replace(/^0+(?=.)/, "");
    const value = Number(significant);
    if (significant.length > 16 || value > Number.MAX_SAFE_INTEGER) {
      throw new RangeError("Content-Length larger than Number.MAX_SAFE_INTEGER");
    }
    if (length !== undefined && length !== value) {
      throw new TypeError("conflicting Content-Length values");
    }
    length = value;
  }
  return length!;
}

/** The codings must end in chunked, once (RFC 9112 §6.1). */
function checkTransferEncoding(values: string[]): void {
  const codings: string[] = [];
  for (const value of values) {
    for (const element of value.split(",")) {
      const trimmed = trimOws(element);
      if (trimmed === "") continue;
      const semicolon = trimmed.indexOf(";");
      const coding = trimOws(semicolon === -1 ? trimmed : trimmed.slice(0, semicolon));
      if (!isToken(coding)) {
        throw new TypeError("Transfer-Encoding has a coding that is not a token");
      }
      codings.push(coding.toLowerCase());
    }
  }
  if (codings.length === 0) throw new TypeError("Transfer-Encoding is empty");
  if (codings[codings.length - 1] !== "chunked") {
    throw new TypeError("Transfer-Encoding does not end in chunked: the body has no framing");
  }
  if (codings.indexOf("chunked") !== codings.length - 1) {
    throw new TypeError("Transfer-Encoding applies chunked more than once");
  }
}
