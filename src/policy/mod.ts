/**
 * Attribute-based policies (docs/design.md §7): parsed once, evaluated per
 * message against a channel's verified peer and its current credential,
 * deny by default; and the what-if check behind `gateway policy check`.
 *
 * @module
 */
export {
  type ChannelPeer,
  channelSubject,
  type Decision,
  denyAll,
  MAX_POLICY_BYTES,
  MAX_POLICY_DEPTH,
  parsePolicy,
  type Policy,
  policyOrDeny,
  type Subject,
} from "./policy.ts";
export { policyCheck, type PolicyCheckOptions, type PolicyCheckResult } from "./policy_check.ts";
export {
  aliasRule,
  allOf,
  attributesRule,
  customerRule,
  edgeRule,
  gatewayRule,
  outletRule,
  relayRule,
  serviceRule,
} from "./rules.ts";
