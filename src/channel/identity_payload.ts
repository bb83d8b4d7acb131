/**
 * The payload of Noise messages 2 and 3 (docs/design.md §4): who the sender is.
 *
 * ```
 * IdentityPayload = [1, change_history: bstr, attestation: bstr, credentials: [* bstr]]
 * ```
 *
 * Each field is the exact encoded structure (docs/protocol.md), verified by
 * its own decoder; this layer only carries them.
 *
 * @module
 */
import { decodeCbor, encodeCbor } from "../encoding/cbor.ts";
import { expectArray, expectBytes, expectVersion, wrongShape } from "../encoding/shape.ts";

/** Largest payload: it must fit in one Noise message with its keys and tags. */
export const MAX_IDENTITY_PAYLOAD = 60 * 1024;
/** Most credentials one peer presents. */
export const MAX_PRESENTED_CREDENTIALS = 8;

/** The decoded payload. */
export interface IdentityPayload {
  /** The sender's encoded change history. */
  readonly history: Uint8Array;
  /** The encoded attestation of the sender's Noise static key. */
  readonly attestation: Uint8Array;
  /** Encoded credentials about the sender, at most {@link MAX_PRESENTED_CREDENTIALS}. */
  readonly credentials: readonly Uint8Array[];
}

/**
 * Encodes a payload.
 * @throws {RangeError} when it exceeds {@link MAX_IDENTITY_PAYLOAD} or
 *   holds too many credentials: refused here rather than by the peer.
 */
export function encodeIdentityPayload(payload: IdentityPayload): Uint8Array {
  if (payload.credentials.length > MAX_PRESENTED_CREDENTIALS) {
    throw new RangeError(`at most ${MAX_PRESENTED_CREDENTIALS} credentials can be presented`);
  }
  const encoded = encodeCbor([1, payload.history, payload.attestation, [...payload.credentials]]);
  if (encoded.length > MAX_IDENTITY_PAYLOAD) {
    throw new RangeError(
      `identity payload of ${encoded.length} bytes exceeds ${MAX_IDENTITY_PAYLOAD}`,
    );
  }
  return encoded;
}

/**
 * Decodes a payload (shape only).
 * @throws {MalformedError | LimitError}
 */
export function decodeIdentityPayload(bytes: Uint8Array): IdentityPayload {
  const fields = expectArray(
    decodeCbor(bytes, { maxBytes: MAX_IDENTITY_PAYLOAD, maxDepth: 2 }),
    "identity payload",
    4,
  );
  expectVersion(fields[0], "identity payload", 1);
  const credentials = expectArray(fields[3], "presented credentials");
  if (credentials.length > MAX_PRESENTED_CREDENTIALS) {
    wrongShape("presented credentials", `at most ${MAX_PRESENTED_CREDENTIALS}`);
  }
  return {
    history: expectBytes(fields[1], "change history"),
    attestation: expectBytes(fields[2], "attestation"),
    credentials: credentials.map((c, i) => expectBytes(c, `credential ${i}`)),
  };
}
