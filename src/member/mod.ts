/**
 * The member runtime: what every process that belongs to a deployment
 * does to stay a member in good standing (a valid credential, the
 * revocation list followed, its channel attestation renewed), and the one
 * backoff every reconnecting loop uses.
 *
 * @module
 */
export {
  type Enrollment,
  type Member,
  type MemberOptions,
  type MemberState,
  type MemberStatus,
  startMember,
} from "./member.ts";
export { renewAttestations, untilTwoThirds } from "./attestation_renewal.ts";
export { BACKOFF_BASE_MS, BACKOFF_MAX_MS, backoffMs, sleep, whenAborted } from "./backoff.ts";
export { PING_INTERVAL_MS, RelayPresence, type RelayPresenceOptions } from "./relay_presence.ts";
export { AliasPath, type AliasPathOptions, MIN_RETRY_MS, type Path } from "./alias_path.ts";
