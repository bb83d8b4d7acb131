/**
 * Property tests of the policy language.
 *
 * - Robustness: token soup (policy tokens, near-misses and junk, in random
 *   order with random spacing), random strings of any UTF-16 code units and
 *   random bytes decoded as UTF-8 never crash the parser: it returns a
 *   policy (which then evaluates without throwing) or throws a PolicyError
 *   whose position lies inside the text and whose message has the caret
 *   line. Nothing else.
 * - Meaning: well-formed policies are generated as trees, printed (with the
 *   fewest parentheses precedence allows, extra ones at random, random
 *   spacing and string escapes), parsed, and evaluated against random
 *   attribute sets; the result must equal that of the small reference
 *   evaluator below, written from the semantics in `policy.ts`'s module
 *   documentation rather than from its code. Generated attributes are
 *   missing, or of any type, so missing attributes and type mismatches are
 *   exercised as often as matches.
 *
 * Run count: 10,000 per property by default, PROPERTY_RUNS to change it;
 * seed: PROPERTY_SEED (see `src/testdata/mutations.ts`).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import type { Attributes } from "../credential/attributes.ts";
import type { Credential } from "../credential/credential.ts";
import { PolicyError } from "../errors.ts";
import { describeConfiguration, propertyParameters } from "../testdata/mutations.ts";
import { MAX_POLICY_BYTES, parsePolicy, type Policy, type Subject } from "./policy.ts";

console.log(describeConfiguration("policy_property_test"));

const RUNS = 10_000;
const ID_A = "I" + "0a".repeat(32);
const ID_B = "I" + "b1".repeat(32);

// ---------------------------------------------------------------------------
// Values shared by attributes and literals, so that comparisons often match

const TEXTS = ["edge", "basic", "", 'q"uote', "back\\slash", "é😀", "tab\tnl\n", ID_A, ID_B];
const INTEGERS = [-1, 0, 1, 2, 1000, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER];
const NAMES = ["role", "tier", "n", "m", "flag", "caps", "identifier", "a.b", "x-y", "constructor"];

const text = fc.constantFrom(...TEXTS);
const integer = fc.constantFrom(...INTEGERS);
const identifierText = fc.constantFrom(ID_A, ID_B);
/**
 * Names a policy reads. Subjects may carry an attribute named `identifier`
 * too, which no policy can read: `subject.identifier` is the identity.
 */
const name = fc.constantFrom(...NAMES.filter((n) => n !== "identifier"));

/** Any attribute value: text, integer, boolean or list of text. */
const attributeValue = fc.oneof(
  text,
  integer,
  fc.boolean(),
  // Frozen as a credential's lists are, or not (admits() must then not remember).
  fc.tuple(fc.array(text, { maxLength: 4 }), fc.boolean()).map(([list, freeze]) =>
    freeze ? Object.freeze(list) : list
  ),
);

/** A subject: either identifier, and each name missing or of any type. */
const subjectArbitrary: fc.Arbitrary<Subject> = fc.record({
  identifier: identifierText,
  attributes: fc.dictionary(fc.constantFrom(...NAMES), attributeValue, { maxKeys: NAMES.length })
    .map((record) => Object.freeze(Object.assign(Object.create(null), record)) as Attributes),
});

// ---------------------------------------------------------------------------
// Policy trees

type Operand =
  | { k: "attr"; name: string }
  | { k: "id" }
  | { k: "lit"; value: string | number | boolean };

type Ast =
  | { k: "or" | "and"; items: Ast[] }
  | { k: "not"; inner: Ast }
  | { k: "paren"; inner: Ast }
  | { k: "cmp"; op: "==" | "!=" | "<" | "<=" | ">" | ">="; left: Operand; right: Operand }
  | { k: "inlist"; left: Operand; items: (string | number)[] }
  | { k: "contains"; item: Operand; list: string }
  | { k: "flag"; name: string }
  | { k: "const"; value: boolean };

const attr = name.map((n): Operand => ({ k: "attr", name: n }));
const id: fc.Arbitrary<Operand> = fc.constant({ k: "id" });
const lit = <T extends string | number | boolean>(a: fc.Arbitrary<T>) =>
  a.map((value): Operand => ({ k: "lit", value }));
const swap = ([a, b]: [Operand, Operand], flip: boolean): [Operand, Operand] =>
  flip ? [b, a] : [a, b];

/** Comparisons the parser accepts: the sides' types agree wherever the text shows them. */
const comparison: fc.Arbitrary<Ast> = fc.oneof(
  // ordering: integers or attributes
  fc.record({
    k: fc.constant("cmp" as const),
    op: fc.constantFrom("<" as const, "<=" as const, ">" as const, ">=" as const),
    left: fc.oneof(attr, lit(integer)),
    right: fc.oneof(attr, lit(integer)),
  }),
  // equality with an attribute on at least one side
  fc.tuple(
    fc.constantFrom("==" as const, "!=" as const),
    attr,
    fc.oneof(attr, lit(text), lit(integer), lit(fc.boolean())),
    fc.boolean(),
  ).map(([op, a, b, flip]): Ast => {
    const [left, right] = swap([a, b], flip);
    return { k: "cmp", op, left, right };
  }),
  // equality with subject.identifier
  fc.tuple(
    fc.constantFrom("==" as const, "!=" as const),
    fc.oneof(id, attr, lit(identifierText)),
    fc.boolean(),
  ).map(([op, other, flip]): Ast => {
    const [left, right] = swap([{ k: "id" }, other], flip);
    return { k: "cmp", op, left, right };
  }),
  // equality between literals of the same type
  fc.oneof(
    fc.tuple(lit(text), lit(text)),
    fc.tuple(lit(integer), lit(integer)),
    fc.tuple(lit(fc.boolean()), lit(fc.boolean())),
  ).chain(([left, right]) =>
    fc.constantFrom("==" as const, "!=" as const).map((op): Ast => ({ k: "cmp", op, left, right }))
  ),
  // in a list literal
  fc.oneof(
    fc.record({
      k: fc.constant("inlist" as const),
      left: fc.oneof(attr, lit(text)),
      items: fc.array(text, { maxLength: 5 }) as fc.Arbitrary<(string | number)[]>,
    }),
    fc.record({
      k: fc.constant("inlist" as const),
      left: fc.oneof(attr, lit(integer)),
      items: fc.array(integer, { maxLength: 5 }) as fc.Arbitrary<(string | number)[]>,
    }),
    fc.record({
      k: fc.constant("inlist" as const),
      left: fc.oneof(id, attr),
      items: fc.array(identifierText, { maxLength: 3 }) as fc.Arbitrary<(string | number)[]>,
    }),
  ),
  // in a list attribute
  fc.record({
    k: fc.constant("contains" as const),
    item: fc.oneof(attr, id, lit(text)),
    list: name,
  }),
  name.map((n): Ast => ({ k: "flag", name: n })),
  fc.boolean().map((value): Ast => ({ k: "const", value })),
);

const { tree } = fc.letrec<{ tree: Ast }>((tie) => ({
  tree: fc.oneof(
    { depthSize: "small", withCrossShrink: true, maxDepth: 5 },
    comparison,
    fc.record({
      k: fc.constantFrom("or" as const, "and" as const),
      items: fc.array(tie("tree"), { minLength: 2, maxLength: 4 }),
    }),
    fc.record({ k: fc.constant("not" as const), inner: tie("tree") }),
    fc.record({ k: fc.constant("paren" as const), inner: tie("tree") }),
  ),
}));

// ---------------------------------------------------------------------------
// Printing

/** Text in double quotes: JSON's escapes, or every character as \uXXXX. */
function printText(value: string, unicode: boolean): string {
  if (!unicode) return JSON.stringify(value);
  let out = '"';
  for (let i = 0; i < value.length; i++) {
    out += "\\u" + value.charCodeAt(i).toString(16).padStart(4, "0");
  }
  return out + '"';
}

function printOperand(operand: Operand, unicode: boolean): string {
  switch (operand.k) {
    case "attr":
      return `subject.${operand.name}`;
    case "id":
      return "subject.identifier";
    case "lit":
      return typeof operand.value === "string"
        ? printText(operand.value, unicode)
        : String(operand.value);
  }
}

const OR = 1, AND = 2, NOT = 3;

/** `ast` as policy text, parenthesized only where precedence requires (and where it has a paren node). */
function print(ast: Ast, context: number, unicode: boolean): string {
  const p = (inner: string, own: number) => own < context ? `(${inner})` : inner;
  switch (ast.k) {
    case "or":
      return p(ast.items.map((item) => print(item, AND, unicode)).join(" or "), OR);
    case "and":
      return p(ast.items.map((item) => print(item, NOT, unicode)).join(" and "), AND);
    case "not":
      return p(`not ${print(ast.inner, NOT, unicode)}`, NOT);
    case "paren":
      return `(${print(ast.inner, OR, unicode)})`;
    case "cmp":
      return `${printOperand(ast.left, unicode)} ${ast.op} ${printOperand(ast.right, unicode)}`;
    case "inlist": {
      const items = ast.items.map((item) =>
        typeof item === "string" ? printText(item, unicode) : String(item)
      );
      return `${printOperand(ast.left, unicode)} in [${items.join(", ")}]`;
    }
    case "contains":
      return `${printOperand(ast.item, unicode)} in subject.${ast.list}`;
    case "flag":
      return `subject.${ast.name}`;
    case "const":
      return String(ast.value);
  }
}

// ---------------------------------------------------------------------------
// The reference evaluator

type Kind = "missing" | "text" | "integer" | "boolean" | "list";

function kindOf(value: unknown): Kind {
  if (value === undefined) return "missing";
  if (Array.isArray(value)) return "list";
  return typeof value === "string" ? "text" : typeof value === "number" ? "integer" : "boolean";
}

function valueOf(operand: Operand, subject: Subject): unknown {
  if (operand.k === "lit") return operand.value;
  if (operand.k === "id") return subject.identifier;
  const attributes = subject.attributes as Record<string, unknown>;
  return Object.keys(attributes).includes(operand.name) ? attributes[operand.name] : undefined;
}

function reference(ast: Ast, subject: Subject): boolean {
  switch (ast.k) {
    case "or":
      return ast.items.map((item) => reference(item, subject)).some((x) => x);
    case "and":
      return ast.items.map((item) => reference(item, subject)).every((x) => x);
    case "not":
      return !reference(ast.inner, subject);
    case "paren":
      return reference(ast.inner, subject);
    case "const":
      return ast.value;
    case "flag":
      return valueOf({ k: "attr", name: ast.name }, subject) === true;
    case "cmp": {
      const a = valueOf(ast.left, subject);
      const b = valueOf(ast.right, subject);
      const ka = kindOf(a);
      const kb = kindOf(b);
      if (ast.op === "==" || ast.op === "!=") {
        const comparable = ka === kb && ka !== "missing" && ka !== "list";
        return comparable && (ast.op === "==" ? a === b : a !== b);
      }
      if (ka !== "integer" || kb !== "integer") return false;
      const x = a as number, y = b as number;
      return { "<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y }[ast.op];
    }
    case "inlist": {
      const v = valueOf(ast.left, subject);
      return ast.items.some((item) => kindOf(item) === kindOf(v) && item === v);
    }
    case "contains": {
      const item = valueOf(ast.item, subject);
      const list = valueOf({ k: "attr", name: ast.list }, subject);
      return kindOf(item) === "text" && kindOf(list) === "list" &&
        (list as string[]).some((x) => x === item);
    }
  }
}

// ---------------------------------------------------------------------------
// Robustness

/** Parses `text`: a Policy that evaluates without throwing, or a well-formed PolicyError. */
function parseOrTypedError(text: string, subjects: readonly Subject[]): Policy | PolicyError {
  let policy: Policy;
  try {
    policy = parsePolicy(text);
  } catch (error) {
    if (!(error instanceof PolicyError)) {
      throw new Error(`untyped rejection of ${JSON.stringify(text)}: ${error}`, { cause: error });
    }
    assert.ok(["syntax", "too_long", "too_deep"].includes(error.code), error.code);
    assert.ok(
      Number.isSafeInteger(error.position) && error.position >= 0 && error.position <= text.length,
      `position ${error.position} outside ${JSON.stringify(text)}`,
    );
    const lines = error.message.split("\n");
    assert.equal(lines.length, 3, error.message);
    assert.match(lines[2], /^ *\^$/);
    return error;
  }
  for (const subject of subjects) {
    assert.equal(policy.evaluate(subject).allow, policy.allows(subject));
  }
  assert.equal(policy.allows(null), false);
  return policy;
}

const SOUP = [
  "and",
  "or",
  "not",
  "in",
  "true",
  "false",
  "AND",
  "Not",
  "subject",
  "subject.",
  "subject.role",
  "subject.tier",
  "subject.caps",
  "subject.identifier",
  "subject.n",
  "subject.a.b",
  "subject.x-y",
  "subject.__proto__",
  "foo",
  "foo.bar",
  "==",
  "!=",
  "<",
  "<=",
  ">",
  ">=",
  "=",
  "!",
  "&&",
  "||",
  "(",
  ")",
  "[",
  "]",
  ",",
  '"edge"',
  '""',
  '"',
  '"\\"',
  '"\\u00e9"',
  '"\\u12"',
  '"\\x"',
  `"${ID_A}"`,
  "'edge'",
  "0",
  "-1",
  "1000",
  "01",
  "1.5",
  "-",
  "9007199254740991",
  "9007199254740992",
  "1e3",
  "#",
  "\u202e",
  "\u0000",
  "😀",
  ".",
  "-x",
];

Deno.test("policy property: token soup never crashes the parser", () => {
  let parsed = 0;
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          { weight: 9, arbitrary: fc.constantFrom(...SOUP) },
          { weight: 1, arbitrary: fc.string({ maxLength: 4 }) },
        ),
        { maxLength: 30 },
      ),
      fc.array(fc.constantFrom(" ", "", "\n", "  ", "\t"), { minLength: 30, maxLength: 30 }),
      fc.array(subjectArbitrary, { minLength: 1, maxLength: 3 }),
      (tokens, spaces, subjects) => {
        const text = tokens.map((token, i) => token + spaces[i]).join("");
        if (!(parseOrTypedError(text, subjects) instanceof PolicyError)) parsed++;
      },
    ),
    propertyParameters(RUNS),
  );
  // The soup is not all errors: some of it is a policy.
  assert.ok(parsed > RUNS / 100, `only ${parsed} parsed`);
});

Deno.test("policy property: random text and random bytes never crash the parser", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string({ unit: "binary", maxLength: 64 }),
        fc.string({ unit: "binary-ascii", maxLength: 64 }),
        fc.uint8Array({ maxLength: 64 }).map((bytes) => new TextDecoder().decode(bytes)),
        fc.string({ unit: "binary-ascii", minLength: 4000, maxLength: 4200 }),
      ),
      subjectArbitrary,
      (text, subject) => {
        parseOrTypedError(text, [subject]);
      },
    ),
    propertyParameters(RUNS),
  );
});

Deno.test("policy property: well-formed policies evaluate as the reference evaluator does", () => {
  const separators = [" ", "  ", "\n", "\t", " \r\n "];
  let allowed = 0;
  fc.assert(
    fc.property(
      tree,
      fc.boolean(),
      fc.constantFrom(...separators),
      fc.array(subjectArbitrary, { minLength: 1, maxLength: 4 }),
      (ast, unicode, separator, subjects) => {
        // No literal holds a space, so every space is between tokens.
        const text = print(ast, OR, unicode).replaceAll(" ", separator);
        if (new TextEncoder().encode(text).length > MAX_POLICY_BYTES) {
          assert.throws(
            () => parsePolicy(text),
            (e) => e instanceof PolicyError && e.code === "too_long",
          );
          return;
        }
        const policy = parsePolicy(text);
        assert.equal(policy.source, text);
        for (const subject of subjects) {
          const expected = reference(ast, subject);
          assert.equal(policy.allows(subject), expected, `${text} on ${JSON.stringify(subject)}`);
          const decision = policy.evaluate(subject);
          assert.equal(decision.allow, expected);
          // Through a channel: computed, then remembered.
          const credential = { attributes: subject.attributes } as unknown as Credential;
          const channel = { peer: subject.identifier, credential: () => credential };
          assert.equal(policy.admits(channel), expected);
          assert.equal(policy.admits(channel), expected);
          assert.ok(decision.reason.length > 0);
          if (expected) allowed++;
        }
        assert.equal(policy.allows(null), false);
      },
    ),
    propertyParameters(RUNS),
  );
  // Both answers are common.
  assert.ok(allowed > RUNS / 10, `only ${allowed} allowed`);
});
