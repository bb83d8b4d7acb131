/**
 * The recursive-descent parser from tokens to an expression tree, and the
 * positioned error every syntax and limit error of a policy goes through.
 *
 * @module
 */
import { PolicyError, type PolicyErrorCode } from "../errors.ts";
import {
  And,
  Compare,
  Constant,
  Contains,
  type Expr,
  Flag,
  InList,
  Not,
  type Operand,
  Or,
  typeNoun,
  UNPRINTABLE,
} from "./expression.ts";
import type { Comparison, Token } from "./lexer.ts";

// ---------------------------------------------------------------------------
// Errors

const WINDOW = 72;
const TITLES: Readonly<Record<PolicyErrorCode, string>> = {
  syntax: "policy syntax error",
  too_long: "policy too long",
  too_deep: "policy nested too deeply",
};

/**
 * Throws a PolicyError `code` at `position` of `source`, its message with
 * the line (windowed) and a caret under the position.
 * @internal
 */
export function fail(
  code: PolicyErrorCode,
  source: string,
  position: number,
  detail: string,
): never {
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

/**
 * Throws `too_long` when `text` is more than `maxBytes` bytes of UTF-8.
 * @internal
 */
export function checkLength(text: string, maxBytes: number): void {
  // The UTF-8 length without encoding, as TextEncoder would write it: a code
  // unit below 0x80 is one byte, below 0x800 two, a surrogate pair four, a
  // lone surrogate three (U+FFFD), anything else three. No text of at most
  // maxBytes / 3 units can exceed the limit.
  if (text.length * 3 <= maxBytes) return;
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
    if (bytes > maxBytes) {
      fail("too_long", text, start, `a policy is at most ${maxBytes} bytes of UTF-8`);
    }
  }
}

/**
 * A piece of the policy's text for an error message: in backticks, clipped, unprintables as "?".
 * @internal
 */
export function quote(text: string): string {
  return "`" + (text.length > 32 ? text.slice(0, 32) + "…" : text).replace(UNPRINTABLE, "?") + "`";
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

/**
 * Recursive descent over the tokens; recursion only through "(" and "not", both bounded by the depth limit.
 * @internal
 */
export class Parser {
  readonly #source: string;
  readonly #tokens: Token[];
  readonly #maxDepth: number;
  #at = 0;
  #depth = 0;
  readonly #attributes = new Set<string>();

  /** `maxDepth`: the deepest nesting of parentheses and "not", together. */
  constructor(source: string, tokens: Token[], maxDepth: number) {
    this.#source = source;
    this.#tokens = tokens;
    this.#maxDepth = maxDepth;
  }

  /** Attribute names read, in order of first use. */
  get attributes(): string[] {
    return [...this.#attributes];
  }

  /**
   * The tree of the whole policy.
   * @throws {PolicyError} `syntax` or `too_deep`, with the position of the problem.
   */
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
    if (++this.#depth > this.#maxDepth) {
      fail(
        "too_deep",
        this.#source,
        token.start,
        `at most ${this.#maxDepth} levels of parentheses and "not"`,
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
