/**
 * Attribute-based policies (DESIGN.md §7): which members an outlet admits,
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
 *   the answer per credential (DESIGN.md §7: "cache per channel and
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
import type { Attributes, AttributeValue } from "../credential/attributes.ts";
import type { Credential } from "../credential/credential.ts";
import { PolicyError, type PolicyErrorCode } from "../errors.ts";

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
 */
export function parsePolicy(text: string): Policy {
  if (typeof text !== "string") throw new TypeError("a policy is text");
  checkLength(text);
  const parser = new Parser(text, tokenize(text));
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

// ---------------------------------------------------------------------------
// Errors

/** What a caret line may show: control, separator and bidi characters become "?", one for one. */
// deno-lint-ignore no-control-regex
const UNPRINTABLE = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const WINDOW = 72;
const TITLES: Readonly<Record<PolicyErrorCode, string>> = {
  syntax: "policy syntax error",
  too_long: "policy too long",
  too_deep: "policy nested too deeply",
};

function fail(code: PolicyErrorCode, source: string, position: number, detail: string): never {
  const lineStart = source.lastIndexOf("\n", position - 1) + 1;
  let lineEnd = source.indexOf("\n", position);
  if (lineEnd < 0) lineEnd = source.length;
  // A window of the line around the position, so a long policy still gives a short message.
  let from = Math.max(lineStart, position - WINDOW / 2);
  const to = Math.min(lineEnd, from + WINDOW);
  from = Math.max(lineStart, Math.min(from, to - WINDOW));
  const before = from > lineStart ? "…" : "";
  const after = to < lineEnd ? "…" : "";
  const shown = source.slice(from, to).replace(UNPRINTABLE, "?");
  const line = source.lastIndexOf("\n", position - 1) < 0
    ? ""
    : ` (line ${source.slice(0, position).split("\n").length}, column ${position - lineStart + 1})`;
  const message = `${TITLES[code]} at offset ${position}${line}: ${detail}\n` +
    `  ${before}${shown}${after}\n` +
    `  ${" ".repeat(before.length + position - from)}^`;
  throw new PolicyError(code, message, position);
}

function checkLength(text: string): void {
  // The UTF-8 length without encoding, as TextEncoder would write it: a code
  // unit below 0x80 is one byte, below 0x800 two, a surrogate pair four, a
  // lone surrogate three (U+FFFD), anything else three. No text of at most
  // MAX_POLICY_BYTES / 3 units can exceed the limit.
  if (text.length * 3 <= MAX_POLICY_BYTES) return;
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    const start = i;
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit < 0xdc00 && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4;
      i++;
    } else bytes += 3;
    if (bytes > MAX_POLICY_BYTES) {
      fail("too_long", text, start, `a policy is at most ${MAX_POLICY_BYTES} bytes of UTF-8`);
    }
  }
}

// ---------------------------------------------------------------------------
// Tokens

type Comparison = "==" | "!=" | "<" | "<=" | ">" | ">=";

type Token =
  | {
    readonly kind: "(" | ")" | "[" | "]" | "," | "and" | "or" | "not" | "in" | "end";
    readonly start: number;
    readonly end: number;
  }
  | { readonly kind: "op"; readonly op: Comparison; readonly start: number; readonly end: number }
  | {
    readonly kind: "literal";
    readonly value: string | number | boolean;
    readonly start: number;
    readonly end: number;
  }
  | { readonly kind: "path"; readonly path: Path; readonly start: number; readonly end: number };

/** `null` is `subject.identifier`; a string names an attribute. */
type Path = string | null;

const KEYWORDS: ReadonlySet<string> = new Set(["and", "or", "not", "in", "true", "false"]);
const WORD_START = /[A-Za-z_]/;
const WORD = /[A-Za-z0-9_]/;
/** An attribute name, as `normalizeAttributes` allows them. */
const ATTRIBUTE_CHAR = /[A-Za-z0-9_.-]/;
const MAX_ATTRIBUTE_NAME = 64;
const DIGIT = /[0-9]/;
const ESCAPES: Readonly<Record<string, string>> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};
const HEX4 = /^[0-9A-Fa-f]{4}$/;

/** A piece of the policy's text for an error message: in backticks, clipped, unprintables as "?". */
function quote(text: string): string {
  return "`" + (text.length > 32 ? text.slice(0, 32) + "…" : text).replace(UNPRINTABLE, "?") + "`";
}

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  const n = source.length;
  let i = 0;
  while (i < n) {
    const c = source[i];
    const start = i;
    if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      i++;
    } else if (c === "(" || c === ")" || c === "[" || c === "]" || c === ",") {
      tokens.push({ kind: c, start, end: ++i });
    } else if (c === "=" || c === "!" || c === "<" || c === ">") {
      const two = source[i + 1] === "=";
      if (c === "=" && !two) fail("syntax", source, start, 'write "==" to compare');
      if (c === "!" && !two) fail("syntax", source, start, 'write "not" to negate');
      const op = (two ? c + "=" : c) as Comparison;
      i += two ? 2 : 1;
      tokens.push({ kind: "op", op, start, end: i });
    } else if (c === '"') {
      i = readString(source, i, tokens);
    } else if (c === "-" || DIGIT.test(c)) {
      i = readInteger(source, i, tokens);
    } else if (WORD_START.test(c)) {
      i = readWord(source, i, tokens);
    } else if (c === "&") {
      fail("syntax", source, start, 'write "and" to join conditions');
    } else if (c === "|") {
      fail("syntax", source, start, 'write "or" to join conditions');
    } else if (c === "'") {
      fail("syntax", source, start, "text is double-quoted");
    } else {
      const code = source.codePointAt(i)!;
      const shown = code < 0x20 || code > 0x7e
        ? `U+${code.toString(16).toUpperCase().padStart(4, "0")}`
        : JSON.stringify(c);
      fail("syntax", source, start, `unexpected character ${shown}`);
    }
  }
  tokens.push({ kind: "end", start: n, end: n });
  return tokens;
}

function readString(source: string, start: number, tokens: Token[]): number {
  let value = "";
  let i = start + 1;
  let chunk = i;
  for (;;) {
    if (i >= source.length) fail("syntax", source, start, "text is not closed by a double quote");
    const c = source.charCodeAt(i);
    if (c === 0x22) break;
    if (c < 0x20) {
      fail("syntax", source, i, "a control character in text must be escaped (\\n, \\t, \\u0000)");
    }
    if (c !== 0x5c) {
      i++;
      continue;
    }
    value += source.slice(chunk, i);
    const e = source[i + 1];
    if (e === "u") {
      const hex = source.slice(i + 2, i + 6);
      if (!HEX4.test(hex)) fail("syntax", source, i, "\\u takes four hex digits");
      value += String.fromCharCode(parseInt(hex, 16));
      i += 6;
    } else if (e !== undefined && Object.hasOwn(ESCAPES, e)) {
      value += ESCAPES[e];
      i += 2;
    } else {
      fail(
        "syntax",
        source,
        i,
        'unknown escape; use \\", \\\\, \\/, \\b, \\f, \\n, \\r, \\t or \\uXXXX',
      );
    }
    chunk = i;
  }
  value += source.slice(chunk, i);
  tokens.push({ kind: "literal", value, start, end: i + 1 });
  return i + 1;
}

function readInteger(source: string, start: number, tokens: Token[]): number {
  let i = start;
  if (source[i] === "-") i++;
  const digits = i;
  while (i < source.length && DIGIT.test(source[i])) i++;
  if (i === digits) fail("syntax", source, start, 'expected digits after "-"');
  if (source[digits] === "0" && i - digits > 1) {
    fail("syntax", source, start, "an integer has no leading zero");
  }
  if (i < source.length && (WORD.test(source[i]) || source[i] === ".")) {
    fail("syntax", source, i, "an integer ends with its digits (only integers exist)");
  }
  const value = Number(source.slice(start, i));
  if (!Number.isSafeInteger(value)) {
    fail("syntax", source, start, "integer out of range (at most 2^53 - 1 either way)");
  }
  tokens.push({ kind: "literal", value: value === 0 ? 0 : value, start, end: i });
  return i;
}

function readWord(source: string, start: number, tokens: Token[]): number {
  let i = start + 1;
  while (i < source.length && WORD.test(source[i])) i++;
  const word = source.slice(start, i);
  if (KEYWORDS.has(word)) {
    if (word === "true" || word === "false") {
      tokens.push({ kind: "literal", value: word === "true", start, end: i });
    } else {
      tokens.push({ kind: word as "and" | "or" | "not" | "in", start, end: i });
    }
    return i;
  }
  if (word !== "subject") {
    const lower = word.toLowerCase();
    fail(
      "syntax",
      source,
      start,
      KEYWORDS.has(lower) || lower === "subject"
        ? `write ${JSON.stringify(lower)} in lower case`
        : `unknown name ${quote(word)}: paths start with "subject."`,
    );
  }
  if (source[i] !== ".") {
    fail("syntax", source, i, 'expected "." and an attribute name after "subject"');
  }
  const nameStart = ++i;
  if (i >= source.length || !WORD_START.test(source[i])) {
    fail("syntax", source, i, "expected an attribute name (a letter or _ first)");
  }
  while (i < source.length && ATTRIBUTE_CHAR.test(source[i])) i++;
  if (i - nameStart > MAX_ATTRIBUTE_NAME) {
    fail(
      "syntax",
      source,
      nameStart,
      `an attribute name is at most ${MAX_ATTRIBUTE_NAME} characters`,
    );
  }
  const name = source.slice(nameStart, i);
  tokens.push({ kind: "path", path: name === "identifier" ? null : name, start, end: i });
  return i;
}

// ---------------------------------------------------------------------------
// Expressions

type Scalar = string | number | boolean;

/** One side of a comparison. */
type Operand =
  | { readonly kind: "literal"; readonly value: Scalar }
  | { readonly kind: "identifier" }
  | { readonly kind: "attribute"; readonly name: string };

interface Explained {
  readonly value: boolean;
  readonly reason: string;
}

/**
 * The value an operand stands for, or undefined for a missing attribute.
 * `Object.hasOwn` first, so that a name such as `constructor` or `__proto__`
 * never reaches Object.prototype, even with attributes from an ordinary
 * object rather than `normalizeAttributes`.
 */
function resolve(operand: Operand, subject: Subject): AttributeValue | undefined {
  switch (operand.kind) {
    case "literal":
      return operand.value;
    case "identifier":
      return subject.identifier;
    case "attribute":
      return Object.hasOwn(subject.attributes, operand.name)
        ? subject.attributes[operand.name]
        : undefined;
  }
}

function pathText(operand: Operand): string {
  return operand.kind === "attribute"
    ? `subject.${operand.name}`
    : operand.kind === "identifier"
    ? "subject.identifier"
    : show(operand.value);
}

/**
 * Characters that JSON.stringify leaves as they are but a terminal or a log
 * viewer would act on: C1 controls, line separators, bidirectional marks
 * and overrides.
 */
const TERMINAL_UNSAFE = /[\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** @internal `text` with {@link TERMINAL_UNSAFE} characters written as `\uXXXX`. */
export function printable(text: string): string {
  return text.replace(
    TERMINAL_UNSAFE,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** @internal A value as JSON, safe to print: control and {@link TERMINAL_UNSAFE} characters escaped. */
export function jsonText(value: string | number | boolean): string {
  return printable(JSON.stringify(value));
}

/** A value for a reason: JSON-quoted (so control characters are escaped) and clipped. */
function show(value: unknown): string {
  if (typeof value === "string") {
    return jsonText(value.length > 64 ? value.slice(0, 64) : value) +
      (value.length > 64 ? "…" : "");
  }
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (Array.isArray(value)) {
    const items = value.slice(0, 8).map(show).join(", ");
    return `[${items}${value.length > 8 ? `, … (${value.length} items)` : ""}]`;
  }
  return value === null ? "null" : typeof value;
}

function typeNoun(value: unknown): string {
  if (typeof value === "string") return "text";
  if (typeof value === "number") return "an integer";
  if (typeof value === "boolean") return "a boolean";
  if (Array.isArray(value)) return "a list";
  return value === null ? "null" : `a ${typeof value}`;
}

function missing(operand: Operand): string {
  return `subject has no attribute ${
    JSON.stringify(operand.kind === "attribute" ? operand.name : "")
  }`;
}

function wrongType(operand: Operand, value: unknown, expected: string): string {
  return `${pathText(operand)} is ${typeNoun(value)} (${show(value)}), not ${expected}`;
}

/** The clause's own text, whitespace collapsed and clipped, for reasons. */
function clauseText(source: string, start: number, end: number): string {
  const text = source.slice(start, end).replace(/\s+/g, " ").replace(UNPRINTABLE, "?");
  return text.length > 120 ? text.slice(0, 119) + "…" : text;
}

/** Most clause reasons joined into one, so that a reason stays a log line. */
const MAX_REASONS = 8;

function joinReasons(reasons: readonly string[]): string {
  const shown = reasons.slice(0, MAX_REASONS).join("; ");
  return reasons.length > MAX_REASONS
    ? `${shown}; … and ${reasons.length - MAX_REASONS} more clauses`
    : shown;
}

abstract class Expr {
  constructor(readonly start: number, readonly end: number) {}
  /** The value for `subject`; allocates nothing. */
  abstract test(subject: Subject): boolean;
  /** The value (always `test`'s) and why. */
  abstract explain(subject: Subject, source: string): Explained;
}

class Constant extends Expr {
  constructor(readonly value: boolean, start: number, end: number) {
    super(start, end);
  }
  test(_subject: Subject): boolean {
    return this.value;
  }
  explain(_subject: Subject, source: string): Explained {
    return {
      value: this.value,
      reason: `${clauseText(source, this.start, this.end)}: ${this.value ? "always" : "never"}`,
    };
  }
}

class Flag extends Expr {
  constructor(readonly operand: Operand, start: number, end: number) {
    super(start, end);
  }
  test(subject: Subject): boolean {
    return resolve(this.operand, subject) === true;
  }
  explain(subject: Subject, source: string): Explained {
    const value = this.test(subject);
    const v = resolve(this.operand, subject);
    const fact = v === undefined
      ? missing(this.operand)
      : typeof v === "boolean"
      ? `${pathText(this.operand)} is ${v}`
      : wrongType(this.operand, v, "a boolean");
    return { value, reason: `${clauseText(source, this.start, this.end)}: ${fact}` };
  }
}

const VERBS: Readonly<Record<Comparison, readonly [string, string]>> = {
  "==": ["equals", "does not equal"],
  "!=": ["differs from", "equals"],
  "<": ["is less than", "is not less than"],
  "<=": ["is at most", "is more than"],
  ">": ["is more than", "is not more than"],
  ">=": ["is at least", "is less than"],
};

class Compare extends Expr {
  constructor(
    readonly op: Comparison,
    readonly left: Operand,
    readonly right: Operand,
    start: number,
    end: number,
  ) {
    super(start, end);
  }

  test(subject: Subject): boolean {
    const a = resolve(this.left, subject);
    const b = resolve(this.right, subject);
    if (a === undefined || b === undefined) return false;
    switch (this.op) {
      case "==":
        return typeof a !== "object" && typeof a === typeof b && a === b;
      case "!=":
        return typeof a !== "object" && typeof a === typeof b && a !== b;
      case "<":
        return typeof a === "number" && typeof b === "number" && a < b;
      case "<=":
        return typeof a === "number" && typeof b === "number" && a <= b;
      case ">":
        return typeof a === "number" && typeof b === "number" && a > b;
      case ">=":
        return typeof a === "number" && typeof b === "number" && a >= b;
    }
  }

  explain(subject: Subject, source: string): Explained {
    const value = this.test(subject);
    return {
      value,
      reason: `${clauseText(source, this.start, this.end)}: ${this.#fact(subject, value)}`,
    };
  }

  #fact(subject: Subject, value: boolean): string {
    const a = resolve(this.left, subject);
    const b = resolve(this.right, subject);
    if (a === undefined) return missing(this.left);
    if (b === undefined) return missing(this.right);
    if (this.op !== "==" && this.op !== "!=") {
      if (typeof a !== "number") return wrongType(this.left, a, "an integer");
      if (typeof b !== "number") return wrongType(this.right, b, "an integer");
    } else if (typeof a === "object" || typeof b === "object" || typeof a !== typeof b) {
      const scalar = "text, an integer or a boolean";
      if (this.right.kind === "literal") return wrongType(this.left, a, typeNoun(b));
      if (this.left.kind === "literal") return wrongType(this.right, b, typeNoun(a));
      if (typeof a === "object") return wrongType(this.left, a, scalar);
      if (typeof b === "object") return wrongType(this.right, b, scalar);
      return `${pathText(this.left)} is ${typeNoun(a)} (${show(a)}) but ${
        pathText(this.right)
      } is ${typeNoun(b)} (${show(b)})`;
    }
    return `${show(a)} ${VERBS[this.op][value ? 0 : 1]} ${show(b)}`;
  }
}

/** `operand in [..]`: the list literal as a set, so membership costs the same for any length. */
class InList extends Expr {
  readonly #set: ReadonlySet<string | number>;
  constructor(
    readonly operand: Operand,
    readonly items: readonly (string | number)[],
    start: number,
    end: number,
  ) {
    super(start, end);
    this.#set = new Set(items);
  }

  test(subject: Subject): boolean {
    const v = resolve(this.operand, subject);
    return (typeof v === "string" || typeof v === "number") && this.#set.has(v);
  }

  explain(subject: Subject, source: string): Explained {
    const value = this.test(subject);
    const v = resolve(this.operand, subject);
    const holds = this.items.length === 0
      ? "text or integers"
      : typeof this.items[0] === "string"
      ? "text"
      : "an integer";
    const fact = v === undefined
      ? missing(this.operand)
      : value
      ? `${show(v)} is in the list`
      : this.items.length === 0
      ? "the list is empty"
      : typeNoun(v) !== holds
      ? wrongType(this.operand, v, holds)
      : `${show(v)} is not in the list`;
    return { value, reason: `${clauseText(source, this.start, this.end)}: ${fact}` };
  }
}

/** `text in subject.list`. */
class Contains extends Expr {
  constructor(readonly item: Operand, readonly list: Operand, start: number, end: number) {
    super(start, end);
  }

  test(subject: Subject): boolean {
    const list = resolve(this.list, subject);
    if (!Array.isArray(list)) return false;
    const item = resolve(this.item, subject);
    return typeof item === "string" && list.includes(item);
  }

  explain(subject: Subject, source: string): Explained {
    const value = this.test(subject);
    const list = resolve(this.list, subject);
    const item = resolve(this.item, subject);
    const name = pathText(this.list);
    const fact = list === undefined
      ? missing(this.list)
      : !Array.isArray(list)
      ? wrongType(this.list, list, "a list")
      : item === undefined
      ? missing(this.item)
      : typeof item !== "string"
      ? wrongType(this.item, item, "text")
      : value
      ? `${name} contains ${show(item)}`
      : `${name} ${show(list)} does not contain ${show(item)}`;
    return { value, reason: `${clauseText(source, this.start, this.end)}: ${fact}` };
  }
}

class Not extends Expr {
  constructor(readonly inner: Expr, start: number, end: number) {
    super(start, end);
  }
  test(subject: Subject): boolean {
    return !this.inner.test(subject);
  }
  explain(subject: Subject, source: string): Explained {
    const inner = this.inner.explain(subject, source);
    return { value: !inner.value, reason: `not (${inner.reason})` };
  }
}

class And extends Expr {
  constructor(readonly items: readonly Expr[], start: number, end: number) {
    super(start, end);
  }
  test(subject: Subject): boolean {
    for (const item of this.items) if (!item.test(subject)) return false;
    return true;
  }
  /** False: the first false clause decided. True: every clause did. */
  explain(subject: Subject, source: string): Explained {
    const reasons: string[] = [];
    for (const item of this.items) {
      const e = item.explain(subject, source);
      if (!e.value) return e;
      reasons.push(e.reason);
    }
    return { value: true, reason: joinReasons(reasons) };
  }
}

class Or extends Expr {
  constructor(readonly items: readonly Expr[], start: number, end: number) {
    super(start, end);
  }
  test(subject: Subject): boolean {
    for (const item of this.items) if (item.test(subject)) return true;
    return false;
  }
  /** True: the first true clause decided. False: every clause did. */
  explain(subject: Subject, source: string): Explained {
    const reasons: string[] = [];
    for (const item of this.items) {
      const e = item.explain(subject, source);
      if (e.value) return e;
      reasons.push(e.reason);
    }
    return { value: false, reason: joinReasons(reasons) };
  }
}

// ---------------------------------------------------------------------------
// Parser

/** An operand with where it is in the text. */
interface Placed {
  readonly operand: Operand;
  readonly start: number;
  readonly end: number;
}

const IDENTIFIER = /^I[0-9a-f]{64}$/;

function literalType(operand: Operand): "text" | "an integer" | "a boolean" | null {
  if (operand.kind === "identifier") return "text";
  if (operand.kind === "attribute") return null;
  return typeNoun(operand.value) as "text" | "an integer" | "a boolean";
}

function describe(token: Token, source: string): string {
  if (token.kind === "end") return "the end of the policy";
  return quote(source.slice(token.start, token.end));
}

/** Recursive descent over the tokens; recursion only through "(" and "not", both bounded by the depth limit. */
class Parser {
  readonly #source: string;
  readonly #tokens: Token[];
  #at = 0;
  #depth = 0;
  readonly #attributes = new Set<string>();

  constructor(source: string, tokens: Token[]) {
    this.#source = source;
    this.#tokens = tokens;
  }

  /** Attribute names read, in order of first use. */
  get attributes(): string[] {
    return [...this.#attributes];
  }

  parse(): Expr {
    const expr = this.#or();
    const t = this.#peek();
    if (t.kind !== "end") {
      this.#fail(
        t.start,
        `unexpected ${describe(t, this.#source)}; join conditions with "and" or "or"`,
      );
    }
    return expr;
  }

  #fail(position: number, detail: string): never {
    fail("syntax", this.#source, position, detail);
  }

  #peek(): Token {
    return this.#tokens[this.#at];
  }

  #next(): Token {
    return this.#tokens[this.#at++];
  }

  #enter(token: Token): void {
    if (++this.#depth > MAX_POLICY_DEPTH) {
      fail(
        "too_deep",
        this.#source,
        token.start,
        `at most ${MAX_POLICY_DEPTH} levels of parentheses and "not"`,
      );
    }
  }

  #or(): Expr {
    const first = this.#and();
    if (this.#peek().kind !== "or") return first;
    const items = [first];
    while (this.#peek().kind === "or") {
      this.#next();
      items.push(this.#and());
    }
    return new Or(items, first.start, items[items.length - 1].end);
  }

  #and(): Expr {
    const first = this.#not();
    if (this.#peek().kind !== "and") return first;
    const items = [first];
    while (this.#peek().kind === "and") {
      this.#next();
      items.push(this.#not());
    }
    return new And(items, first.start, items[items.length - 1].end);
  }

  #not(): Expr {
    const t = this.#peek();
    if (t.kind !== "not") return this.#condition();
    this.#next();
    this.#enter(t);
    const inner = this.#not();
    this.#depth--;
    return new Not(inner, t.start, inner.end);
  }

  #condition(): Expr {
    const t = this.#peek();
    if (t.kind === "(") {
      this.#next();
      this.#enter(t);
      const inner = this.#or();
      const close = this.#peek();
      if (close.kind !== ")") {
        this.#fail(
          close.start,
          `expected ")" to close the "(" at offset ${t.start}, found ${
            describe(close, this.#source)
          }`,
        );
      }
      this.#next();
      this.#depth--;
      const after = this.#peek();
      if (after.kind === "op" || after.kind === "in") {
        this.#fail(after.start, "only values compare; a parenthesized condition is true or false");
      }
      return inner;
    }
    if (t.kind !== "literal" && t.kind !== "path") {
      this.#fail(
        t.start,
        t.kind === "["
          ? 'a list can only follow "in"'
          : `expected a condition (a comparison, "not" or "(") but found ${
            describe(t, this.#source)
          }`,
      );
    }
    const left = this.#operand();
    const op = this.#peek();
    let expr: Expr;
    if (op.kind === "op") {
      this.#next();
      expr = this.#comparison(op.op, left, this.#operand());
    } else if (op.kind === "in") {
      this.#next();
      expr = this.#in(left);
    } else if (op.kind === "not" && this.#tokens[this.#at + 1].kind === "in") {
      this.#fail(op.start, 'write "not (x in y)" rather than "x not in y"');
    } else if (
      op.kind !== "literal" && op.kind !== "path" && op.kind !== "[" && op.kind !== "(" &&
      (left.operand.kind === "attribute" ||
        left.operand.kind === "literal" && typeof left.operand.value === "boolean")
    ) {
      // A condition on its own: a boolean attribute that must be true, or a constant.
      return left.operand.kind === "attribute"
        ? new Flag(left.operand, left.start, left.end)
        : new Constant(left.operand.value as boolean, left.start, left.end);
    } else {
      this.#fail(
        op.start,
        `expected ==, !=, <, <=, >, >= or in after ${describe(t, this.#source)}, found ${
          describe(op, this.#source)
        }`,
      );
    }
    const after = this.#peek();
    if (after.kind === "op" || after.kind === "in") {
      this.#fail(after.start, 'comparisons do not chain; join them with "and"');
    }
    return expr;
  }

  #operand(): Placed {
    const t = this.#next();
    if (t.kind === "literal") {
      return { operand: { kind: "literal", value: t.value }, start: t.start, end: t.end };
    }
    if (t.kind === "path") {
      if (t.path === null) return { operand: { kind: "identifier" }, start: t.start, end: t.end };
      this.#attributes.add(t.path);
      return { operand: { kind: "attribute", name: t.path }, start: t.start, end: t.end };
    }
    this.#fail(
      t.start,
      t.kind === "["
        ? 'a list can only follow "in"'
        : `expected a value (subject.<attribute>, "text", an integer, true or false) but found ${
          describe(t, this.#source)
        }`,
    );
  }

  #comparison(op: Comparison, left: Placed, right: Placed): Expr {
    const a = literalType(left.operand);
    const b = literalType(right.operand);
    if (op !== "==" && op !== "!=") {
      for (const [side, type] of [[left, a], [right, b]] as const) {
        if (type !== null && type !== "an integer") {
          this.#fail(side.start, `${op} compares integers, and ${this.#text(side)} is ${type}`);
        }
      }
    } else if (a !== null && b !== null && a !== b) {
      this.#fail(right.start, `${this.#text(left)} is ${a} but ${this.#text(right)} is ${b}`);
    }
    this.#checkIdentifier(left, right);
    this.#checkIdentifier(right, left);
    return new Compare(op, left.operand, right.operand, left.start, right.end);
  }

  /** A literal compared with subject.identifier must be an identifier: anything else never matches. */
  #checkIdentifier(path: Placed, literal: Placed): void {
    if (path.operand.kind !== "identifier" || literal.operand.kind !== "literal") return;
    if (typeof literal.operand.value === "string" && IDENTIFIER.test(literal.operand.value)) return;
    this.#fail(
      literal.start,
      `${this.#text(literal)} is not an identifier ("I" and 64 lowercase hex digits)`,
    );
  }

  #in(left: Placed): Expr {
    const type = literalType(left.operand);
    const t = this.#peek();
    if (t.kind === "[") {
      if (type === "a boolean") this.#fail(left.start, "lists hold text or integers, not booleans");
      return this.#list(left, type);
    }
    const right = this.#operand();
    if (right.operand.kind !== "attribute") {
      this.#fail(
        right.start,
        right.operand.kind === "identifier"
          ? "subject.identifier is text, not a list"
          : `"in" takes a list: [..] or a list attribute (subject.<attribute>)`,
      );
    }
    if (type !== null && type !== "text") {
      this.#fail(left.start, `list attributes hold text, and ${this.#text(left)} is ${type}`);
    }
    return new Contains(left.operand, right.operand, left.start, right.end);
  }

  #list(left: Placed, type: string | null): Expr {
    this.#next(); // "["
    const items: (string | number)[] = [];
    let itemType: string | null = null;
    if (this.#peek().kind === "]") {
      return new InList(left.operand, items, left.start, this.#next().end);
    }
    for (;;) {
      const t = this.#next();
      if (t.kind !== "literal" || typeof t.value === "boolean") {
        this.#fail(
          t.start,
          `expected a list item (text or an integer) but found ${describe(t, this.#source)}`,
        );
      }
      const noun = typeNoun(t.value);
      if (itemType === null) {
        itemType = noun;
        if (type !== null && type !== itemType) {
          this.#fail(t.start, `${this.#text(left)} is ${type} but the list holds ${itemType}`);
        }
      } else if (noun !== itemType) {
        this.#fail(t.start, `a list holds text or integers, not both`);
      }
      if (left.operand.kind === "identifier" && !IDENTIFIER.test(t.value as string)) {
        this.#fail(
          t.start,
          `${
            quote(this.#source.slice(t.start, t.end))
          } is not an identifier ("I" and 64 lowercase hex digits)`,
        );
      }
      items.push(t.value);
      const sep = this.#next();
      if (sep.kind === "]") return new InList(left.operand, items, left.start, sep.end);
      if (sep.kind !== ",") {
        this.#fail(
          sep.start,
          `expected "," or "]" in the list, found ${describe(sep, this.#source)}`,
        );
      }
    }
  }

  #text(placed: Placed): string {
    return quote(this.#source.slice(placed.start, placed.end));
  }
}
