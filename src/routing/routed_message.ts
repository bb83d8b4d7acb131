/**
 * Routed messages on the wire (docs/design.md §5): source routing as Ockam does
 * it. A message carries the addresses still to visit (onward) and the way
 * back (return); a node delivers it to the worker at the first onward
 * address.
 *
 * ```
 * message = version: u8 (1)
 *         | onward_count: u8 | onward_count × (length: u8 | address bytes)
 *         | return_count: u8 | return_count × (length: u8 | address bytes)
 *         | payload: the rest
 * ```
 *
 * A binary header, not CBOR: a relay reads only this header (a few dozen
 * bytes) and never touches the payload, which for secure channels is
 * ciphertext.
 *
 * @module
 */
import type { SecureChannelInfo } from "../channel/channel_info.ts";
import { MalformedError } from "../encoding/errors.ts";

/** A worker's address: 1 to 255 printable ASCII characters. */
export type Address = string;
/** A route: addresses in visiting order. */
export type Route = readonly Address[];

/** Version byte of the message layout. */
export const MESSAGE_VERSION = 1;
/** Most addresses in one route. */
export const MAX_ROUTE_LENGTH = 16;

const ADDRESS = /^[\x21-\x7e]{1,255}$/;

/** True when `text` can be an address. */
export function isAddress(text: string): boolean {
  return ADDRESS.test(text);
}

/**
 * The memory a message's payload lies in, offered to the worker the
 * message is delivered to (and to no one else: a worker that passes a
 * message on builds a new one, without this). A secure channel offers the
 * pooled buffer it opened the record into (src/channel/plaintext_pool.ts).
 *
 * Left alone, the memory is the worker's for as long as it likes, as for
 * any message, and never used again for anything else. A worker that
 * {@link take}s it promises to {@link release} it once nothing of its own
 * refers to the payload any more (nor to anything around it in the same
 * memory): from then on the memory is used for later messages. Take it
 * only while nothing but the worker has seen the payload, i.e. while
 * handling the message, and only if the worker, not a callee it passed
 * the bytes to, decides when they are no longer needed.
 */
export interface PayloadLease {
  /** True for the first caller, who then owns the memory until it calls {@link release}. */
  take(): boolean;
  /** Gives the memory back: after a successful {@link take}, once; otherwise does nothing. */
  release(): void;
}

/** Information a node attaches to a message it delivers locally (never on the wire). */
export interface LocalInfo {
  /** Set by a secure channel on messages it decrypted. */
  readonly secureChannel?: SecureChannelInfo;
  /** Set by a transport on messages that arrived over a connection. */
  readonly connection?: { readonly id: string; readonly remote: string };
  /** Set when the payload's memory may be taken over and given back ({@link PayloadLease}). */
  readonly lease?: PayloadLease;
}

/** A message as workers see it. */
export interface RoutedMessage {
  /** The addresses still to visit; the first is the worker it is delivered to. */
  readonly onward: Route;
  /** The way back, where a reply is sent; transports push onto it hop by hop. */
  readonly return: Route;
  /** The application bytes, opaque to routing; may be a view into a transport's buffer. */
  readonly payload: Uint8Array;
  /** What the delivering node knows about the message; never on the wire. */
  readonly local?: LocalInfo;
}

const ascii = new TextEncoder();

function routeBytes(route: Route, what: string): number {
  if (route.length > MAX_ROUTE_LENGTH) {
    throw new RangeError(`${what} route longer than ${MAX_ROUTE_LENGTH} addresses`);
  }
  let size = 1;
  for (const address of route) {
    if (!ADDRESS.test(address)) throw new TypeError(`${what} route holds an invalid address`);
    size += 1 + address.length;
  }
  return size;
}

function writeRoute(out: Uint8Array, at: number, route: Route): number {
  out[at++] = route.length;
  for (const address of route) {
    out[at++] = address.length;
    ascii.encodeInto(address, out.subarray(at, at + address.length));
    at += address.length;
  }
  return at;
}

/**
 * Encodes a message for the wire, after `headroom` free bytes that the
 * caller fills with its own header (so the whole is one allocation).
 *
 * @example
 * ```ts
 * import { decodeRoutedMessage, encodeRoutedMessage } from "./routed_message.ts";
 *
 * const bytes = encodeRoutedMessage(
 *   ["forward.gw-cust-001", "api"],
 *   ["scd.00112233aabbccdd"],
 *   new TextEncoder().encode("hello"),
 * );
 * bytes[0]; // 1 (MESSAGE_VERSION)
 * const message = decodeRoutedMessage(bytes);
 * message.onward; // ["forward.gw-cust-001", "api"]
 * message.return; // ["scd.00112233aabbccdd"]
 * new TextDecoder().decode(message.payload); // "hello" (a view into `bytes`)
 * ```
 *
 * @throws {RangeError} for a route of more than {@link MAX_ROUTE_LENGTH} addresses.
 * @throws {TypeError} for an invalid address.
 */
export function encodeRoutedMessage(
  onward: Route,
  returnRoute: Route,
  payload: Uint8Array,
  headroom = 0,
): Uint8Array {
  return encodeRoutedHeader(onward, returnRoute, headroom, payload);
}

/**
 * The header of a routed message alone (version and both routes), after
 * `headroom` free bytes: for a caller that writes the payload beside it
 * rather than copying it behind (a record sealed from both parts, a frame
 * written from both). With `payload`, the whole message, as
 * {@link encodeRoutedMessage}.
 * @throws {RangeError} for a route of more than {@link MAX_ROUTE_LENGTH} addresses.
 * @throws {TypeError} for an invalid address.
 */
export function encodeRoutedHeader(
  onward: Route,
  returnRoute: Route,
  headroom = 0,
  payload?: Uint8Array,
): Uint8Array {
  const header = 1 + routeBytes(onward, "onward") + routeBytes(returnRoute, "return");
  const out = new Uint8Array(headroom + header + (payload?.length ?? 0));
  out[headroom] = MESSAGE_VERSION;
  let at = writeRoute(out, headroom + 1, onward);
  at = writeRoute(out, at, returnRoute);
  if (payload !== undefined) out.set(payload, at);
  return out;
}

function readRoute(bytes: Uint8Array, at: number, what: string): [Address[], number] {
  if (at >= bytes.length) throw new MalformedError("truncated", `${what} route missing`);
  const count = bytes[at++];
  if (count > MAX_ROUTE_LENGTH) {
    throw new MalformedError("wrong_shape", `${what} route longer than ${MAX_ROUTE_LENGTH}`);
  }
  const route: Address[] = [];
  for (let i = 0; i < count; i++) {
    if (at >= bytes.length) throw new MalformedError("truncated", `${what} route truncated`);
    const length = bytes[at++];
    if (length === 0) throw new MalformedError("wrong_shape", `${what} address is empty`);
    if (at + length > bytes.length) {
      throw new MalformedError("truncated", `${what} address truncated`);
    }
    let address = "";
    for (let j = at; j < at + length; j++) {
      const c = bytes[j];
      if (c < 0x21 || c > 0x7e) {
        throw new MalformedError("wrong_shape", `${what} address is not printable ASCII`);
      }
      address += String.fromCharCode(c);
    }
    route.push(address);
    at += length;
  }
  return [route, at];
}

/**
 * Decodes a message from the wire. The payload is a view into `bytes`
 * (no copy): it is valid as long as `bytes` is. Example: see
 * {@link encodeRoutedMessage}.
 * @throws {MalformedError}
 */
export function decodeRoutedMessage(bytes: Uint8Array): RoutedMessage {
  if (bytes.length === 0) throw new MalformedError("truncated", "empty message");
  if (bytes[0] !== MESSAGE_VERSION) {
    throw new MalformedError("unknown_version", `message version ${bytes[0]} is not supported`);
  }
  const [onward, afterOnward] = readRoute(bytes, 1, "onward");
  const [returnRoute, afterReturn] = readRoute(bytes, afterOnward, "return");
  return { onward, return: returnRoute, payload: bytes.subarray(afterReturn) };
}

/**
 * The first onward address of an encoded message, without decoding the
 * rest. Returns null for bytes that are not a message of this version.
 */
export function firstOnwardAddress(bytes: Uint8Array): string | null {
  if (bytes.length < 3 || bytes[0] !== MESSAGE_VERSION || bytes[1] === 0) return null;
  const length = bytes[2];
  if (length === 0 || 3 + length > bytes.length) return null;
  let address = "";
  for (let i = 3; i < 3 + length; i++) {
    const c = bytes[i];
    if (c < 0x21 || c > 0x7e) return null;
    address += String.fromCharCode(c);
  }
  return address;
}

/**
 * What a forwarding hop does to a message, on its bytes: drops the first
 * onward address and pushes `via` onto the return route. The payload is
 * copied once, never parsed (a relay forwards ciphertext it cannot read).
 * Returns null when the header is malformed or a route would grow too long.
 */
export function forwardRoutedMessage(bytes: Uint8Array, via: Address): Uint8Array | null {
  const split = forwardRoutedHeader(bytes, via);
  if (split === null) return null;
  const out = new Uint8Array(split.header.length + split.payload.length);
  out.set(split.header);
  out.set(split.payload, split.header.length);
  return out;
}

/**
 * {@link forwardRoutedMessage} in two parts: the rewritten header, and the
 * payload as a view into `bytes` (not copied), for a hop that writes both
 * to the next connection while `bytes` stays valid.
 */
export function forwardRoutedHeader(
  bytes: Uint8Array,
  via: Address,
): { header: Uint8Array; payload: Uint8Array } | null {
  if (bytes.length < 3 || bytes[0] !== MESSAGE_VERSION) return null;
  const onwardCount = bytes[1];
  if (onwardCount === 0 || onwardCount > MAX_ROUTE_LENGTH) return null;
  // Walk both routes by their lengths, checking every address is printable
  // ASCII: a hop must not pass on a header its next hop would refuse (that
  // would let one sender make the relay's peer drop its connection).
  const skip = (from: number): number => {
    if (from >= bytes.length) return -1;
    const length = bytes[from];
    if (length === 0 || from + 1 + length > bytes.length) return -1;
    for (let i = from + 1; i <= from + length; i++) {
      if (bytes[i] < 0x21 || bytes[i] > 0x7e) return -1;
    }
    return from + 1 + length;
  };
  let at = 2;
  const firstEnd = skip(at);
  for (let i = 0; i < onwardCount; i++) {
    at = skip(at);
    if (at < 0) return null;
  }
  if (at >= bytes.length) return null;
  const returnCount = bytes[at];
  if (returnCount >= MAX_ROUTE_LENGTH) return null;
  const returnStart = at + 1;
  let end = returnStart;
  for (let i = 0; i < returnCount; i++) {
    end = skip(end);
    if (end < 0) return null;
  }
  const viaLength = via.length;
  const header = new Uint8Array(2 + (at - firstEnd) + 2 + viaLength + (end - returnStart));
  header[0] = MESSAGE_VERSION;
  header[1] = onwardCount - 1;
  header.set(bytes.subarray(firstEnd, at), 2);
  let w = 2 + (at - firstEnd);
  header[w++] = returnCount + 1;
  header[w++] = viaLength;
  ascii.encodeInto(via, header.subarray(w, w + viaLength));
  w += viaLength;
  header.set(bytes.subarray(returnStart, end), w);
  return { header, payload: bytes.subarray(end) };
}
