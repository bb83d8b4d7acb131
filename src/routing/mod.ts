/**
 * Routing: nodes, workers and routed messages (source routing, no I/O).
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
  type PayloadLease,
  type Route,
  type RoutedMessage,
} from "./routed_message.ts";
