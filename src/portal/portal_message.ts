/**
 * Portal session messages (docs/design.md §6, docs/protocol.md §20),
 * carried inside a secure channel between an inlet's session worker and
 * an outlet (or its session worker).
 *
 * ```
 * message = version: u8 (2) | kind: u8 | seq: u32 | body
 *   OPEN     0x01  credit: u32      inlet → outlet: open a session, granting credit (seq 0)
 *   OPENED   0x02  credit: u32      outlet → inlet: backend connected, granting credit (seq 0)
 *   DATA     0x03  bytes            either way; consumes credit equal to its length
 *   CREDIT   0x04  credit: u32      either way; more credit, after data was written out
 *   FIN      0x05                   either way; the sender's side reached end of stream
 *   RESET    0x06  reason: UTF-8    either way; the session is over, abruptly
 *   REFUSED  0x07  reason: UTF-8    outlet → inlet: policy denial or backend down (seq 0)
 *   PROBE    0x08                   either way; "still there?": answered with CREDIT 0
 * ```
 *
 * `seq` numbers each side's messages of one session: 0 for the first
 * (OPEN, OPENED or REFUSED), then 1, 2, … A receiver takes exactly the
 * next one. The secure channel delivers records at most once and in
 * order but may lose one a relay dropped (it serves on), so a session
 * that sees a number missing knows part of its stream is gone and ends
 * with an error instead of passing on a stream with a hole in it.
 *
 * The header is six bytes: DATA is built with the payload in one
 * allocation and read as a view, no decoding on the data path.
 *
 * @module
 */
import { MalformedError } from "../encoding/errors.ts";

/** Message kinds. */
export const PORTAL = {
  open: 0x01,
  opened: 0x02,
  data: 0x03,
  credit: 0x04,
  fin: 0x05,
  reset: 0x06,
  refused: 0x07,
  probe: 0x08,
} as const;

/** Portal message version. */
export const PORTAL_VERSION = 2;
/** Bytes before a message's body: version, kind, seq. */
export const PORTAL_HEADER_BYTES = 6;

/** A decoded message; `seq` numbers the sender's messages of the session (0 first). */
export type PortalMessage =
  & { seq: number }
  & (
    | { kind: typeof PORTAL.open | typeof PORTAL.opened | typeof PORTAL.credit; credit: number }
    | { kind: typeof PORTAL.data; bytes: Uint8Array }
    | { kind: typeof PORTAL.fin | typeof PORTAL.probe }
    | { kind: typeof PORTAL.reset | typeof PORTAL.refused; reason: string }
  );

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

function header(out: Uint8Array, kind: number, seq: number): Uint8Array {
  out[0] = PORTAL_VERSION;
  out[1] = kind;
  out[2] = seq >>> 24;
  out[3] = (seq >>> 16) & 0xff;
  out[4] = (seq >>> 8) & 0xff;
  out[5] = seq & 0xff;
  return out;
}

/** A message with a u32 credit: OPEN, OPENED or CREDIT. */
export function creditMessage(
  kind: typeof PORTAL.open | typeof PORTAL.opened | typeof PORTAL.credit,
  seq: number,
  credit: number,
): Uint8Array {
  const out = header(new Uint8Array(PORTAL_HEADER_BYTES + 4), kind, seq);
  new DataView(out.buffer).setUint32(PORTAL_HEADER_BYTES, credit);
  return out;
}

/**
 * Makes `message` a DATA message in place: its first
 * {@link PORTAL_HEADER_BYTES} bytes take the header, the rest is the data
 * (read there by the caller, so nothing is copied).
 */
export function dataMessageInPlace(seq: number, message: Uint8Array): Uint8Array {
  return header(message, PORTAL.data, seq);
}

/** A DATA message holding a copy of `bytes`. */
export function dataMessage(seq: number, bytes: Uint8Array): Uint8Array {
  const out = header(new Uint8Array(PORTAL_HEADER_BYTES + bytes.length), PORTAL.data, seq);
  out.set(bytes, PORTAL_HEADER_BYTES);
  return out;
}

/** FIN or PROBE: a message with no body. */
export function emptyMessage(
  kind: typeof PORTAL.fin | typeof PORTAL.probe,
  seq: number,
): Uint8Array {
  return header(new Uint8Array(PORTAL_HEADER_BYTES), kind, seq);
}

/** FIN. */
export function finMessage(seq: number): Uint8Array {
  return emptyMessage(PORTAL.fin, seq);
}

/** RESET or REFUSED with a reason (at most 200 characters; no secrets). */
export function reasonMessage(
  kind: typeof PORTAL.reset | typeof PORTAL.refused,
  seq: number,
  reason: string,
): Uint8Array {
  const text = utf8.encode(reason.slice(0, 200));
  const out = header(new Uint8Array(PORTAL_HEADER_BYTES + text.length), kind, seq);
  out.set(text, PORTAL_HEADER_BYTES);
  return out;
}

/**
 * Decodes a message. DATA bytes are a view of `bytes`.
 * @throws {MalformedError}
 */
export function decodePortalMessage(bytes: Uint8Array): PortalMessage {
  if (bytes.length < PORTAL_HEADER_BYTES) {
    throw new MalformedError("truncated", "portal message too short");
  }
  if (bytes[0] !== PORTAL_VERSION) {
    throw new MalformedError("unknown_version", `portal message version ${bytes[0]}`);
  }
  const kind = bytes[1];
  const seq = ((bytes[2] << 24) >>> 0) + (bytes[3] << 16) + (bytes[4] << 8) + bytes[5];
  const body = PORTAL_HEADER_BYTES;
  switch (kind) {
    case PORTAL.open:
    case PORTAL.opened:
    case PORTAL.credit:
      if (bytes.length !== body + 4) {
        throw new MalformedError("wrong_shape", "credit message length");
      }
      return {
        kind,
        seq,
        credit: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(body),
      };
    case PORTAL.data:
      return { kind, seq, bytes: bytes.subarray(body) };
    case PORTAL.fin:
    case PORTAL.probe:
      if (bytes.length !== body) {
        throw new MalformedError("wrong_shape", "FIN and PROBE carry nothing");
      }
      return { kind, seq };
    case PORTAL.reset:
    case PORTAL.refused:
      if (bytes.length > body + 800) throw new MalformedError("wrong_shape", "reason too long");
      return { kind, seq, reason: fromUtf8.decode(bytes.subarray(body)) };
    default:
      throw new MalformedError("wrong_shape", `unknown portal message kind ${kind}`);
  }
}
