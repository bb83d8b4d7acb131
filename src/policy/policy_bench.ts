/**
 * The per-message cost of a policy. `deno bench` prints each case's ratio
 * against the group's baseline, measured in the same run:
 *
 * - `decide` group, baseline: a bare WeakMap lookup keyed by the
 *   credential, the floor for any cache per credential. Compared with
 *   `admits` (the per-message call for a channel: the cache, hit), `allows`
 *   on a typical five-clause policy and on a policy with a 300-item list
 *   (evaluation, no cache), `channelSubject` + `allows`, and `evaluate`
 *   (with the reason, for logs and the what-if command).
 * - `parse` group: parsing, which happens once per policy.
 *
 * @module
 */
import { normalizeAttributes } from "../credential/attributes.ts";
import type { Credential } from "../credential/credential.ts";
import { channelSubject, parsePolicy, type Subject } from "./policy.ts";

const attributes = normalizeAttributes({
  customer_id: "cust_001",
  role: "edge",
  tier: "professional",
  capabilities: ["search", "ingest", "query", "mcp"],
  rate_limit_rpm: 2000,
});
const identifier = "I" + "ab".repeat(32);
const subject: Subject = { identifier, attributes };
const credential = { subject: identifier, attributes } as unknown as Credential;
const channel = { peer: identifier, credential: () => credential };

const TYPICAL = 'subject.role == "edge" and subject.customer_id == "cust_001" and ' +
  '"mcp" in subject.capabilities and subject.tier in ["professional", "enterprise"] and ' +
  "subject.rate_limit_rpm >= 1000";
const LONG_LIST = `subject.customer_id in [${
  Array.from({ length: 300 }, (_, i) => `"cust_${String(i).padStart(3, "0")}"`).join(", ")
}]`;
const typical = parsePolicy(TYPICAL);
const longList = parsePolicy(LONG_LIST);
const cache = new WeakMap<Credential, boolean>([[credential, true]]);

let sink = false;

Deno.bench(
  "WeakMap lookup by credential (a cache hit)",
  { group: "decide", baseline: true },
  () => {
    sink = cache.get(credential) === true;
  },
);
Deno.bench("admits: five clauses, cached per credential", { group: "decide" }, () => {
  sink = typical.admits(channel);
});
Deno.bench("allows: five clauses", { group: "decide" }, () => {
  sink = typical.allows(subject);
});
Deno.bench("allows: a 300-item list", { group: "decide" }, () => {
  sink = longList.allows(subject);
});
Deno.bench("channelSubject + allows: five clauses", { group: "decide" }, () => {
  sink = typical.allows(channelSubject(channel));
});
Deno.bench("evaluate (with the reason): five clauses", { group: "decide" }, () => {
  sink = typical.evaluate(subject).allow;
});

Deno.bench("parse: five clauses", { group: "parse", baseline: true }, () => {
  sink = parsePolicy(TYPICAL).allows(null);
});
Deno.bench("parse: a 300-item list", { group: "parse" }, () => {
  sink = parsePolicy(LONG_LIST).allows(null);
});

globalThis.addEventListener("unload", () => void sink);
