/**
 * Keeps a process's channel attestation valid (docs/design.md §2, §4): at
 * two thirds of its lifetime a fresh static key and attestation replace
 * the current pair (`RenewableChannelIdentity.renew`), so a process that
 * runs for months keeps opening and accepting handshakes. A failed renewal
 * (an HSM that refuses to sign, for the authority) is retried with the
 * shared backoff while the current attestation is still valid.
 *
 * The member runtime runs this for its members; the authority, which is
 * no member, runs it for itself.
 *
 * @module
 */
import type { RenewableChannelIdentity } from "../channel/channel_identity.ts";
import { type Logger, silentLogger } from "../log.ts";
import { backoffMs, sleep } from "./backoff.ts";

/** Milliseconds until two thirds of [createdAt, expiresAt] (Unix seconds) have passed. */
export function untilTwoThirds(createdAt: number, expiresAt: number): number {
  const lifetimeMs = (expiresAt - createdAt) * 1000;
  return lifetimeMs * 2 / 3 - (Date.now() - createdAt * 1000);
}

/**
 * Renews `local`'s attestation at two thirds of each lifetime until
 * `signal` aborts. Resolves when it does; never rejects.
 *
 * @example
 * ```ts ignore
 * const stop = new AbortController();
 * const renewing = renewAttestations(local, { signal: stop.signal, logger });
 * // … at shutdown:
 * stop.abort();
 * await renewing;
 * ```
 */
export async function renewAttestations(
  local: RenewableChannelIdentity,
  options: { signal: AbortSignal; logger?: Logger },
): Promise<void> {
  const { signal } = options;
  const logger = options.logger ?? silentLogger;
  for (let attempt = 0; !signal.aborted;) {
    const wait = untilTwoThirds(local.attestationCreatedAt, local.attestationExpiresAt);
    await sleep(Math.max(0, wait), { signal });
    if (signal.aborted) return;
    try {
      await local.renew();
      attempt = 0;
      logger.info("channel attestation renewed", { expires_at: local.attestationExpiresAt });
    } catch (error) {
      logger.error("channel attestation renewal failed; retrying", {
        error: error instanceof Error ? error.message : String(error),
      });
      await sleep(backoffMs(attempt++), { signal });
    }
  }
}
