/**
 * A free TCP port on the loopback interface.
 *
 * @module
 */

/**
 * A port on 127.0.0.1 that is free now (bound and released: use it right
 * away). Needs net permission for 127.0.0.1.
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}
