import assert from "node:assert/strict";
import type { Attributes } from "../credential/attributes.ts";
import { PolicyError } from "../errors.ts";
import {
  aliasRule,
  attributesRule,
  customerRule,
  gatewayRule,
  outletRule,
  serviceRule,
} from "./rules.ts";

const ID = "I" + "a".repeat(64);
const subject = (attributes: Record<string, unknown>) => ({
  identifier: ID,
  attributes: Object.freeze(attributes) as Attributes,
});

Deno.test('rules: the relay\'s alias right (an alias, "*", or a list of either)', () => {
  const rule = aliasRule("gw-cust-001");
  const cases: [unknown, boolean][] = [
    ["gw-cust-001", true],
    ["*", true],
    [["other", "gw-cust-001"], true],
    [["*"], true],
    ["gw-cust-002", false],
    [["gw-cust-002"], false],
    [[], false],
    [undefined, false],
    [7, false],
  ];
  for (const [relay, allowed] of cases) {
    const attrs = relay === undefined ? {} : { relay };
    assert.equal(rule.allows(subject(attrs)), allowed, JSON.stringify(relay));
  }
  // A quote in an alias stays data: it cannot change the rule's structure.
  const odd = aliasRule('x" or true or "y');
  assert.equal(odd.allows(subject({ relay: "x" })), false);
});

Deno.test("rules: customer, gateway and outlet rules", () => {
  assert.equal(customerRule("cust_001").allows(subject({ customer_id: "cust_001" })), true);
  assert.equal(customerRule("cust_001").allows(subject({ customer_id: "cust_002" })), false);
  const gateway = gatewayRule("cust_001");
  assert.equal(gateway.allows(subject({ role: "gateway", customer_id: "cust_001" })), true);
  assert.equal(gateway.allows(subject({ role: "edge", customer_id: "cust_001" })), false);
  const outlet = outletRule("cust_001", "ctx", 'subject.role == "edge"');
  assert.equal(outlet.allows(subject({ role: "edge", customer_id: "cust_001" })), true);
  // The customer clause holds even when the operator's policy is too broad.
  assert.equal(outletRule("cust_001", "x", "true").allows(subject({ customer_id: "c2" })), false);
  assert.throws(() => outletRule("c", "broken", "subject.role = 1"), (error: unknown) => {
    assert.ok(error instanceof PolicyError);
    assert.match(error.message, /^outlet "broken": /);
    assert.equal(error.position, 13);
    return true;
  });
});

Deno.test("rules: required attributes are exact matches; lists are refused", () => {
  const rule = attributesRule({ role: "edge", level: 3, admin: false });
  assert.equal(rule.allows(subject({ role: "edge", level: 3, admin: false })), true);
  assert.equal(rule.allows(subject({ role: "edge", level: 3 })), false);
  assert.equal(rule.allows(subject({ role: "edge", level: "3", admin: false })), false);
  assert.equal(attributesRule({}).allows(subject({})), true);
  assert.throws(() => attributesRule({ tags: ["a"] }), TypeError);
  assert.throws(() => attributesRule({ "bad name": "x" }), TypeError);
});

Deno.test("rules: a service's agent is role service, of the customer, for that service", () => {
  const rule = serviceRule("cust_001", "orchestrator");
  const agent = { role: "service", customer_id: "cust_001", service: "orchestrator" };
  assert.equal(rule.allows(subject(agent)), true);
  assert.equal(rule.allows(subject({ ...agent, customer_id: "cust_002" })), false);
  assert.equal(rule.allows(subject({ ...agent, service: "inference" })), false);
  assert.equal(rule.allows(subject({ ...agent, role: "gateway" })), false);
  assert.equal(rule.allows(subject({ role: "service", customer_id: "cust_001" })), false);
  assert.equal(serviceRule('c" or true or "', "x").allows(subject({ role: "service" })), false);
});
