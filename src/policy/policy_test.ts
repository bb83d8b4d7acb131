import assert from "node:assert/strict";
import type { Attributes } from "../credential/attributes.ts";
import { type Credential, issueCredential } from "../credential/credential.ts";
import { createRevocationList, RevocationRegistry } from "../credential/revocation.ts";
import { TrustStore } from "../credential/trust_store.ts";
import { MalformedError } from "../encoding/errors.ts";
import { PolicyError, type PolicyErrorCode } from "../errors.ts";
import { verifyChangeHistory } from "../identity/change_history.ts";
import { assertThrowsWithCode, identityFromByte, NOW } from "../testdata/test_helpers.ts";
import {
  channelSubject,
  denyAll,
  MAX_POLICY_BYTES,
  MAX_POLICY_DEPTH,
  parsePolicy,
  policyOrDeny,
  type Subject,
} from "./policy.ts";
import { policyCheck } from "./policy_check.ts";

const EDGE_ID = "I" + "ab".repeat(32);
const OTHER_ID = "I" + "cd".repeat(32);

/** A subject with `attributes` (frozen, prototype-free, as credentials hold them). */
function subject(attributes: Record<string, unknown>, identifier = EDGE_ID): Subject {
  return {
    identifier,
    attributes: Object.freeze(Object.assign(Object.create(null), attributes)) as Attributes,
  };
}

const edge = subject({
  role: "edge",
  customer_id: "cust_001",
  capabilities: ["mcp", "http"],
  tier: "professional",
  rate_limit_rpm: 1200,
  enrolled: true,
  suspended: false,
});

/** Parses `text` and returns its decision for `s`, checking that allows() and evaluate() agree. */
function allows(text: string, s: Subject | null): boolean {
  const policy = parsePolicy(text);
  const fast = policy.allows(s);
  assert.equal(policy.evaluate(s).allow, fast, `allows and evaluate disagree on ${text}`);
  return fast;
}

function reason(text: string, s: Subject | null): string {
  return parsePolicy(text).evaluate(s).reason;
}

// ---------------------------------------------------------------------------
// The issue's examples

Deno.test("policy: the issue's examples", () => {
  const cases: [string, Subject, boolean][] = [
    ['subject.role == "edge" and subject.customer_id == "cust_001"', edge, true],
    ['subject.role == "edge" and subject.customer_id == "cust_002"', edge, false],
    ['"mcp" in subject.capabilities', edge, true],
    ['"ssh" in subject.capabilities', edge, false],
    ['subject.tier in ["professional", "enterprise"]', edge, true],
    ['subject.tier in ["professional", "enterprise"]', subject({ tier: "basic" }), false],
    ['not subject.role == "gateway"', edge, true],
    ['not (subject.role == "edge")', edge, false],
    [`subject.identifier == "${EDGE_ID}"`, edge, true],
    [`subject.identifier == "${OTHER_ID}"`, edge, false],
    ["subject.rate_limit_rpm >= 1000", edge, true],
    ["subject.rate_limit_rpm >= 1000", subject({ rate_limit_rpm: 999 }), false],
  ];
  for (const [text, s, expected] of cases) assert.equal(allows(text, s), expected, text);
});

Deno.test("policy: the reason names the deciding clause and the value it saw", () => {
  assert.equal(
    reason('subject.tier in ["professional", "enterprise"]', subject({ tier: "basic" })),
    'subject.tier in ["professional", "enterprise"]: "basic" is not in the list',
  );
  assert.equal(
    reason('subject.role == "edge" and subject.customer_id == "cust_002"', edge),
    'subject.customer_id == "cust_002": "cust_001" does not equal "cust_002"',
  );
  assert.equal(
    reason('subject.role == "gateway" or "mcp" in subject.capabilities', edge),
    '"mcp" in subject.capabilities: subject.capabilities contains "mcp"',
  );
  assert.equal(
    reason('"ssh" in subject.capabilities', edge),
    '"ssh" in subject.capabilities: subject.capabilities ["mcp", "http"] does not contain "ssh"',
  );
  assert.equal(
    reason("subject.rate_limit_rpm >= 1000", subject({ rate_limit_rpm: 999 })),
    "subject.rate_limit_rpm >= 1000: 999 is less than 1000",
  );
  assert.equal(
    reason('not subject.role == "edge"', edge),
    'not (subject.role == "edge": "edge" equals "edge")',
  );
  // Allowed by an "and": every clause is part of the reason.
  assert.equal(
    reason('subject.role == "edge" and subject.enrolled', edge),
    'subject.role == "edge": "edge" equals "edge"; subject.enrolled: subject.enrolled is true',
  );
  // Denied by an "or": every alternative is.
  assert.equal(
    reason('subject.role == "relay" or subject.tier == "basic"', edge),
    'subject.role == "relay": "edge" does not equal "relay"; ' +
      'subject.tier == "basic": "professional" does not equal "basic"',
  );
});

Deno.test("policy: a reason joins at most eight clauses", () => {
  const clauses = Array.from({ length: 20 }, (_, i) => `subject.role == "r${i}"`);
  const why = reason(clauses.join(" or "), edge);
  assert.equal(why.split("; ").length, 9);
  assert.match(why, /; … and 12 more clauses$/);
});

Deno.test("policy: source and the attributes it reads", () => {
  const text = 'subject.role == "edge" and ("mcp" in subject.capabilities or subject.role == "x")';
  const policy = parsePolicy(text);
  assert.equal(policy.source, text);
  assert.equal(String(policy), text);
  assert.deepEqual(policy.attributes, ["role", "capabilities"]);
  assert.deepEqual(parsePolicy(`subject.identifier == "${EDGE_ID}"`).attributes, []);
});

// ---------------------------------------------------------------------------
// Precedence and parentheses

Deno.test("policy: not binds tighter than and, and tighter than or", () => {
  const t = "subject.enrolled"; // true
  const f = "subject.suspended"; // false
  const truth = (text: string) => allows(text, edge);
  // not a and b == (not a) and b
  assert.equal(truth(`not ${f} and ${t}`), true);
  assert.equal(truth(`not ${t} and ${f}`), false);
  assert.equal(truth(`not ${f} and ${f}`), false); // not (f and f) would be true
  // a or b and c == a or (b and c)
  assert.equal(truth(`${t} or ${f} and ${f}`), true); // (t or f) and f would be false
  assert.equal(truth(`${f} and ${f} or ${t}`), true);
  assert.equal(truth(`${f} or ${t} and ${f}`), false);
  // not a or b == (not a) or b
  assert.equal(truth(`not ${t} or ${t}`), true);
  // not not
  assert.equal(truth(`not not ${t}`), true);
  // comparisons bind tighter than not
  assert.equal(truth('not "ssh" in subject.capabilities'), true);
  assert.equal(truth('not subject.role == "edge" or subject.tier == "professional"'), true);
});

Deno.test("policy: parentheses override precedence", () => {
  const t = "subject.enrolled";
  const f = "subject.suspended";
  const truth = (text: string) => allows(text, edge);
  assert.equal(truth(`not (${f} and ${t})`), true);
  assert.equal(truth(`(${t} or ${f}) and ${f}`), false);
  assert.equal(truth(`${f} and (${f} or ${t})`), false);
  assert.equal(truth(`((((${t}))))`), true);
  assert.equal(truth(`(${t}) and (not (${f}))`), true);
  assert.equal(truth(`not (not (${t} and not ${f}))`), true);
});

Deno.test("policy: whitespace is free between tokens, newlines included", () => {
  assert.equal(allows('subject.role=="edge"and(subject.rate_limit_rpm>=1000)', edge), true);
  assert.equal(allows('\n\tsubject.role ==\r\n "edge"\n', edge), true);
  assert.equal(allows('subject.tier in["professional"]', edge), true);
});

// ---------------------------------------------------------------------------
// Values

Deno.test("policy: integer comparisons", () => {
  const s = subject({ n: 1000, neg: -5 });
  const cases: [string, boolean][] = [
    ["subject.n == 1000", true],
    ["subject.n != 1000", false],
    ["subject.n != 999", true],
    ["subject.n < 1000", false],
    ["subject.n < 1001", true],
    ["subject.n <= 1000", true],
    ["subject.n <= 999", false],
    ["subject.n > 999", true],
    ["subject.n > 1000", false],
    ["subject.n >= 1000", true],
    ["subject.n >= 1001", false],
    ["subject.neg < 0", true],
    ["subject.neg == -5", true],
    ["-6 < subject.neg", true],
    ["subject.n > subject.neg", true],
    ["subject.n in [1, 1000, 5]", true],
    ["subject.n in [1, 2]", false],
    ["0 == -0", true],
    [`subject.n <= ${Number.MAX_SAFE_INTEGER}`, true],
    [`subject.neg >= ${Number.MIN_SAFE_INTEGER}`, true],
  ];
  for (const [text, expected] of cases) assert.equal(allows(text, s), expected, text);
});

Deno.test("policy: text and boolean equality", () => {
  const s = subject({ role: "edge", on: true, off: false, empty: "" });
  const cases: [string, boolean][] = [
    ['subject.role == "edge"', true],
    ['subject.role == "Edge"', false],
    ['subject.role != "gateway"', true],
    ['"edge" == subject.role', true],
    ["subject.on == true", true],
    ["subject.off == false", true],
    ["subject.on != subject.off", true],
    ['subject.empty == ""', true],
    ["subject.on", true],
    ["subject.off", false],
    ["true", true],
    ["false", false],
    ["not false", true],
  ];
  for (const [text, expected] of cases) assert.equal(allows(text, s), expected, text);
});

Deno.test("policy: string escapes", () => {
  const s = subject({ q: 'say "hi"', path: "a\\b/c", nl: "x\ny", u: "A\u00e9\u{1f600}" });
  assert.equal(allows('subject.q == "say \\"hi\\""', s), true);
  assert.equal(allows('subject.path == "a\\\\b\\/c"', s), true);
  assert.equal(allows('subject.nl == "x\\ny"', s), true);
  assert.equal(allows('subject.u == "\\u0041\\u00E9\\ud83d\\ude00"', s), true);
  assert.equal(allows('subject.u == "Aé😀"', s), true);
});

Deno.test("policy: list membership, both ways", () => {
  const s = subject({ tier: "basic", caps: ["mcp", "http"], none: [], n: 3 });
  const cases: [string, boolean][] = [
    ['subject.tier in ["basic"]', true],
    ['subject.tier in ["professional", "enterprise"]', false],
    ["subject.tier in []", false],
    ['"mcp" in subject.caps', true],
    ['"http" in subject.caps', true],
    ['"ssh" in subject.caps', false],
    ['"mcp" in subject.none', false],
    ["subject.tier in subject.caps", false],
    ['"mcp" in ["mcp"]', true],
    ["3 in [1, 2, 3]", true],
    ["subject.n in [1, 2, 3]", true],
  ];
  for (const [text, expected] of cases) assert.equal(allows(text, s), expected, text);
  const caps = subject({ a: "http", caps: ["mcp", "http"] });
  assert.equal(allows("subject.a in subject.caps", caps), true);
});

Deno.test("policy: a long list literal", () => {
  const items = Array.from({ length: 300 }, (_, i) => `"cust_${i}"`).join(",");
  const policy = parsePolicy(`subject.customer_id in [${items}]`);
  assert.equal(policy.allows(subject({ customer_id: "cust_299" })), true);
  assert.equal(policy.allows(subject({ customer_id: "cust_300" })), false);
  // The reason stays short.
  assert.ok(policy.evaluate(subject({ customer_id: "x" })).reason.length < 200);
});

Deno.test("policy: subject.identifier is the verified identity, never an attribute", () => {
  const s = subject({ identifier: OTHER_ID }, EDGE_ID);
  assert.equal(allows(`subject.identifier == "${EDGE_ID}"`, s), true);
  assert.equal(allows(`subject.identifier == "${OTHER_ID}"`, s), false);
  assert.equal(allows(`subject.identifier != "${OTHER_ID}"`, s), true);
  assert.equal(allows(`subject.identifier in ["${OTHER_ID}", "${EDGE_ID}"]`, s), true);
  assert.equal(allows(`subject.identifier in ["${OTHER_ID}"]`, s), false);
  assert.equal(
    allows("subject.identifier in subject.allowed", subject({ allowed: [EDGE_ID] })),
    true,
  );
});

// ---------------------------------------------------------------------------
// Missing attributes and type mismatches: false, never a throw

Deno.test("policy: a missing attribute makes every comparison false", () => {
  const s = subject({});
  for (
    const text of [
      'subject.role == "edge"',
      'subject.role != "edge"',
      "subject.n < 5",
      "subject.n >= 5",
      'subject.tier in ["basic"]',
      '"mcp" in subject.caps',
      "subject.a in subject.caps",
      "subject.flag",
      "subject.a == subject.b",
      "subject.a != subject.b",
    ]
  ) {
    assert.equal(allows(text, s), false, text);
  }
  // not of a false comparison is true: the policy author chose that.
  assert.equal(allows('not subject.tier == "basic"', s), true);
  assert.equal(
    reason('subject.role == "edge"', s),
    'subject.role == "edge": subject has no attribute "role"',
  );
  assert.equal(
    reason('"mcp" in subject.caps', s),
    '"mcp" in subject.caps: subject has no attribute "caps"',
  );
});

Deno.test("policy: names of Object.prototype are plain (missing) attributes", () => {
  // An ordinary object, not a prototype-free one: lookups must not reach Object.prototype.
  const s: Subject = { identifier: EDGE_ID, attributes: { role: "edge" } };
  assert.equal(allows('subject.constructor == "x"', s), false);
  assert.equal(allows("subject.toString", s), false);
  assert.equal(allows('"x" in subject.__proto__', s), false);
  assert.equal(allows('subject.hasOwnProperty != "x"', s), false);
  assert.equal(
    reason("subject.constructor == 1", s),
    'subject.constructor == 1: subject has no attribute "constructor"',
  );
});

Deno.test("policy: a type mismatch is false, with the reason", () => {
  const s = subject({ tier: 3, role: "edge", caps: "mcp", on: "yes", list: ["a"], n: 5 });
  const cases: [string, string][] = [
    ['subject.tier == "basic"', "subject.tier is an integer (3), not text"],
    ['subject.tier != "basic"', "subject.tier is an integer (3), not text"],
    ["subject.role >= 1000", 'subject.role is text ("edge"), not an integer'],
    ['subject.tier in ["basic", "pro"]', "subject.tier is an integer (3), not text"],
    ["subject.role in [1, 2]", 'subject.role is text ("edge"), not an integer'],
    ['"mcp" in subject.caps', 'subject.caps is text ("mcp"), not a list'],
    ["subject.n in subject.list", "subject.n is an integer (5), not text"],
    ["subject.on", 'subject.on is text ("yes"), not a boolean'],
    ['subject.list == "a"', 'subject.list is a list (["a"]), not text'],
    [
      "subject.list == subject.list",
      'subject.list is a list (["a"]), not text, an integer or a boolean',
    ],
    ["subject.role == subject.n", 'subject.role is text ("edge") but subject.n is an integer (5)'],
    ["subject.list in []", "the list is empty"],
  ];
  for (const [text, why] of cases) {
    assert.equal(allows(text, s), false, text);
    assert.equal(reason(text, s), `${text}: ${why}`);
  }
});

Deno.test("policy: evaluation never throws on values outside the attribute types", () => {
  const odd: Subject = {
    identifier: EDGE_ID,
    attributes: { a: null, b: {}, c: [1, 2], d: 1.5, e: undefined } as unknown as Attributes,
  };
  for (
    const text of [
      'subject.a == "x"',
      "subject.b == 1",
      '"1" in subject.c',
      "subject.d > 1",
      "subject.e",
      "subject.b in [1]",
      "subject.a != subject.b",
      "subject.c",
    ]
  ) {
    const policy = parsePolicy(text);
    policy.allows(odd);
    policy.evaluate(odd);
  }
});

// ---------------------------------------------------------------------------
// Deny by default

Deno.test("policy: no subject (no credential) is denied by every policy", () => {
  for (const text of ["true", "not false", 'not subject.role == "x"', "not subject.x"]) {
    assert.equal(allows(text, null), false, text);
    assert.equal(parsePolicy(text).evaluate(null).reason, "no credential: deny by default");
  }
});

Deno.test("policy: an outlet without a policy admits no one", () => {
  assert.equal(denyAll.allows(edge), false);
  assert.equal(denyAll.allows(null), false);
  assert.deepEqual(denyAll.evaluate(edge), {
    allow: false,
    reason: "no policy: an outlet without a policy admits no one",
  });
  assert.equal(denyAll.source, "");
  assert.deepEqual(denyAll.attributes, []);
  assert.equal(policyOrDeny(undefined), denyAll);
  assert.equal(policyOrDeny(null), denyAll);
  assert.equal(policyOrDeny("true").allows(edge), true);
  // An empty text is a mistake, not "no policy".
  assertThrowsWithCode(() => policyOrDeny(""), PolicyError, "syntax");
  assertThrowsWithCode(() => policyOrDeny("   "), PolicyError, "syntax");
  assert.throws(() => parsePolicy(42 as unknown as string), TypeError);
});

// ---------------------------------------------------------------------------
// Channels: the current credential at each message

Deno.test("policy: channelSubject reads the channel's current credential at each call", async () => {
  const authority = await identityFromByte(1);
  const member = await identityFromByte(2);
  const issue = (tier: string) =>
    issueCredential(authority, {
      subject: member.identifier,
      subjectKey: member.primaryKey,
      attributes: { tier },
      now: NOW,
    });
  let current: Credential | null = await issue("basic");
  const channel = { peer: member.identifier, credential: () => current };
  const policy = parsePolicy(
    `subject.tier == "enterprise" and subject.identifier == "${member.identifier}"`,
  );
  assert.equal(policy.allows(channelSubject(channel)), false);
  current = await issue("enterprise"); // a refresh
  assert.equal(policy.allows(channelSubject(channel)), true);
  current = null; // no credential any more
  assert.equal(policy.allows(channelSubject(channel)), false);
  assert.equal(policy.evaluate(channelSubject(channel)).reason, "no credential: deny by default");
  // The identity is the channel's, not the credential's subject.
  current = await issue("enterprise");
  assert.deepEqual(
    channelSubject({ peer: EDGE_ID, credential: () => current })?.identifier,
    EDGE_ID,
  );
});

Deno.test("policy: admits decides per credential, and a refresh or a lost credential takes effect", async () => {
  const authority = await identityFromByte(1);
  const member = await identityFromByte(2);
  const issue = (tier: string) =>
    issueCredential(authority, {
      subject: member.identifier,
      subjectKey: member.primaryKey,
      attributes: { tier },
      now: NOW,
    });
  const basic = await issue("basic");
  const enterprise = await issue("enterprise");
  let current: Credential | null = basic;
  const channel = { peer: member.identifier, credential: () => current };
  const policy = parsePolicy('subject.tier == "enterprise"');
  assert.equal(policy.admits(channel), false);
  assert.equal(policy.admits(channel), false); // remembered
  current = enterprise; // a refresh: a new credential object
  assert.equal(policy.admits(channel), true);
  assert.equal(policy.admits(channel), true);
  current = null; // revoked and dropped: no credential
  assert.equal(policy.admits(channel), false);
  current = basic; // the old credential again: its own remembered answer
  assert.equal(policy.admits(channel), false);
  // The identity is part of what is remembered.
  const pinned = parsePolicy(`subject.identifier == "${member.identifier}"`);
  assert.equal(pinned.admits(channel), true);
  assert.equal(pinned.admits({ peer: OTHER_ID, credential: () => basic }), false);
  assert.equal(pinned.admits(channel), true);
  // Another policy, another cache.
  assert.equal(parsePolicy('subject.tier == "basic"').admits(channel), true);
  assert.equal(denyAll.admits(channel), false);
});

Deno.test("policy: admits never remembers attributes that can change", () => {
  const caps = ["http"];
  const mutable = { role: "edge", caps };
  const credential = { attributes: mutable } as unknown as Credential;
  const channel = { peer: EDGE_ID, credential: () => credential };
  const policy = parsePolicy('"mcp" in subject.caps');
  assert.equal(policy.admits(channel), false);
  caps.push("mcp");
  assert.equal(policy.admits(channel), true);
  // Frozen, but with a list that is not.
  const list = ["http"];
  const shallow = { attributes: Object.freeze({ caps: list }) } as unknown as Credential;
  const shallowChannel = { peer: EDGE_ID, credential: () => shallow };
  assert.equal(policy.admits(shallowChannel), false);
  list.push("mcp");
  assert.equal(policy.admits(shallowChannel), true);
  // A credential object whose attributes were replaced.
  const swapped = {
    attributes: Object.freeze({ caps: Object.freeze(["http"]) }),
  } as { attributes: Attributes };
  const swappedChannel = { peer: EDGE_ID, credential: () => swapped as unknown as Credential };
  assert.equal(policy.admits(swappedChannel), false);
  swapped.attributes = Object.freeze({ caps: Object.freeze(["mcp"]) });
  assert.equal(policy.admits(swappedChannel), true);
});

// ---------------------------------------------------------------------------
// Errors

/** Asserts that `text` fails with `code` at `position`, and that the message has a caret there. */
function assertPolicyError(
  text: string,
  position: number,
  code: PolicyErrorCode = "syntax",
): PolicyError {
  const error = assertThrowsWithCode(
    () => parsePolicy(text),
    PolicyError,
    code,
    JSON.stringify(text),
  );
  assert.equal(error.position, position, `${JSON.stringify(text)}: ${error.message}`);
  const lines = error.message.split("\n");
  assert.equal(lines.length, 3, error.message);
  assert.match(lines[0], new RegExp(`at offset ${position}\\b`));
  assert.equal(lines[2].trimEnd().at(-1), "^");
  return error;
}

Deno.test("policy: syntax errors point at the position", () => {
  const cases: [string, number][] = [
    ["", 0], // nothing
    ['subject.role = "edge"', 13], // single =
    ['subject.role == "edge" && subject.tier == "x"', 23], // &&
    ['subject.role == "edge" || subject.tier == "x"', 23], // ||
    ["!subject.on", 0], // !
    ["subject.role ==", 15], // missing right side
    ['(subject.role == "edge"', 23], // unclosed parenthesis
    ['subject.role == "edge")', 22], // stray )
    ['foo.bar == "x"', 0], // unknown root
    ['subject == "x"', 7], // subject alone
    ['subject. == "x"', 8], // empty attribute name
    ['subject.role == "edge', 16], // unterminated string
    ['subject.role == "a\\qb"', 18], // bad escape
    ['subject.role == "a\\u12"', 18], // short \u
    ["subject.role == 'edge'", 16], // single quotes
    ["subject.n == 01", 13], // leading zero
    ["subject.n == 1.5", 14], // not an integer
    ["subject.n == 9007199254740992", 13], // beyond safe
    ["subject.n == -", 13], // lone minus
    ["subject.a == 1 == 2", 15], // chained comparison
    ["subject.a == 1 subject.b == 2", 15], // missing and/or
    ['subject.a "x"', 10], // missing operator
    ['"x"', 3], // a bare literal
    ["5 and true", 2], // a bare integer
    ['subject.tier in ["a", 1]', 22], // mixed list
    ['subject.tier in ["a",]', 21], // trailing comma
    ['subject.tier in ["a" "b"]', 21], // missing comma
    ["subject.tier in [true]", 17], // boolean item
    ['subject.tier in ["a"', 20], // unclosed list
    ['subject.tier == ["a"]', 16], // list outside in
    ['"x" in "y"', 7], // in without a list
    ['"x" in subject.identifier', 7], // identifier is not a list
    ["1 in subject.caps", 0], // list attributes hold text
    ['subject.n < "5"', 12], // ordering text
    ["true >= 1", 0], // ordering booleans
    ['"a" == 1', 7], // literals of different types
    ['subject.identifier == "abc"', 22], // not an identifier
    ["subject.identifier == 5", 22], // identifier is text
    [`subject.identifier in ["${EDGE_ID}", "x"]`, 92], // a list item that is not an identifier
    ["subject.x not in [1]", 10], // "not in"
    ["(subject.a) == 1", 12], // comparing a condition
    ["subject.a AND subject.b", 10], // upper-case keyword
    ["not", 3], // not of nothing
    ["()", 1], // empty parentheses
    ["subject.a and", 13], // dangling and
    ["subject.a # comment", 10], // unknown character
    ['subject.a == "\u0001"', 14], // raw control character in text
    [`subject.${"a".repeat(65)} == 1`, 8], // attribute name too long
  ];
  for (const [text, position] of cases) assertPolicyError(text, position);
});

Deno.test("policy: the message shows the line with a caret under the position", () => {
  const error = assertPolicyError('subject.role == "edge" && x', 23);
  assert.equal(
    error.message,
    'policy syntax error at offset 23: write "and" to join conditions\n' +
      '  subject.role == "edge" && x\n' +
      "                         ^",
  );
  const multi = assertPolicyError("subject.a == 1 and\n  subject.b &&", 31);
  assert.equal(
    multi.message,
    'policy syntax error at offset 31 (line 2, column 13): write "and" to join conditions\n' +
      "    subject.b &&\n" +
      "              ^",
  );
  // A long line shows a window around the position, marked with ellipses.
  const long = `subject.customer_id in [${'"c", '.repeat(200)}"c"] and subject.x ==`;
  const far = assertPolicyError(long, long.length);
  const [, shown, caret] = far.message.split("\n");
  assert.ok(shown.length < 90 && shown.startsWith("  …"), shown);
  assert.equal(caret.length, shown.length + 1);
  // Control and bidi characters in the text are shown as "?", one for one, so the caret stays aligned.
  const hidden = assertPolicyError('subject.a == "\u202e" #', 17);
  assert.equal(hidden.message.split("\n")[1], '  subject.a == "?" #');
});

Deno.test("policy: length limit", () => {
  const pad = (n: number) => `subject.a == "${"x".repeat(n - 15)}"`;
  assert.equal(pad(MAX_POLICY_BYTES).length, MAX_POLICY_BYTES);
  parsePolicy(pad(MAX_POLICY_BYTES));
  assertPolicyError(pad(MAX_POLICY_BYTES + 1), MAX_POLICY_BYTES, "too_long");
  // Counted in UTF-8 bytes: 16 + 2040 "é" of two bytes each are 4096 bytes.
  const accents = (n: number) => `subject.a == "x${"é".repeat(n)}"`;
  parsePolicy(accents(2040));
  assertPolicyError(accents(2041), 15 + 2040, "too_long");
  // Surrogate pairs are four bytes: 16 + 1020 * 4 = 4096.
  const emoji = `subject.a == "x${"😀".repeat(1020)}"`;
  parsePolicy(emoji);
  assertPolicyError(emoji + " ", emoji.length, "too_long");
  // A lone surrogate is three (U+FFFD), as TextEncoder writes it.
  const lone = (n: number) => `subject.a == "x${"\ud800".repeat(n)}"`;
  assert.equal(new TextEncoder().encode(lone(1360)).length, 4096);
  parsePolicy(lone(1360));
  assertPolicyError(lone(1361), 15 + 1360, "too_long");
  // Far beyond: refused before tokenizing.
  assertPolicyError("(".repeat(1_000_000), MAX_POLICY_BYTES, "too_long");
});

Deno.test("policy: depth limit, for parentheses and not together", () => {
  const parens = (n: number) => "(".repeat(n) + "true" + ")".repeat(n);
  parsePolicy(parens(MAX_POLICY_DEPTH));
  assertPolicyError(parens(MAX_POLICY_DEPTH + 1), MAX_POLICY_DEPTH, "too_deep");
  const nots = (n: number) => "not ".repeat(n) + "true";
  assert.equal(parsePolicy(nots(MAX_POLICY_DEPTH)).allows(edge), true);
  assertPolicyError(nots(MAX_POLICY_DEPTH + 1), 4 * MAX_POLICY_DEPTH, "too_deep");
  const mixed = "not (".repeat(MAX_POLICY_DEPTH / 2) + "(true" +
    ")".repeat(MAX_POLICY_DEPTH / 2 + 1);
  assertPolicyError(mixed, 5 * (MAX_POLICY_DEPTH / 2), "too_deep");
  // Long flat chains are not nesting.
  const chain = Array.from({ length: 400 }, () => "true").join(" and ");
  assert.equal(parsePolicy(chain).allows(edge), true);
});

// ---------------------------------------------------------------------------
// The what-if check

Deno.test("policyCheck: allow and deny, with the reason and the credential", async () => {
  const authority = await identityFromByte(1);
  const member = await identityFromByte(2);
  const trust = new TrustStore([await verifyChangeHistory(authority.history.encoded)]);
  const credential = await issueCredential(authority, {
    subject: member.identifier,
    subjectKey: member.primaryKey,
    attributes: { role: "edge", tier: "basic", capabilities: ["mcp"], rate_limit_rpm: 600 },
    now: NOW,
    ttlSeconds: 3600,
    id: new Uint8Array(16).fill(0x11),
  });
  const allowed = await policyCheck({
    policy: '"mcp" in subject.capabilities',
    credentialBytes: credential.encoded,
    trust,
    now: NOW + 60,
  });
  assert.equal(allowed.allow, true);
  assert.equal(
    allowed.text,
    [
      "allow",
      '  why: "mcp" in subject.capabilities: subject.capabilities contains "mcp"',
      'policy: "mcp" in subject.capabilities',
      `credential ${"11".repeat(16)}: verified`,
      `  subject:    ${member.identifier}`,
      `  issuer:     ${authority.identifier}`,
      "  valid:      2026-01-01T00:00:00Z to 2026-01-01T01:00:00Z",
      "  attributes:",
      '    capabilities   = ["mcp"]  (read by the policy)',
      "    rate_limit_rpm = 600",
      '    role           = "edge"',
      '    tier           = "basic"',
      "",
    ].join("\n"),
  );

  const denied = await policyCheck({
    policy: 'subject.tier in ["professional", "enterprise"] and subject.region == "eu"',
    credentialBytes: credential.encoded,
  });
  assert.equal(denied.allow, false);
  assert.equal(
    denied.reason,
    'subject.tier in ["professional", "enterprise"]: "basic" is not in the list',
  );
  const lines = denied.text.split("\n");
  assert.equal(lines[0], "deny");
  assert.match(denied.text, /not verified \(no trust anchors given\)/);
  assert.match(denied.text, /missing attributes the policy reads: region\n/);

  // Expired: the gateway would refuse the credential, whatever the policy says.
  const expired = await policyCheck({
    policy: "true",
    credentialBytes: credential.encoded,
    trust,
    now: NOW + 7200,
  });
  assert.equal(expired.allow, false);
  assert.match(expired.reason, /^credential refused \[expired\]: /);
  assert.match(expired.text, /^deny\n/);
  assert.match(expired.text, /the policy alone would allow: true: always\n/);
  assert.match(expired.text, /: refused \[expired\]\n/);

  // Revoked.
  const revocations = new RevocationRegistry();
  await revocations.apply(
    await createRevocationList(authority, {
      serial: 1,
      identifiers: [member.identifier],
      now: NOW,
    }),
    trust,
  );
  const revoked = await policyCheck({
    policy: "true",
    credentialBytes: credential.encoded,
    trust,
    revocations,
    now: NOW + 60,
  });
  assert.equal(revoked.allow, false);
  assert.match(revoked.reason, /^credential refused \[revoked\]/);

  // An untrusted issuer.
  const stranger = await identityFromByte(7);
  const strangers = new TrustStore([await verifyChangeHistory(stranger.history.encoded)]);
  const untrusted = await policyCheck({
    policy: "true",
    credentialBytes: credential.encoded,
    trust: strangers,
    now: NOW,
  });
  assert.equal(untrusted.allow, false);
  assert.match(untrusted.reason, /^credential refused \[untrusted_issuer\]/);

  // A policy that does not parse, and bytes that are not a credential, throw.
  await assert.rejects(
    policyCheck({ policy: "subject.tier = 1", credentialBytes: credential.encoded }),
    (error: unknown) => error instanceof PolicyError && error.position === 13,
  );
  await assert.rejects(
    policyCheck({ policy: "true", credentialBytes: Uint8Array.of(1, 2, 3) }),
    MalformedError,
  );
});

Deno.test("policyCheck: a credential without attributes, and values that a terminal would act on", async () => {
  const authority = await identityFromByte(1);
  const member = await identityFromByte(2);
  const bare = await issueCredential(authority, {
    subject: member.identifier,
    subjectKey: member.primaryKey,
    attributes: {},
    now: NOW,
  });
  const result = await policyCheck({ policy: "subject.on", credentialBytes: bare.encoded });
  assert.match(result.text, /\n {2}attributes: none\n/);
  assert.equal(result.reason, 'subject.on: subject has no attribute "on"');
  const tricky = await issueCredential(authority, {
    subject: member.identifier,
    subjectKey: member.primaryKey,
    attributes: { name: "evil\u202e\u009b\x1b[2J" },
    now: NOW,
  });
  const shown = await policyCheck({
    policy: 'subject.name == "x"',
    credentialBytes: tricky.encoded,
  });
  // deno-lint-ignore no-control-regex -- the test looks for raw control characters on purpose
  assert.doesNotMatch(shown.text, /[\u202e\u009b\x1b]/);
  assert.match(shown.text, /name = "evil\\u202e\\u009b\\u001b\[2J"/);
});
