/**
 * Configuration: addresses as configurations write them.
 *
 * @module
 */
export { formatHostPort, type HostPort, parseHostPort } from "./host_port.ts";
