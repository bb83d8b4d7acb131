/**
 * Hostile clients for the flood tests (tests/flood_test.ts): many raw TCP
 * connections from a chosen loopback source address, each sending a
 * fixed opening (nothing, half a frame, an oversize frame header) and
 * then nothing more.
 *
 * Connections come from `source` (e.g. 127.0.0.2) so that a target's
 * per-source limits apply to the flood and not to the honest members on
 * 127.0.0.1. `Deno.connect` cannot choose its source address, so this
 * uses `node:net`'s `localAddress`.
 */
import net from "node:net";
import {
  encodeFrameHeader,
  FRAME_HEADER_BYTES,
  PROTOCOL_VERSION,
} from "../../src/transport/frame_decoder.ts";

/** What a flood's connections send once connected. */
export type Opening = "nothing" | "half_frame" | "oversize_header";

/** A flood of connections. */
export interface Flood {
  /** Connections that were established. */
  readonly opened: number;
  /** Connections that failed to connect or were reset at once (refused on accept). */
  readonly failed: number;
  /** How many the target has closed so far. */
  closedByPeer(): number;
  /** Closes every connection still open. */
  close(): void;
}

/**
 * The bytes of an opening: the stream's version byte, then (for the two
 * frame openings) a frame header and what follows it.
 */
export function openingBytes(opening: Opening): Uint8Array {
  switch (opening) {
    case "nothing":
      return new Uint8Array(0);
    case "half_frame": {
      // A frame of 1,000 bytes of which 10 arrive.
      const bytes = new Uint8Array(1 + FRAME_HEADER_BYTES + 10);
      bytes[0] = PROTOCOL_VERSION;
      encodeFrameHeader(1000, bytes, 1);
      return bytes;
    }
    case "oversize_header": {
      // The header of a 256 KiB frame, alone.
      const bytes = new Uint8Array(1 + FRAME_HEADER_BYTES);
      bytes[0] = PROTOCOL_VERSION;
      return encodeFrameHeader(256 * 1024, bytes, 1);
    }
  }
}

/**
 * Opens `count` connections to 127.0.0.1:`port` from `source`, `batch`
 * at a time, each sending `opening`; resolves when all have connected or
 * failed.
 */
export async function flood(
  port: number,
  count: number,
  options: { source: string; opening: Opening; batch?: number },
): Promise<Flood> {
  const sockets: net.Socket[] = [];
  const ours = new WeakSet<net.Socket>();
  let opened = 0;
  let failed = 0;
  let closedByPeer = 0;
  const bytes = openingBytes(options.opening);
  const one = () =>
    new Promise<void>((resolve) => {
      const socket = net.connect({ host: "127.0.0.1", port, localAddress: options.source });
      let connected = false;
      socket.on("connect", () => {
        connected = true;
        opened++;
        sockets.push(socket);
        if (bytes.length > 0) socket.write(bytes);
        resolve();
      });
      // Whatever the target sends is read and dropped, so that its closing
      // (a FIN or a reset) is seen at once.
      socket.on("data", () => {});
      socket.on("error", () => {});
      socket.on("end", () => socket.end());
      socket.on("close", () => {
        if (!connected) {
          failed++;
          resolve();
        } else if (!ours.has(socket)) closedByPeer++;
      });
    });
  const batch = options.batch ?? 100;
  for (let i = 0; i < count; i += batch) {
    await Promise.all(Array.from({ length: Math.min(batch, count - i) }, one));
  }
  return {
    opened,
    failed,
    closedByPeer: () => closedByPeer,
    close() {
      for (const socket of sockets) {
        ours.add(socket);
        socket.destroy();
      }
    },
  };
}
