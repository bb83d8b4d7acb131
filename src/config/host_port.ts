/**
 * Network addresses as configurations write them: `host:port`, with IPv6
 * hosts in brackets (`[::1]:4000`).
 *
 * @module
 */

/** A host and a port, as `Deno.connect` and `Deno.listen` take them. */
export interface HostPort {
  /** A DNS name or an IP address (IPv6 without brackets). */
  readonly hostname: string;
  /** 0 to 65535 (0: any free port, when listening). */
  readonly port: number;
}

/**
 * Parses "host:port" (IPv6 in brackets).
 *
 * @example
 * ```ts
 * import { parseHostPort } from "./host_port.ts";
 * parseHostPort("[::1]:4000", "relay"); // { hostname: "::1", port: 4000 }
 * ```
 * @throws {TypeError} naming `what` when the text is not HOST:PORT.
 */
export function parseHostPort(text: string, what: string): { hostname: string; port: number } {
  const match = text.match(/^\[?([^\]]*?)\]?:(\d{1,5})$/);
  if (!match || Number(match[2]) > 65535) {
    throw new TypeError(`${what}: expected HOST:PORT, got ${text}`);
  }
  return { hostname: match[1], port: Number(match[2]) };
}

/** `host:port`, IPv6 hosts in brackets: the inverse of {@link parseHostPort}. */
export function formatHostPort(address: HostPort): string {
  return address.hostname.includes(":")
    ? `[${address.hostname}]:${address.port}`
    : `${address.hostname}:${address.port}`;
}
