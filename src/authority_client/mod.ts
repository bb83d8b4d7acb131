/**
 * The credential authority's protocol and client.
 *
 * @module
 */
export {
  AuthorityClient,
  type AuthorityClientOptions,
  type RevocationListener,
} from "./authority_client.ts";
export {
  AUTHORITY_API,
  AUTHORITY_LISTENER,
  type AuthorityOp,
  type AuthorityReply,
  type AuthorityRequest,
  decodeReply,
  decodeRequest,
  encodeError,
  encodeRequest,
  encodeResult,
} from "./protocol.ts";
