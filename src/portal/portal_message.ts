/**
 * Portal session messages (docs/design.md §6), carried inside a secure channel
 * between an inlet's session worker and an outlet (or its session worker).
 *
 * ```
 * message = version: u8 (1) | kind: u8 | body
 *   OPEN     0x01  credit: u32      inlet → outlet: open a session, granting credit
 *   OPENED   0x02  credit: u32      outlet → inlet: backend connected, granting credit
 *   DATA     0x03  bytes            either way; consumes credit equal to its length
 *   CREDIT   0x04  credit: u32      either way; more credit, after data was written out
 *   FIN      0x05                   either way; the sender's side reached end of stream
 *   RESET    0x06  reason: UTF-8    either way; the session is over, abruptly
 *   REFUSED  0x07  reason: UTF-8    outlet → inlet: policy denial or backend down
 * ```
 *
 * The header is two bytes: DATA is built with the payload in one
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
} as const;

/** Portal message version. */
export const PORTAL_VERSION = 1;

/** A decoded message. */
export type PortalMessage =
  | { kind: typeof PORTAL.open | typeof PORTAL.opened | typeof PORTAL.credit; credit: number }
  | { kind: typeof PORTAL.data; bytes: Uint8Array }
  | { kind: typeof PORTAL.fin }
  | { kind: typeof PORTAL.reset | typeof PORTAL.refused; reason: string };

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** A message with a u32 credit. */
export function creditMessage(
  kind: typeof PORTAL.open | typeof PORTAL.opened | typeof PORTAL.credit,
  credit: number,
): Uint8Array {
  const out = new Uint8Array(6);
  out[0] = PORTAL_VERSION;
  out[1] = kind;
  new DataView(out.buffer).setUint32(2, credit);
  return out;
}

/** A DATA message holding a copy of `bytes`. */
export function dataMessage(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + bytes.length);
  out[0] = PORTAL_VERSION;
  out[1] = PORTAL.data;
  out.set(bytes, 2);
  return out;
}

/** FIN. */
export function finMessage(): Uint8Array {
  return Uint8Array.of(PORTAL_VERSION, PORTAL.fin);
}

/** RESET or REFUSED with a reason (at most 200 characters; no secrets). */
export function reasonMessage(
  kind: typeof PORTAL.reset | typeof PORTAL.refused,
  reason: string,
): Uint8Array {
  const text = utf8.encode(reason.slice(0, 200));
  const out = new Uint8Array(2 + text.length);
  out[0] = PORTAL_VERSION;
  out[1] = kind;
  out.set(text, 2);
  return out;
}

/**
 * Decodes a message. DATA bytes are a view of `bytes`.
 * @throws {MalformedError}
 */
export function decodePortalMessage(bytes: Uint8Array): PortalMessage {
  if (bytes.length < 2) throw new MalformedError("truncated", "portal message too short");
  if (bytes[0] !== PORTAL_VERSION) {
    throw new MalformedError("unknown_version", `portal message version ${bytes[0]}`);
  }
  const kind = bytes[1];
  switch (kind) {
    case PORTAL.open:
    case PORTAL.opened:
    case PORTAL.credit:
      if (bytes.length !== 6) throw new MalformedError("wrong_shape", "credit message length");
      return {
        kind,
        credit: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(2),
      };
    case PORTAL.data:
      return { kind, bytes: bytes.subarray(2) };
    case PORTAL.fin:
      if (bytes.length !== 2) throw new MalformedError("wrong_shape", "FIN carries nothing");
      return { kind };
    case PORTAL.reset:
    case PORTAL.refused:
      if (bytes.length > 2 + 800) throw new MalformedError("wrong_shape", "reason too long");
      return { kind, reason: fromUtf8.decode(bytes.subarray(2)) };
    default:
      throw new MalformedError("wrong_shape", `unknown portal message kind ${kind}`);
  }
}
