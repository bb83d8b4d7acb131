/**
 * TCP portals: inlets, outlets, and their session messages.
 *
 * @module
 */
export {
  createInlet,
  createOutlet,
  DEFAULT_PROBE_MS,
  DEFAULT_WINDOW,
  type Inlet,
  type InletOptions,
  type InletTarget,
  MAX_CHUNK,
  type Outlet,
  type OutletOptions,
  SessionSweep,
} from "./portal.ts";
export {
  creditMessage,
  dataMessage,
  decodePortalMessage,
  emptyMessage,
  finMessage,
  PORTAL,
  PORTAL_HEADER_BYTES,
  PORTAL_VERSION,
  type PortalMessage,
  reasonMessage,
} from "./portal_message.ts";
export type { ByteReader } from "./byte_reader.ts";
export { type HeaderInjectorOptions, injectHeader } from "./http_header_injector.ts";
