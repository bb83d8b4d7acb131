/**
 * Every authorization decision the system makes, as a policy in the policy
 * language (docs/protocol.md §21), so that one evaluator decides them all
 * and the what-if command (`nexus-gateway policy check`) can explain any of
 * them:
 *
 * | decision | where | rule |
 * |---|---|---|
 * | who may open a channel to a gateway | gateway listener | {@link customerRule} |
 * | who may use an outlet | gateway outlet | {@link outletRule}: the customer AND the outlet's own policy |
 * | whom an edge takes as its gateway | edge | {@link gatewayRule} |
 * | whom an edge takes as a service's agent (end to end) | edge | {@link serviceRule} |
 * | which services an edge may reach through the gateway | gateway | {@link outletRule} over the service's policy |
 * | who may register an alias | relay | {@link aliasRule} |
 * | attributes a channel end requires | `TrustPolicy.requiredAttributes` | {@link attributesRule} |
 *
 * Rules combine with {@link allOf} (AND, without parsing again).
 *
 * Texts are built from quoted values (JSON strings, which the policy
 * language reads as its own strings), so no value can change a rule's
 * structure.
 *
 * @module
 */
import type { AttributeValue } from "../credential/attributes.ts";
import { PolicyError } from "../errors.ts";
import {
  type ChannelPeer,
  type Decision,
  parsePolicy,
  type Policy,
  type Subject,
} from "./policy.ts";

const quote = (value: string) => JSON.stringify(value);

/**
 * A policy that admits what every one of `policies` admits: their clauses
 * ANDed without parsing anything again. A denial's reason is the first
 * denying policy's.
 */
export function allOf(...policies: Policy[]): Policy {
  const source = policies.map((p) => `(${p.source})`).join(" and ");
  const attributes = Object.freeze([...new Set(policies.flatMap((p) => p.attributes))]);
  return Object.freeze({
    source,
    attributes,
    allows: (subject: Subject | null) => policies.every((p) => p.allows(subject)),
    evaluate(subject: Subject | null): Decision {
      const reasons: string[] = [];
      for (const policy of policies) {
        const decision = policy.evaluate(subject);
        if (!decision.allow) return decision;
        reasons.push(decision.reason);
      }
      return { allow: true, reason: reasons.join("; and ") };
    },
    // Each part keeps its own per-credential cache.
    admits: (channel: ChannelPeer) => policies.every((p) => p.admits(channel)),
    toString: () => source,
  });
}

/** `subject.customer_id == "<customerId>"`: a gateway serves its own customer only. */
export function customerRule(customerId: string): Policy {
  return parsePolicy(`subject.customer_id == ${quote(customerId)}`);
}

/**
 * An outlet's rule: its customer AND the operator's policy, each parsed
 * once. The operator's policy is parsed on its own, so that an error's
 * position points into the operator's own text, and the message names the
 * outlet.
 * @throws {PolicyError} naming the outlet.
 */
export function outletRule(customerId: string, outlet: string, policy: string): Policy {
  let own: Policy;
  try {
    own = parsePolicy(policy);
  } catch (error) {
    if (!(error instanceof PolicyError)) throw error;
    throw new PolicyError(
      error.code,
      `outlet ${quote(outlet)}: ${error.message}`,
      error.position,
      { cause: error },
    );
  }
  return allOf(customerRule(customerId), own);
}

/** Whom an edge accepts as its gateway: `role` gateway, of the edge's customer. */
export function gatewayRule(customerId: string): Policy {
  return parsePolicy(`subject.role == "gateway" and subject.customer_id == ${quote(customerId)}`);
}

/**
 * Whom a service agent takes through an inner channel: an edge of its
 * customer. Not any member of the customer: the gateway that routes the
 * inner channel is one too, and must never get a session of its own.
 */
export function edgeRule(customerId: string): Policy {
  return parsePolicy(`subject.role == "edge" and subject.customer_id == ${quote(customerId)}`);
}

/**
 * Whom a member takes for the agent of `service` (end-to-end mode,
 * docs/architecture.md §5.10): `role` service, of the member's customer,
 * for that service. A gateway routes an edge's inner channel; it is the
 * edge that decides whom the channel reaches, by this rule.
 */
export function serviceRule(customerId: string, service: string): Policy {
  return parsePolicy(
    `subject.role == "service" and subject.customer_id == ${quote(customerId)} and ` +
      `subject.service == ${quote(service)}`,
  );
}

/**
 * Who may register `alias` at a relay: a credential whose `relay`
 * attribute is the alias, `"*"`, or a list holding either.
 */
export function aliasRule(alias: string): Policy {
  const a = quote(alias);
  return parsePolicy(
    `subject.relay == ${a} or ${a} in subject.relay or subject.relay == "*" or "*" in subject.relay`,
  );
}

/**
 * Whom a member takes for the relay at `address` (as its configuration
 * writes it, `host:port`): a credential with `role` relay whose
 * `relay_addresses` (a list, or one address) names it. The authority
 * states each relay's addresses, so a relay cannot pass for another.
 */
export function relayRule(address: string): Policy {
  const a = quote(address);
  return parsePolicy(
    `subject.role == "relay" and (${a} in subject.relay_addresses or subject.relay_addresses == ${a})`,
  );
}

/**
 * `TrustPolicy.requiredAttributes` as a rule: each attribute with exactly
 * this value (text, an integer or a boolean).
 * @throws {TypeError} for a name that is not an attribute name, or a list value.
 */
export function attributesRule(required: Readonly<Record<string, AttributeValue>>): Policy {
  const clauses = Object.entries(required).map(([name, value]) => {
    if (!/^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/.test(name)) {
      throw new TypeError(`not an attribute name: ${quote(name)}`);
    }
    if (typeof value === "string") return `subject.${name} == ${quote(value)}`;
    if (typeof value === "number" || typeof value === "boolean") {
      return `subject.${name} == ${value}`;
    }
    throw new TypeError(`required attribute ${name}: a list cannot be required; write a policy`);
  });
  return parsePolicy(clauses.length === 0 ? "true" : clauses.join(" and "));
}
