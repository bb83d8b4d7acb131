/**
 * Routing: nodes, workers, routed messages, and the TCP transport glue.
 *
 * @module
 */
export { type MessageHandler, Node, type NodeOptions } from "./node.ts";
export {
  type Address,
  decodeRoutedMessage,
  encodeRoutedMessage,
  isAddress,
  type LocalInfo,
  MAX_ROUTE_LENGTH,
  MESSAGE_VERSION,
  type Route,
  type RoutedMessage,
  type SecureChannelInfo,
} from "./routed_message.ts";
export {
  type AttachedConnection,
  TcpTransport,
  type TcpTransportOptions,
} from "./tcp_transport.ts";
