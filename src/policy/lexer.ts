/**
 * The policy language's tokens, and {@link tokenize}, which turns a
 * policy's text into them or throws a positioned PolicyError.
 *
 * @module
 */
import { fail, quote } from "./parser.ts";

/**
 * A comparison operator.
 * @internal
 */
export type Comparison = "==" | "!=" | "<" | "<=" | ">" | ">=";

/**
 * A token, with where it is in the text (`start` inclusive, `end` exclusive).
 * @internal
 */
export type Token =
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

/**
 * `null` is `subject.identifier`; a string names an attribute.
 * @internal
 */
export type Path = string | null;

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

/**
 * The tokens of `source`, ending with an `end` token.
 * @throws {PolicyError} `syntax`, at the first character that starts no token.
 * @internal
 */
export function tokenize(source: string): Token[] {
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
