/**
 * Attribute-based policies (docs/design.md §7): which members an outlet admits,
 * as an expression over the verified identity of a channel's peer and the
 * attributes of its current credential.
 *
 * ```
 * policy     = or-expr END
 * or-expr    = and-expr *( "or" and-expr )
 * and-expr   = not-expr *( "and" not-expr )
 * not-expr   = "not" not-expr / condition
 * condition  = "(" or-expr ")"
 *            / operand ( "==" / "!=" / "<" / "<=" / ">" / ">=" ) operand
 *            / operand "in" ( list / path )
 *            / "subject." attribute-name  ; a boolean attribute that is true
 *            / "true" / "false"
 * operand    = path / string / integer / "true" / "false"
 * list       = "[" [ item *( "," item ) ] "]"     ; all text or all integers
 * item       = string / integer
 * path       = "subject.identifier" / "subject." attribute-name
 * string     = a double-quoted string with JSON's escapes
 * integer    = an optional "-" and decimal digits, no leading zero, safe integer
 * ```
 *
 * `not` binds tighter than `and`, which binds tighter than `or`; comparisons
 * bind tighter than `not` (`not "x" in subject.l` is `not ("x" in subject.l)`),
 * and they do not chain. Keywords are lower case. `subject.identifier` is
 * always the channel's verified identifier (never an attribute of that name).
 *
 * Semantics, chosen so that a policy can only fail closed:
 *
 * - With no subject (no credential), every policy denies.
 * - A comparison that reads a missing attribute, or values of the wrong type
 *   (an integer where the policy has text, text ordered with `<`), is false.
 *   Evaluation never throws. `!=` is a comparison like the others: with the
 *   attribute missing it is false, so `subject.tier != "basic"` needs a tier;
 *   `not subject.tier == "basic"` admits subjects without one.
 * - `==` and `!=` compare text, integers and booleans, each only with its own
 *   type; `<`, `<=`, `>`, `>=` compare integers.
 * - `value in [..]` holds when the text or integer is in the list literal;
 *   `"text" in subject.list` when the list attribute holds the text.
 * - Mistakes visible in the text alone are syntax errors, not silent denials:
 *   an unknown root (only `subject.` paths exist), comparing a literal of the
 *   wrong type with `subject.identifier` or ordering text, a literal compared
 *   with `subject.identifier` that is not an identifier, a list literal
 *   mixing text and integers, `==` between literals of different types.
 *
 * Parsing is once per policy, with hard limits ({@link MAX_POLICY_BYTES},
 * {@link MAX_POLICY_DEPTH}); evaluation is per message, in two steps:
 *
 * - {@link Policy.allows} evaluates: a walk over a small tree of pre-built
 *   nodes comparing primitives, with no allocation, no string building and
 *   no regular expression. The cost is the attribute lookups (an own-property
 *   check, then the read): 150 to 200 ns for a five-clause policy (see
 *   `policy_bench.ts`). The reason is built only when asked
 *   ({@link Policy.evaluate}, some microseconds): for a denial's log line
 *   and the what-if command, not for every message.
 * - {@link Policy.admits}, the per-message call for a secure channel, caches
 *   the answer per credential (docs/design.md §7: "cache per channel and
 *   credential"), so a message costs a WeakMap lookup (about 10 ns). It is
 *   read through the channel's *current* credential at each message, so a
 *   refresh, which is a new Credential object, misses the cache and is
 *   decided afresh at the next message; a revocation closes the channel
 *   (`SecureChannel.revalidate`) or leaves it without a credential, which
 *   denies before the cache is consulted. The cache is sound because a
 *   decision is a pure function of the identifier and the attributes, and a
 *   decoded credential's attributes are deep-frozen (`normalizeAttributes`
 *   freezes the map and each list): an entry also records the identifier and
 *   the attributes object it was computed for and is used only when both
 *   are the same, and attributes that are not deep-frozen are never cached.
 *   The WeakMap holds no credential alive, and each policy has its own, so a
 *   changed policy (a new Policy) starts empty.
 *
 * @module
 */
import type { Attributes } from "../credential/attributes.ts";
import type { Credential } from "../credential/credential.ts";
import type { Expr } from "./expression.ts";
import { tokenize } from "./lexer.ts";
import { checkLength, Parser } from "./parser.ts";

/** Longest policy text, in UTF-8 bytes. */
export const MAX_POLICY_BYTES = 4096;
/** Deepest nesting of parentheses and `not`, together. */
export const MAX_POLICY_DEPTH = 32;

/** Whom a policy is asked about: a channel's verified peer and its credential's attributes. */
export interface Subject {
  /** The verified identifier (`I` and 64 hex digits) of the channel's peer. */
  readonly identifier: string;
  /** The attributes of the peer's current verified credential. */
  readonly attributes: Attributes;
}

/** A policy's answer, with the clause that decided it. */
export interface Decision {
  /** True when the subject is admitted. */
  readonly allow: boolean;
  /** Why, for logs and the what-if command: the deciding clauses and the values they saw. */
  readonly reason: string;
}

/** A parsed policy. */
export interface Policy {
  /** The text the policy was parsed from (empty for {@link denyAll}). */
  readonly source: string;
  /** Names of the attributes the policy reads, in order of first use. */
  readonly attributes: readonly string[];
  /**
   * True when the policy admits `subject`; false for null (no credential).
   * The per-message path: allocates nothing and never throws.
   */
  allows(subject: Subject | null): boolean;
  /** The same answer as {@link allows}, with the reason. Never throws. */
  evaluate(subject: Subject | null): Decision;
  /**
   * `allows(channelSubject(channel))`, remembered per credential: the
   * per-message call for messages from a secure channel. Never throws.
   */
  admits(channel: ChannelPeer): boolean;
}

/** What a worker learns about the secure channel a message came through (structurally `SecureChannelInfo`). */
export interface ChannelPeer {
  /** The peer's verified identifier. */
  readonly peer: string;
  /** The peer's current verified credential, or null. */
  readonly credential: () => Credential | null;
}

/**
 * The subject of a message that arrived through a secure channel: the
 * channel's verified peer and the attributes of its current credential
 * (null without one). Read at each message, so a refresh takes effect at
 * the next one.
 */
export function channelSubject(channel: ChannelPeer): Subject | null {
  const credential = channel.credential();
  return credential === null
    ? null
    : { identifier: channel.peer, attributes: credential.attributes };
}

const NO_CREDENTIAL: Decision = Object.freeze({
  allow: false,
  reason: "no credential: deny by default",
});
const NO_POLICY: Decision = Object.freeze({
  allow: false,
  reason: "no policy: an outlet without a policy admits no one",
});

/** The policy of an outlet that has none: it admits no one. */
export const denyAll: Policy = Object.freeze({
  source: "",
  attributes: Object.freeze([]),
  allows: (_subject: Subject | null) => false,
  evaluate: (_subject: Subject | null) => NO_POLICY,
  admits: (_channel: ChannelPeer) => false,
});

/**
 * Parses `text`, or returns {@link denyAll} when there is no text
 * (`undefined` or `null`): an outlet without a policy admits no one. An
 * empty or blank text is a syntax error, not "no policy": it is more likely
 * a mistake in a configuration file than a wish to deny everyone.
 * @throws {PolicyError}
 */
export function policyOrDeny(text: string | undefined | null): Policy {
  return text === undefined || text === null ? denyAll : parsePolicy(text);
}

/**
 * Parses a policy.
 * @throws {PolicyError} `syntax`, `too_long` or `too_deep`, with the
 *   position of the problem.
 * @throws {TypeError} when `text` is not a string.
 *
 * @example Parse once, then decide per subject
 * ```ts
 * import assert from "node:assert/strict";
 * import { parsePolicy } from "./mod.ts";
 *
 * const policy = parsePolicy('subject.role == "edge" and "mcp" in subject.capabilities');
 * const identifier = "I" + "ab".repeat(32);
 * assert.equal(
 *   policy.allows({ identifier, attributes: { role: "edge", capabilities: ["mcp"] } }),
 *   true,
 * );
 * const decision = policy.evaluate({ identifier, attributes: { role: "edge" } });
 * assert.equal(decision.allow, false);
 * assert.equal(
 *   decision.reason,
 *   '"mcp" in subject.capabilities: subject has no attribute "capabilities"',
 * );
 * assert.deepEqual(policy.attributes, ["role", "capabilities"]);
 * ```
 */
export function parsePolicy(text: string): Policy {
  if (typeof text !== "string") throw new TypeError("a policy is text");
  checkLength(text, MAX_POLICY_BYTES);
  const parser = new Parser(text, tokenize(text), MAX_POLICY_DEPTH);
  return new ParsedPolicy(text, parser.parse(), parser.attributes);
}

/** A decision remembered for one credential, and what it was computed from. */
interface Remembered {
  readonly peer: string;
  readonly attributes: Attributes;
  readonly allow: boolean;
}

/** True when `attributes` and each of its lists are frozen: they can never change. */
function deepFrozen(attributes: Attributes): boolean {
  if (!Object.isFrozen(attributes)) return false;
  return Object.values(attributes).every((value) =>
    typeof value !== "object" || value === null || Object.isFrozen(value)
  );
}

class ParsedPolicy implements Policy {
  readonly source: string;
  readonly attributes: readonly string[];
  #root: Expr;
  #remembered = new WeakMap<Credential, Remembered>();

  constructor(source: string, root: Expr, attributes: readonly string[]) {
    this.source = source;
    this.#root = root;
    this.attributes = Object.freeze([...attributes]);
  }

  allows(subject: Subject | null): boolean {
    return subject !== null && this.#root.test(subject);
  }

  evaluate(subject: Subject | null): Decision {
    if (subject === null) return NO_CREDENTIAL;
    const { value, reason } = this.#root.explain(subject, this.source);
    return { allow: value, reason };
  }

  admits(channel: ChannelPeer): boolean {
    const credential = channel.credential();
    if (credential === null) return false;
    const peer = channel.peer;
    const attributes = credential.attributes;
    const hit = this.#remembered.get(credential);
    if (hit !== undefined && hit.peer === peer && hit.attributes === attributes) return hit.allow;
    const allow = this.#root.test({ identifier: peer, attributes });
    if (deepFrozen(attributes)) this.#remembered.set(credential, { peer, attributes, allow });
    return allow;
  }

  toString(): string {
    return this.source;
  }
}
