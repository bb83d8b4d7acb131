/**
 * Requests to the credential authority and its replies, carried inside a
 * secure channel to the authority's API worker (docs/protocol.md §18).
 *
 * ```
 * Request = [1, id: uint, op: text, body: { * text => text }]
 *   op: "enroll" {ticket} or {license} | "credential" {} | "revocations" {} | "subscribe" {}
 * Reply   = [1, id: uint, "ok", result: { * text => bstr / null }]
 *         / [1, id: uint, "error", code: text, message: text]
 * Push    = [1, 0, "revocations", {list: bstr, history: bstr}]     ; to subscribers, id 0
 * ```
 *
 * @module
 */
import { decodeCbor, encodeCbor } from "../encoding/cbor.ts";
import {
  expectArray,
  expectText,
  expectUint,
  expectVersion,
  wrongShape,
} from "../encoding/shape.ts";

/** The authority's API address on its node. */
export const AUTHORITY_API = "authority.api";
/** The authority's secure channel listener address. */
export const AUTHORITY_LISTENER = "authority";
/** Largest request or reply. */
export const MAX_AUTHORITY_MESSAGE = 1024 * 1024;

/** Operations. */
export type AuthorityOp = "enroll" | "credential" | "revocations" | "subscribe";
const OPS = new Set<string>(["enroll", "credential", "revocations", "subscribe"]);

/** A decoded request. */
export interface AuthorityRequest {
  /** The client's number for the request (1, 2, 3, ...), echoed in the reply. */
  readonly id: number;
  /** The operation asked for. */
  readonly op: AuthorityOp;
  /** The operation's arguments, e.g. `ticket` or `license` for enroll; empty for the others. */
  readonly body: ReadonlyMap<string, string>;
}

/** A decoded reply or push. */
export type AuthorityReply =
  | {
    readonly id: number;
    readonly status: "ok";
    readonly result: ReadonlyMap<string, Uint8Array | null>;
  }
  | {
    readonly id: number;
    readonly status: "error";
    readonly code: string;
    readonly message: string;
  }
  | {
    readonly id: 0;
    readonly status: "revocations";
    readonly result: ReadonlyMap<string, Uint8Array | null>;
  };

/** Encodes a request. */
export function encodeRequest(
  id: number,
  op: AuthorityOp,
  body: Record<string, string> = {},
): Uint8Array {
  return encodeCbor([1, id, op, new Map(Object.entries(body))]);
}

/**
 * Decodes a request.
 * @throws {MalformedError | LimitError}
 */
export function decodeRequest(bytes: Uint8Array): AuthorityRequest {
  const fields = expectArray(decodeCbor(bytes, { maxBytes: 64 * 1024, maxDepth: 2 }), "request", 4);
  expectVersion(fields[0], "request", 1);
  const id = expectUint(fields[1], "request id");
  const op = expectText(fields[2], "request op", 32);
  if (!OPS.has(op)) wrongShape("request op", [...OPS].join(" | "));
  if (!(fields[3] instanceof Map)) wrongShape("request body", "a map");
  const body = new Map<string, string>();
  for (const [key, value] of fields[3] as Map<unknown, unknown>) {
    body.set(
      expectText(key, "request body key", 64),
      expectText(value, "request body value", 4096),
    );
  }
  return { id, op: op as AuthorityOp, body };
}

/** Encodes a success reply (or, with id 0 and status "revocations", a push). */
export function encodeResult(
  id: number,
  result: Record<string, Uint8Array | null>,
  status: "ok" | "revocations" = "ok",
): Uint8Array {
  return encodeCbor([1, id, status, new Map(Object.entries(result))]);
}

/** Encodes an error reply. The message must hold no secret. */
export function encodeError(id: number, code: string, message: string): Uint8Array {
  return encodeCbor([1, id, "error", code, message.slice(0, 500)]);
}

/**
 * Decodes a reply or a push.
 * @throws {MalformedError | LimitError}
 */
export function decodeReply(bytes: Uint8Array): AuthorityReply {
  const fields = expectArray(
    decodeCbor(bytes, { maxBytes: MAX_AUTHORITY_MESSAGE, maxDepth: 2 }),
    "reply",
    4,
    5,
  );
  expectVersion(fields[0], "reply", 1);
  const id = expectUint(fields[1], "reply id");
  const status = expectText(fields[2], "reply status", 16);
  if (status === "error") {
    if (fields.length !== 5) wrongShape("error reply", "5 items");
    return {
      id,
      status,
      code: expectText(fields[3], "error code", 64),
      message: expectText(fields[4], "error message", 500),
    };
  }
  if ((status !== "ok" && status !== "revocations") || fields.length !== 4) {
    wrongShape("reply status", "ok | error | revocations");
  }
  if (!(fields[3] instanceof Map)) wrongShape("reply result", "a map");
  const result = new Map<string, Uint8Array | null>();
  for (const [key, value] of fields[3] as Map<unknown, unknown>) {
    if (value !== null && !(value instanceof Uint8Array)) {
      wrongShape("reply value", "bytes or null");
    }
    result.set(expectText(key, "reply key", 64), value === null ? null : new Uint8Array(value));
  }
  if (status === "revocations") {
    if (id !== 0) wrongShape("push id", "0");
    return { id: 0, status, result };
  }
  return { id, status: "ok", result };
}
