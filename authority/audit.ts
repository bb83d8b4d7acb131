/**
 * The authority's hash-chained audit log (docs/design.md §8), as pure functions:
 * the store (`store.ts`) keeps the rows and calls these to link and check them.
 *
 * Each entry's hash is SHA-256 over an unambiguous encoding of
 *
 * ```
 * "nexus.audit_entry.v1" || 0x00
 * prev_hash  32 bytes (the previous entry's hash; 32 zero bytes for entry 1)
 * seq        8 bytes, big-endian
 * time       8 bytes, big-endian (Unix seconds)
 * kind       4-byte big-endian length || UTF-8
 * data       4-byte big-endian length || UTF-8 of the canonical JSON
 * ```
 *
 * Every field is either of fixed length or length-prefixed, and the label
 * ends with a NUL it cannot contain, so two different entries never encode
 * to the same bytes. The data is stored as the very text that was hashed,
 * and {@link verifyChain} also requires that text to be canonical (keys
 * sorted, no whitespace, no duplicate keys), so there is exactly one valid
 * stored form of each entry.
 *
 * What a chain proves: editing any field of any entry, or deleting,
 * inserting or reordering entries, breaks a hash or a link, unless the
 * editor rewrites every later entry as well, which needs no secret. The
 * store therefore also keeps the head (last seq and hash) in a separate row,
 * so cutting the tail is detected too; and a head kept outside the file (a
 * checkpoint: see {@link VerifyChainOptions}) detects even a complete
 * rewrite up to that point.
 *
 * @module
 */
import { sha256 } from "../src/crypto/hash.ts";
import { toHex } from "../src/encoding/hex.ts";

/** One entry of the audit log, with its data decoded. */
export interface AuditEntry {
  seq: number;
  /** Unix seconds. */
  time: number;
  kind: string;
  data: Record<string, unknown>;
  /** Hex SHA-256 of the previous entry ({@link GENESIS_HASH} for entry 1). */
  prevHash: string;
  /** Hex SHA-256 of this entry (see the module comment). */
  hash: string;
}

/** One entry as stored: `data` is the canonical JSON text that was hashed. */
export interface AuditRow {
  seq: number;
  time: number;
  kind: string;
  data: string;
  prevHash: string;
  hash: string;
}

/** The last entry of a log (or of a prefix of it): seq 0 and {@link GENESIS_HASH} when empty. */
export interface AuditHead {
  seq: number;
  hash: string;
}

/** The result of verifying a log. */
export type AuditVerification =
  | { ok: true; entries: number; head: string }
  | { ok: false; seq: number; reason: string };

/** The previous hash of entry 1: 64 zeros. */
export const GENESIS_HASH = "0".repeat(64);

/** The label that starts every hashed entry. Changing it is a format change. */
export const AUDIT_DOMAIN = "nexus.audit_entry.v1";

/** Largest canonical data text of one entry, in UTF-16 units. */
export const MAX_AUDIT_DATA_LENGTH = 16 * 1024 * 1024;

/** Deepest nesting accepted in entry data. */
export const MAX_AUDIT_DATA_DEPTH = 32;

const KIND = /^[a-z][a-z0-9_.-]{0,63}$/;
const HASH = /^[0-9a-f]{64}$/;
const encoder = new TextEncoder();
const prefix = encoder.encode(AUDIT_DOMAIN + "\0");

/**
 * Checks an entry kind: lowercase ASCII, digits, `_`, `.`, `-`, at most 64
 * characters, starting with a letter (e.g. `credential.issue`).
 * @throws {TypeError}
 */
export function checkAuditKind(kind: string): string {
  if (typeof kind !== "string" || !KIND.test(kind)) {
    throw new TypeError(
      "an audit kind is 1 to 64 characters of a-z, 0-9, _ . -, starting with a letter",
    );
  }
  return kind;
}

function checkTime(time: number, what: string): void {
  if (!Number.isSafeInteger(time) || time < 0) {
    throw new RangeError(`${what} must be a non-negative safe integer`);
  }
}

/**
 * The canonical JSON of `value`: object keys sorted (by UTF-16 code units,
 * as `Array.prototype.sort` compares strings), no whitespace. Accepts null,
 * booleans, finite numbers, strings, arrays and plain objects (including
 * null-prototype ones); anything else, `undefined` included, is refused
 * rather than silently dropped, so what is hashed is what the caller passed.
 * @throws {TypeError} for a value JSON cannot carry exactly, or a cycle.
 * @throws {RangeError} when nested deeper than {@link MAX_AUDIT_DATA_DEPTH}.
 */
export function canonicalJson(value: unknown): string {
  return encodeValue(value, 0);
}

function encodeValue(value: unknown, depth: number): string {
  if (value === null || typeof value === "boolean" || typeof value === "string") {
    return JSON.stringify(value);
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new TypeError("audit data numbers must be finite");
    return JSON.stringify(value);
  }
  if (typeof value !== "object") {
    throw new TypeError(`audit data cannot hold a ${typeof value}`);
  }
  // The depth limit also ends any cycle.
  if (depth >= MAX_AUDIT_DATA_DEPTH) {
    throw new RangeError(`audit data nested deeper than ${MAX_AUDIT_DATA_DEPTH}`);
  }
  if (Array.isArray(value)) {
    return "[" + value.map((item) => encodeValue(item, depth + 1)).join(",") + "]";
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw new TypeError("audit data objects must be plain objects (encode bytes as hex)");
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record).sort();
  return "{" +
    keys.map((key) => JSON.stringify(key) + ":" + encodeValue(record[key], depth + 1)).join(",") +
    "}";
}

/**
 * The canonical JSON of an entry's data, which must be a plain object.
 * @throws {TypeError | RangeError} as {@link canonicalJson}, or when too long.
 */
export function encodeAuditData(data: Record<string, unknown>): string {
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new TypeError("audit data must be an object");
  }
  const text = canonicalJson(data);
  if (text.length > MAX_AUDIT_DATA_LENGTH) throw new RangeError("audit data too large");
  return text;
}

/**
 * The hex SHA-256 of an entry (see the module comment for the encoding).
 * @throws {TypeError | RangeError} on a malformed field.
 */
export function auditHash(
  prevHash: string,
  seq: number,
  time: number,
  kind: string,
  data: string,
): string {
  if (!HASH.test(prevHash)) throw new TypeError("prevHash must be 64 lowercase hex digits");
  if (!Number.isSafeInteger(seq) || seq < 1) throw new RangeError("seq must be a positive integer");
  checkTime(time, "time");
  // Every entry of a batch is hashed on the hot path of issuance: the
  // fields are written straight into one buffer (ASCII text byte by byte,
  // other text through the encoder; 64-bit integers as two 32-bit halves).
  const kindLength = utf8Length(kind);
  const dataLength = utf8Length(data);
  const out = new Uint8Array(prefix.length + 32 + 8 + 8 + 4 + kindLength + 4 + dataLength);
  const view = new DataView(out.buffer);
  let at = 0;
  out.set(prefix, at);
  at += prefix.length;
  out.set(Uint8Array.fromHex(prevHash), at);
  at += 32;
  setUint64(view, at, seq);
  at += 8;
  setUint64(view, at, time);
  at += 8;
  view.setUint32(at, kindLength);
  at += 4;
  at = writeUtf8(out, at, kind, kindLength);
  view.setUint32(at, dataLength);
  at += 4;
  writeUtf8(out, at, data, dataLength);
  return toHex(sha256(out));
}

/** A safe integer as 8 big-endian bytes. */
function setUint64(view: DataView, at: number, value: number): void {
  view.setUint32(at, Math.floor(value / 0x1_0000_0000));
  view.setUint32(at + 4, value >>> 0);
}

/** The UTF-8 length of `text`: its length when ASCII (checked), else the encoder's. */
function utf8Length(text: string): number {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0x7f) return encoder.encode(text).length;
  }
  return text.length;
}

/** Writes `text`'s UTF-8 (`length` bytes) at `at`; the offset after it. */
function writeUtf8(out: Uint8Array, at: number, text: string, length: number): number {
  if (length === text.length) {
    for (let i = 0; i < length; i++) out[at + i] = text.charCodeAt(i);
  } else {
    encoder.encodeInto(text, out.subarray(at, at + length));
  }
  return at + length;
}

/**
 * The row that follows `head` in a chain: seq `head.seq + 1`, linked to
 * `head.hash`.
 * @throws {TypeError | RangeError} on a bad kind, time or data.
 */
export function nextAuditRow(
  head: AuditHead,
  time: number,
  kind: string,
  data: Record<string, unknown>,
): AuditRow {
  checkAuditKind(kind);
  checkTime(time, "audit time");
  const text = encodeAuditData(data);
  const seq = head.seq + 1;
  return {
    seq,
    time,
    kind,
    data: text,
    prevHash: head.hash,
    hash: auditHash(head.hash, seq, time, kind, text),
  };
}

/**
 * Decodes a stored row's data.
 * @throws {TypeError} when the data is not a JSON object.
 */
export function decodeAuditRow(row: AuditRow): AuditEntry {
  let data: unknown;
  try {
    data = JSON.parse(row.data);
  } catch {
    throw new TypeError(`audit entry ${row.seq}: data is not valid JSON`);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new TypeError(`audit entry ${row.seq}: data is not an object`);
  }
  return {
    seq: row.seq,
    time: row.time,
    kind: row.kind,
    data: data as Record<string, unknown>,
    prevHash: row.prevHash,
    hash: row.hash,
  };
}

/** What {@link verifyChain} compares the log against, besides itself. */
export interface VerifyChainOptions {
  /**
   * The head recorded beside the log: the log must end exactly there. Set
   * by the store from its own head row, so that cutting off the last
   * entries (which leaves a consistent chain) is detected.
   */
  head?: AuditHead;
  /**
   * Heads seen earlier and kept elsewhere (exported, logged, signed): the
   * entry at each checkpoint's seq must exist and carry its hash. A log
   * rewritten from scratch matches none of them.
   */
  checkpoints?: readonly AuditHead[];
}

/**
 * Verifies a log given its rows in seq order: seq runs 1..n without gaps,
 * each prevHash is the previous hash (64 zeros for entry 1), each data text
 * is canonical JSON of an object, each hash recomputes, and the options'
 * head and checkpoints match. Stops at the first fault, whose seq it
 * reports (for a missing entry, the seq where it should be).
 */
export function verifyChain(
  rows: Iterable<AuditRow>,
  options: VerifyChainOptions = {},
): AuditVerification {
  const check = new ChainCheck(options);
  for (const row of rows) {
    const fault = check.step(row);
    if (fault !== null) return fault;
  }
  return check.end();
}

/**
 * {@link verifyChain} over rows that arrive asynchronously (a database
 * server's cursor), a page at a time: the same checks, the same result.
 */
export async function verifyChainAsync(
  rows: AsyncIterable<AuditRow>,
  options: VerifyChainOptions = {},
): Promise<AuditVerification> {
  const check = new ChainCheck(options);
  for await (const row of rows) {
    const fault = check.step(row);
    if (fault !== null) return fault;
  }
  return check.end();
}

/** The checks of {@link verifyChain}, one row at a time. */
class ChainCheck {
  #checkpoints = new Map<number, string>();
  #head: AuditHead | undefined;
  #previous: AuditHead = { seq: 0, hash: GENESIS_HASH };

  constructor(options: VerifyChainOptions) {
    for (const checkpoint of options.checkpoints ?? []) {
      this.#checkpoints.set(checkpoint.seq, checkpoint.hash);
    }
    this.#head = options.head;
  }

  /** The next row's fault, or null when it is a valid successor. */
  step(row: AuditRow): AuditVerification | null {
    const previous = this.#previous;
    const expected = previous.seq + 1;
    if (row.seq !== expected) {
      return {
        ok: false,
        seq: Math.min(row.seq, expected),
        reason: row.seq > expected
          ? `entry ${expected} is missing (next entry is ${row.seq})`
          : `entry ${row.seq} is out of order after entry ${previous.seq}`,
      };
    }
    const fault = checkRow(row, previous.hash);
    if (fault !== undefined) return { ok: false, seq: row.seq, reason: fault };
    const checkpoint = this.#checkpoints.get(row.seq);
    if (checkpoint !== undefined && checkpoint !== row.hash) {
      return { ok: false, seq: row.seq, reason: `entry ${row.seq} differs from a checkpoint` };
    }
    this.#previous = { seq: row.seq, hash: row.hash };
    return null;
  }

  /** After the last row: the checkpoints beyond it and the recorded head. */
  end(): AuditVerification {
    const previous = this.#previous;
    for (const seq of this.#checkpoints.keys()) {
      if (seq > previous.seq) {
        return {
          ok: false,
          seq: previous.seq + 1,
          reason: `the log ends at entry ${previous.seq} but a checkpoint names entry ${seq}`,
        };
      }
    }
    const head = this.#head;
    if (head !== undefined) {
      if (head.seq !== previous.seq) {
        return {
          ok: false,
          seq: Math.min(head.seq, previous.seq) + 1,
          reason: `the log ends at entry ${previous.seq} but its head records entry ${head.seq}`,
        };
      }
      if (head.hash !== previous.hash) {
        return {
          ok: false,
          seq: Math.max(previous.seq, 1),
          reason: `the recorded head hash differs from entry ${previous.seq}`,
        };
      }
    }
    return { ok: true, entries: previous.seq, head: previous.hash };
  }
}

/** Why `row` is not a valid successor of `prevHash`, or undefined when it is. */
function checkRow(row: AuditRow, prevHash: string): string | undefined {
  if (typeof row.prevHash !== "string" || row.prevHash !== prevHash) {
    return `entry ${row.seq} does not link to the previous entry`;
  }
  if (typeof row.hash !== "string" || !HASH.test(row.hash)) {
    return `entry ${row.seq} has a malformed hash`;
  }
  if (typeof row.kind !== "string" || !KIND.test(row.kind)) {
    return `entry ${row.seq} has a malformed kind`;
  }
  if (!Number.isSafeInteger(row.time) || row.time < 0) {
    return `entry ${row.seq} has a malformed time`;
  }
  if (typeof row.data !== "string") return `entry ${row.seq} has malformed data`;
  let canonical: string;
  try {
    canonical = encodeAuditData(decodeAuditRow(row).data);
  } catch {
    return `entry ${row.seq} data is not a JSON object`;
  }
  if (canonical !== row.data) return `entry ${row.seq} data is not canonical JSON`;
  if (auditHash(row.prevHash, row.seq, row.time, row.kind, row.data) !== row.hash) {
    return `entry ${row.seq} hash does not match its content`;
  }
  return undefined;
}
