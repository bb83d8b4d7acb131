/**
 * Encoding: strict CBOR, shape checks, hex and signature domains.
 *
 * @module
 */
export { checkStrictCbor, decodeCbor, type DecodeOptions, encodeCbor } from "./cbor.ts";
export { DOMAIN, type DomainLabel, signedMessage } from "./domain.ts";
export { type LimitCode, LimitError, type MalformedCode, MalformedError } from "./errors.ts";
export { fromHex, toHex } from "./hex.ts";
export {
  expectArray,
  expectBytes,
  expectText,
  expectUint,
  expectVersion,
  wrongShape,
} from "./shape.ts";
