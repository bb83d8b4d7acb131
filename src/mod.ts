/**
 * The Nexus core library, every layer's public surface in one module:
 * encoding, crypto, identities, credentials, secure channels, routing,
 * transport, portals, policies, operations, the authority and relay
 * clients, the member runtime, configuration and CLI helpers, logs. Each
 * folder's `mod.ts` is the same surface for that layer alone.
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
// The transport's CloseInfo differs from the channel's: it is exported here
// as TransportCloseInfo.
export {
  type AttachedConnection,
  checkMaxFrameBytes,
  type CloseInfo as TransportCloseInfo,
  ConnectionCloseEvent,
  ConnectionLimitError,
  connectionSource,
  connectTcp,
  type ConnectTcpOptions,
  encodeFrameHeader,
  FRAME_HEADER_BYTES,
  type FramedConnection,
  FrameDecoder,
  type FrameDecoderOptions,
  type FramedListener,
  FrameError,
  type FrameErrorCode,
  HANDSHAKE_TIMEOUT_MS,
  IO_BUFFER_BYTES,
  listenTcp,
  type ListenTcpOptions,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  type RefusedConnections,
  SocketConnection,
  type SocketConnectionOptions,
  TcpTransport,
  type TcpTransportOptions,
} from "./transport/mod.ts";
