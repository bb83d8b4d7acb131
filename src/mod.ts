/**
 * The Nexus core library: identities, credentials and their encoding.
 * Later layers (channel, routing, transport, portal, policy) add their own
 * `mod.ts` beside these.
 *
 * @module
 */
export * from "./errors.ts";
export * from "./encoding/mod.ts";
export * from "./crypto/mod.ts";
export * from "./identity/mod.ts";
export * from "./credential/mod.ts";
export * from "./channel/mod.ts";
export * from "./routing/mod.ts";
export * from "./policy/mod.ts";
export * from "./portal/mod.ts";
export * from "./ops/mod.ts";
export * from "./config/mod.ts";
export * from "./member/mod.ts";
export * from "./cli/mod.ts";
export {
  createLogger,
  type LogFields,
  type Logger,
  type LoggerOptions,
  type LogLevel,
  silentLogger,
} from "./log.ts";
export * from "./authority_client/mod.ts";
export * from "./relay_client/mod.ts";
// The transport's CloseInfo differs from the channel's: import it from
// "./transport/mod.ts" directly.
export {
  connectTcp,
  type FramedConnection,
  FrameDecoder,
  type FramedListener,
  FrameError,
  listenTcp,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
} from "./transport/mod.ts";
