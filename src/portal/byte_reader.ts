/**
 * The reading half of a byte stream, as portal sessions read their
 * sockets: a `Deno.Conn` is one, and so is a reader wrapped around one
 * (the HTTP inlet's header injector).
 *
 * @module
 */

/** The reading half of a socket: `Deno.Conn` is one. */
export interface ByteReader {
  /**
   * Reads at most `p.length` bytes into `p`; resolves to how many, or to
   * null at the end of the stream.
   */
  read(p: Uint8Array): Promise<number | null>;
}
