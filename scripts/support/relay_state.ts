/**
 * A relay's state directory made by hand, for tests and benchmarks that
 * run relays under an authority of their own (a software key): the
 * relay's identity (`relay.key`, `relay.history`) and a credential from
 * that authority with `role` relay and its addresses (`relay.credential`),
 * as the relay would keep them after enrolling with a ticket.
 *
 * @module
 */
import { issueCredential } from "../../src/credential/credential.ts";
import type { Identity } from "../../src/identity/identity.ts";
import { loadOrCreateIdentity } from "../../src/identity/identity_store.ts";

/**
 * Provisions `stateDir` for a relay reachable at `addresses` (`host:port`,
 * as members dial it), with a credential from `authority`.
 */
export async function provisionRelay(
  stateDir: string,
  authority: Identity,
  addresses: string[],
  options: { ttlSeconds?: number } = {},
): Promise<Identity> {
  const identity = await loadOrCreateIdentity(stateDir, "relay");
  const credential = await issueCredential(authority, {
    subject: identity.identifier,
    subjectKey: identity.primaryKey,
    attributes: { role: "relay", relay_addresses: addresses },
    ttlSeconds: options.ttlSeconds ?? 3600,
  });
  await Deno.writeFile(`${stateDir}/relay.credential`, credential.encoded, { mode: 0o600 });
  return identity;
}
