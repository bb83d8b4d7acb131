/**
 * The expression tree a policy parses into: nodes that evaluate against a
 * {@link Subject} (`test`, the per-message path, allocating nothing) and
 * explain their value (`explain`, for logs and the what-if command), and
 * the helpers that show values and policy text safely in those reasons.
 *
 * @module
 */
import type { AttributeValue } from "../credential/attributes.ts";
import type { Comparison } from "./lexer.ts";
import type { Subject } from "./policy.ts";

type Scalar = string | number | boolean;

/**
 * One side of a comparison.
 * @internal
 */
export type Operand =
  | { readonly kind: "literal"; readonly value: Scalar }
  | { readonly kind: "identifier" }
  | { readonly kind: "attribute"; readonly name: string };

/**
 * A node's value and why.
 * @internal
 */
export interface Explained {
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
 * What a caret line may show: control, separator and bidi characters become "?", one for one.
 * @internal
 */
export const UNPRINTABLE =
  // deno-lint-ignore no-control-regex
  /[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Characters that JSON.stringify leaves as they are but a terminal or a log
 * viewer would act on: C1 controls, line separators, bidirectional marks
 * and overrides.
 */
const TERMINAL_UNSAFE = /[\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * `text` with {@link TERMINAL_UNSAFE} characters written as `\uXXXX`.
 * @internal
 */
export function printable(text: string): string {
  return text.replace(
    TERMINAL_UNSAFE,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/**
 * A value as JSON, safe to print: control and {@link TERMINAL_UNSAFE} characters escaped.
 * @internal
 */
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

/**
 * The kind of `value`, as reasons and error messages name it ("text", "an integer", ...).
 * @internal
 */
export function typeNoun(value: unknown): string {
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

/**
 * A node of a parsed policy, with where its clause is in the text.
 * @internal
 */
export abstract class Expr {
  constructor(readonly start: number, readonly end: number) {}
  /** The value for `subject`; allocates nothing. */
  abstract test(subject: Subject): boolean;
  /** The value (always `test`'s) and why. */
  abstract explain(subject: Subject, source: string): Explained;
}

/**
 * `true` or `false` on its own.
 * @internal
 */
export class Constant extends Expr {
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

/**
 * `subject.<attribute>` on its own: a boolean attribute that must be true.
 * @internal
 */
export class Flag extends Expr {
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

/**
 * `operand op operand`, one of `==`, `!=`, `<`, `<=`, `>`, `>=`.
 * @internal
 */
export class Compare extends Expr {
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

/**
 * `operand in [..]`: the list literal as a set, so membership costs the same for any length.
 * @internal
 */
export class InList extends Expr {
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

/**
 * `text in subject.list`.
 * @internal
 */
export class Contains extends Expr {
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

/**
 * `not expr`.
 * @internal
 */
export class Not extends Expr {
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

/**
 * `expr and expr ...`.
 * @internal
 */
export class And extends Expr {
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

/**
 * `expr or expr ...`.
 * @internal
 */
export class Or extends Expr {
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
