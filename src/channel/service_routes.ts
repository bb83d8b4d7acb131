/**
 * The routes of the end-to-end mode (docs/architecture.md §5.10,
 * docs/protocol.md §22): an edge's **inner** channel to a service agent,
 * nested in its **outer** channel to the gateway, which the gateway hands
 * to its own outer channel to the agent. The gateway holds no key of the
 * inner channel; it routes records it cannot open.
 *
 * ```
 * edge → agent   at the edge:    [outer, "service.<name>", target]
 *                at the gateway: worker service.<name>, onward [.., target]
 *                                 → [path to agent, target], return [svcret.<name>, outer, scd.<edge>]
 *                target:         "inner" (message 1) or scd.<agent> (message 3, records)
 * agent → edge   at the agent:   [path, "svcret.<name>", outer, scd.<edge>]
 *                at the gateway: worker svcret.<name>
 *                                 → [outer, scd.<edge>], return [service.<name>, scd.<agent>]
 * ```
 *
 * Every inner message a gateway forwards therefore has exactly one
 * address left at the far end, a channel listener's (`inner`, for message
 * 1 only) or a channel's decryptor (`scd.` + hex): the gateway can check
 * that shape cheaply and a hostile party at either end cannot make it
 * deliver anywhere else on its node or the other's.
 *
 * @module
 */

/** Where a service agent listens for inner channels (only through a gateway's channel). */
export const INNER_LISTENER = "inner";

/** The prefix of a channel's decryptor address (handshake.ts registers `scd.<hex>`). */
export const DECRYPTOR_PREFIX = "scd.";

/** The gateway's worker that takes an edge's inner messages for `service`. */
export function serviceAddress(service: string): string {
  return `service.${service}`;
}

/** The gateway's worker that takes `service`'s agent's inner messages back to edges. */
export function serviceReturnAddress(service: string): string {
  return `svcret.${service}`;
}
