/**
 * Transport: framed connections over TCP and TLS (docs/design.md §5). Each
 * direction of a connection opens with a version byte, then carries
 * length-prefixed frames up to a hard maximum; a peer that breaks the
 * framing loses that connection only.
 *
 * @module
 */
export {
  type CloseInfo,
  ConnectionCloseEvent,
  type FramedConnection,
  IO_BUFFER_BYTES,
  SocketConnection,
  type SocketConnectionOptions,
} from "./connection.ts";
export {
  checkMaxFrameBytes,
  encodeFrameHeader,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  type FrameDecoderOptions,
  FrameError,
  type FrameErrorCode,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
} from "./frame_decoder.ts";
export {
  connectTcp,
  type ConnectTcpOptions,
  type FramedListener,
  HANDSHAKE_TIMEOUT_MS,
  listenTcp,
  type ListenTcpOptions,
} from "./tcp.ts";
export {
  type AttachedConnection,
  TcpTransport,
  type TcpTransportOptions,
} from "./tcp_transport.ts";
export { TransportError, type TransportErrorCode } from "../errors.ts";
