/**
 * Transport: framed connections over TCP and TLS (docs/design.md §5). Each
 * direction of a connection opens with a version byte, then carries
 * length-prefixed frames up to a hard maximum; a peer that breaks the
 * framing loses that connection only.
 *
 * What a peer that has not authenticated can make a service hold is
 * bounded: the decoder's memory grows with the bytes a peer sends, not with
 * the lengths its headers claim (`frame_decoder.ts`); a connection can
 * receive frames under a lower limit until its peer is authenticated
 * (`maxReceiveFrameBytes`, {@link FramedConnection.setMaxReceiveFrameBytes});
 * and a listener caps connections in all (`maxConnections`) and per source
 * address (`maxConnectionsPerSource`, an IPv6 /64 counting as one source).
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
  MIN_PARTIAL_BYTES,
  PROTOCOL_VERSION,
} from "./frame_decoder.ts";
export {
  ConnectionLimitError,
  connectionSource,
  connectTcp,
  type ConnectTcpOptions,
  type FramedListener,
  HANDSHAKE_TIMEOUT_MS,
  listenTcp,
  type ListenTcpOptions,
  type RefusedConnections,
} from "./tcp.ts";
export {
  type AttachedConnection,
  TcpTransport,
  type TcpTransportOptions,
} from "./tcp_transport.ts";
export { TransportError, type TransportErrorCode } from "../errors.ts";
