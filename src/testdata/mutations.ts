/**
 * Shared pieces of the property tests: the run configuration (seed and run
 * count, overridable from the environment), mutations of encoded structures
 * (blind byte-level ones and structure-aware ones that keep the CBOR framing
 * valid), and the "typed error" check.
 *
 * Only test files import this module.
 *
 * @module
 */
import fc from "fast-check";
import { decodeCbor, encodeCbor } from "../encoding/cbor.ts";
import { LimitError, MalformedError } from "../encoding/errors.ts";
import { toHex } from "../encoding/hex.ts";
import { concat, copy, type ErrorClass } from "./test_helpers.ts";

export type { ErrorClass };

/** Seed used when `PROPERTY_SEED` is not set, so that every run is the same. */
export const DEFAULT_SEED = 0x6e657875; // "nexu"

/** Reads an environment variable without prompting when `--allow-env` is missing. */
function readEnv(name: string): string | undefined {
  const state = Deno.permissions.querySync({ name: "env", variable: name }).state;
  return state === "granted" ? Deno.env.get(name) : undefined;
}

function parseInteger(name: string, text: string, min: number): number {
  const value = Number(text);
  if (!/^-?[0-9]+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min) {
    throw new RangeError(
      `${name} must be an integer of at least ${min}, got ${JSON.stringify(text)}`,
    );
  }
  return value;
}

/** The seed for every property: `PROPERTY_SEED`, else {@link DEFAULT_SEED}. */
export function propertySeed(): number {
  const text = readEnv("PROPERTY_SEED");
  return text === undefined || text === ""
    ? DEFAULT_SEED
    : parseInteger("PROPERTY_SEED", text, -0x8000_0000) | 0;
}

/**
 * Runs for a property: `PROPERTY_RUNS` when set (for every property), else
 * the property's own default.
 */
export function propertyRuns(defaultRuns: number): number {
  const text = readEnv("PROPERTY_RUNS");
  return text === undefined || text === "" ? defaultRuns : parseInteger("PROPERTY_RUNS", text, 1);
}

/**
 * Parameters for `fc.assert`: the seed, and {@link propertyRuns} random runs
 * after the `examples` (fast-check counts examples among its runs, so they
 * are added on top).
 */
export function propertyParameters<T>(
  defaultRuns: number,
  examples: T[] = [],
): fc.Parameters<T> {
  return {
    seed: propertySeed(),
    numRuns: propertyRuns(defaultRuns) + examples.length,
    examples,
  };
}

/** A one-line description of the configuration, printed once per test file. */
export function describeConfiguration(file: string): string {
  return `${file}: fast-check seed ${propertySeed()} (PROPERTY_SEED), ` +
    `runs ${readEnv("PROPERTY_RUNS") || "default"} (PROPERTY_RUNS)`;
}

/**
 * Throws (an AssertionError-like Error naming the input) unless `error` is an
 * instance of one of `allowed` and carries a string `code`. Anything else
 * (a plain Error, a TypeError from inside cbor-x, a RangeError from a
 * DataView) is an untyped failure that callers could not tell apart.
 */
export function assertTypedError(
  error: unknown,
  allowed: readonly ErrorClass[],
  input: Uint8Array,
): void {
  const typed = allowed.some((cls) => error instanceof cls) &&
    typeof (error as { code?: unknown }).code === "string" &&
    (error as { code: string }).code.length > 0;
  if (!typed) {
    const name = error instanceof Error ? error.constructor.name : typeof error;
    throw new Error(
      `untyped rejection ${name}: ${String(error)}\n` +
        `  allowed: ${allowed.map((cls) => cls.name).join(", ")}\n` +
        `  input (${input.length} bytes): ${toHex(input)}`,
      { cause: error },
    );
  }
}

/** The encoding layer's errors: what `decodeCbor` may throw. */
export const ENCODING_ERRORS: readonly ErrorClass[] = [MalformedError, LimitError];

/** True when `a` and `b` hold the same bytes. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------
// Mutations

/**
 * One byte-level mutation. Positions and lengths are free naturals, reduced
 * modulo the length of the bytes they apply to, so a mutation stays
 * meaningful after an earlier one in the same stack changed the length.
 * `source` picks a structure of the corpus (modulo its size).
 */
export type ByteMutation =
  | { readonly kind: "flip_bit"; readonly at: number; readonly bit: number }
  | { readonly kind: "set_byte"; readonly at: number; readonly value: number }
  | { readonly kind: "insert"; readonly at: number; readonly bytes: Uint8Array }
  | { readonly kind: "delete"; readonly at: number; readonly length: number }
  | { readonly kind: "truncate"; readonly length: number }
  | { readonly kind: "append"; readonly bytes: Uint8Array }
  | {
    readonly kind: "duplicate";
    readonly at: number;
    readonly length: number;
    readonly to: number;
  }
  /** This structure's prefix, then another structure's suffix. */
  | {
    readonly kind: "splice";
    readonly cut: number;
    readonly source: number;
    readonly from: number;
  }
  /** A range of this structure replaced by a range of another one. */
  | {
    readonly kind: "transplant";
    readonly at: number;
    readonly length: number;
    readonly source: number;
    readonly from: number;
    readonly count: number;
  }
  /** Fully random bytes, whatever the input was. */
  | { readonly kind: "random"; readonly bytes: Uint8Array };

/**
 * A structure-aware mutation: the input is decoded, one node of its tree is
 * edited, and the tree is encoded again, so every length and count stays
 * consistent and the mutant gets past the CBOR gate to the shape, semantic
 * and signature checks. Byte strings that hold CBOR themselves (the signed
 * `data`) are entered too, up to two levels down.
 *
 * `node` picks a node (modulo their number, depth first, root first).
 * Inputs that do not decode (after an earlier blind mutation) are returned
 * unchanged.
 */
export interface StructuralMutation {
  readonly kind: "structural";
  readonly node: number;
  readonly edit: Edit;
}

/** What a structural mutation does to the node it picked. */
export type Edit =
  /** Byte strings: a byte-level mutation of their content. Other nodes: ignored. */
  | { readonly op: "bytes"; readonly mutation: ByteMutation }
  /** The node replaced by another value (of any type of the profile). */
  | { readonly op: "replace"; readonly value: unknown }
  /** The node removed from its array or map (the root: nothing left). */
  | { readonly op: "remove" }
  /** The node repeated in its array (in a map: ignored). */
  | { readonly op: "repeat" };

/** Any mutation. */
export type Mutation = ByteMutation | StructuralMutation;

/**
 * Bytes that matter to a CBOR decoder: heads with 1-, 2-, 4- and 8-byte
 * arguments, indefinite lengths and breaks, tags, floats and simple values,
 * and UTF-8 edge bytes.
 */
// deno-fmt-ignore
const INTERESTING_BYTES = [
  0x00, 0x01, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1f, // unsigned
  0x20, 0x38, 0x3b, // negative
  0x40, 0x58, 0x5b, 0x5f, // byte strings
  0x60, 0x78, 0x7b, 0x7f, // text strings
  0x80, 0x81, 0x82, 0x83, 0x98, 0x9b, 0x9f, // arrays
  0xa0, 0xa1, 0xb8, 0xbb, 0xbf, // maps
  0xc0, 0xd8, 0xdb, // tags
  0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xff, // simple, floats, break
  0xc3, 0xed, 0xf0, 0xfe, // UTF-8 edges
];

const byteValue = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 255 }) },
  { weight: 2, arbitrary: fc.constantFrom(...INTERESTING_BYTES) },
);
const position = fc.nat({ max: 0xffff });
const smallLength = fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 256 }));
const someBytes = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 16 }),
  fc.array(byteValue, { minLength: 1, maxLength: 9 }).map((a) => Uint8Array.from(a)),
);

/** Every kind of byte-level mutation. `random` is rarer: it ignores the structure. */
export const byteMutationArbitrary: fc.Arbitrary<ByteMutation> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("flip_bit" as const),
      at: position,
      bit: fc.integer({ min: 0, max: 7 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("set_byte" as const),
      at: position,
      value: byteValue,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant("insert" as const), at: position, bytes: someBytes }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("delete" as const),
      at: position,
      length: smallLength,
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("truncate" as const), length: position }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("append" as const), bytes: someBytes }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("duplicate" as const),
      at: position,
      length: smallLength,
      to: position,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("splice" as const),
      cut: position,
      source: fc.nat(),
      from: position,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("transplant" as const),
      at: position,
      length: smallLength,
      source: fc.nat(),
      from: position,
      count: smallLength,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("random" as const),
      bytes: fc.uint8Array({ maxLength: 600 }),
    }),
  },
);

/**
 * Values a node may be replaced with: integers at the edges (versions,
 * purposes, timestamps, serials), byte strings of the lengths that matter
 * (ids 16, keys and identifiers 32, signatures 64, and one off), text,
 * booleans, null, empty and small containers.
 */
const replacement: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(0, 1, 2, 23, 24, -1, 0xffff_ffff, 2 ** 32, Number.MAX_SAFE_INTEGER),
  fc.integer({ min: 1_600_000_000, max: 1_900_000_000 }),
  fc.constantFrom(0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65)
    .chain((length) => fc.uint8Array({ minLength: length, maxLength: length })),
  fc.string({ maxLength: 8 }),
  fc.constantFrom(null, true, false),
  fc.constantFrom<unknown>([], new Map(), [1], new Map([["a", 1]])),
);

const editArbitrary: fc.Arbitrary<Edit> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ op: fc.constant("bytes" as const), mutation: byteMutationArbitrary }),
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("replace" as const), value: replacement }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("remove" as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("repeat" as const) }) },
);

/** Structure-aware mutations. */
export const structuralMutationArbitrary: fc.Arbitrary<StructuralMutation> = fc.record({
  kind: fc.constant("structural" as const),
  node: fc.nat({ max: 0xffff }),
  edit: editArbitrary,
});

/** Every kind of mutation: blind ones three times as often as structural ones. */
export const mutationArbitrary: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 3, arbitrary: byteMutationArbitrary },
  { weight: 1, arbitrary: structuralMutationArbitrary },
);

/** `n` modulo `size` (0 when `size` is 0). */
function wrap(n: number, size: number): number {
  return size === 0 ? 0 : n % size;
}

/** A copy of `input` with its byte at `at` (modulo its length) replaced by `edit(byte)`. */
function editByte(input: Uint8Array, at: number, edit: (byte: number) => number): Uint8Array {
  const out = copy(input);
  if (out.length > 0) {
    const i = wrap(at, out.length);
    out[i] = edit(out[i]);
  }
  return out;
}

/** `bytes` inserted into `input` before position `at` (modulo its length + 1). */
function insertAt(input: Uint8Array, at: number, bytes: Uint8Array): Uint8Array {
  const to = wrap(at, input.length + 1);
  return concat(input.subarray(0, to), bytes, input.subarray(to));
}

/**
 * `input` with `length` bytes at `at` replaced by `count` bytes of the corpus
 * structure `source`, from `from` (positions modulo the lengths + 1).
 */
function transplant(
  input: Uint8Array,
  corpus: readonly Uint8Array[],
  at: number,
  length: number,
  source: number,
  from: number,
  count: number,
): Uint8Array {
  const other = corpus[wrap(source, corpus.length)];
  const start = wrap(at, input.length + 1);
  const offset = wrap(from, other.length + 1);
  return concat(
    input.subarray(0, start),
    other.subarray(offset, offset + count),
    input.subarray(start + length),
  );
}

function applyByteMutation(
  input: Uint8Array,
  mutation: ByteMutation,
  corpus: readonly Uint8Array[],
): Uint8Array {
  const n = input.length;
  switch (mutation.kind) {
    case "flip_bit":
      return editByte(input, mutation.at, (byte) => byte ^ (1 << mutation.bit));
    case "set_byte":
      return editByte(input, mutation.at, () => mutation.value);
    case "insert":
      return insertAt(input, mutation.at, mutation.bytes);
    case "delete": {
      const at = wrap(mutation.at, n);
      return concat(input.subarray(0, at), input.subarray(at + mutation.length));
    }
    case "truncate":
      return copy(input.subarray(0, wrap(mutation.length, n)));
    case "append":
      return concat(input, mutation.bytes);
    case "duplicate": {
      const at = wrap(mutation.at, n);
      return insertAt(input, mutation.to, input.subarray(at, at + mutation.length));
    }
    case "splice":
      // A transplant that replaces everything from the cut with everything from `from`.
      return transplant(input, corpus, mutation.cut, n, mutation.source, mutation.from, Infinity);
    case "transplant":
      return transplant(
        input,
        corpus,
        mutation.at,
        mutation.length,
        mutation.source,
        mutation.from,
        mutation.count,
      );
    case "random":
      return copy(mutation.bytes);
  }
}

const REMOVE = Symbol("remove");
const REPEAT = Symbol("repeat");
type Replacement = unknown;

/** A node of a decoded tree and how to rebuild the whole encoding around a change to it. */
interface Node {
  readonly value: unknown;
  rebuild(replacement: Replacement): Uint8Array;
}

/** Decodes `bytes` when they are one strict CBOR array or map. */
function decodeContainer(bytes: Uint8Array): unknown[] | Map<unknown, unknown> | undefined {
  try {
    const value = decodeCbor(bytes, { maxBytes: 1 << 20, maxDepth: 16 });
    return Array.isArray(value) || value instanceof Map ? value : undefined;
  } catch {
    return undefined;
  }
}

function encode(value: unknown): Uint8Array {
  return copy(encodeCbor(value));
}

/**
 * What takes the place of `bytes`, the encoding of one item, when that item
 * is replaced by `r`: nothing (REMOVE), the item twice (REPEAT), or `r`'s
 * encoding.
 */
function reencode(bytes: Uint8Array, r: Replacement): Uint8Array {
  return r === REMOVE ? new Uint8Array(0) : r === REPEAT ? concat(bytes, bytes) : encode(r);
}

/** Lists the nodes of `value` depth first, entering byte strings that hold CBOR. */
function collect(
  value: unknown,
  rebuild: (replacement: Replacement) => Uint8Array,
  nested: number,
  out: Node[],
): void {
  out.push({ value, rebuild });
  if (Array.isArray(value)) {
    value.forEach((item, i) =>
      collect(
        item,
        (r) =>
          rebuild(
            r === REMOVE
              ? value.filter((_, j) => j !== i)
              : r === REPEAT
              ? [...value.slice(0, i + 1), item, ...value.slice(i + 1)]
              : value.map((x, j) => (j === i ? r : x)),
          ),
        nested,
        out,
      )
    );
  } else if (value instanceof Map) {
    for (const [key, item] of value) {
      collect(
        item,
        (r) => {
          if (r === REPEAT) return rebuild(value);
          const next = new Map(value);
          if (r === REMOVE) next.delete(key);
          else next.set(key, r);
          return rebuild(next);
        },
        nested,
        out,
      );
    }
  } else if (value instanceof Uint8Array && nested < 2) {
    const inner = decodeContainer(value);
    if (inner !== undefined) {
      collect(inner, (r) => rebuild(reencode(value, r)), nested + 1, out);
    }
  }
}

function applyStructuralMutation(
  input: Uint8Array,
  mutation: StructuralMutation,
  corpus: readonly Uint8Array[],
): Uint8Array {
  const root = decodeContainer(input);
  if (root === undefined) return copy(input);
  const nodes: Node[] = [];
  collect(root, (r) => reencode(input, r), 0, nodes);
  const node = nodes[wrap(mutation.node, nodes.length)];
  const edit = mutation.edit;
  switch (edit.op) {
    case "bytes":
      return node.value instanceof Uint8Array
        ? node.rebuild(applyByteMutation(node.value, edit.mutation, corpus))
        : copy(input);
    case "replace":
      return node.rebuild(edit.value);
    case "remove":
      return node.rebuild(REMOVE);
    case "repeat":
      return node.rebuild(REPEAT);
  }
}

/** Applies one mutation; never changes `input`, always returns a plain copy. */
export function applyMutation(
  input: Uint8Array,
  mutation: Mutation,
  corpus: readonly Uint8Array[],
): Uint8Array {
  return mutation.kind === "structural"
    ? applyStructuralMutation(input, mutation, corpus)
    : applyByteMutation(input, mutation, corpus);
}

/** A stack of mutations and the bytes they produce. */
export interface Mutant {
  readonly mutations: readonly Mutation[];
  readonly bytes: Uint8Array;
}

/**
 * Mutants of `original`: one to three stacked mutations (one most often),
 * splicing with structures from `corpus`. Mutants byte-identical to
 * `original` are filtered out, so every run tests different bytes.
 */
export function mutantArbitrary(
  original: Uint8Array,
  corpus: readonly Uint8Array[],
): fc.Arbitrary<Mutant> {
  const stacks = fc.oneof(
    { weight: 3, arbitrary: fc.tuple(mutationArbitrary) },
    { weight: 1, arbitrary: fc.array(mutationArbitrary, { minLength: 2, maxLength: 3 }) },
  );
  return stacks
    .map((mutations) => mutantOf(original, corpus, mutations))
    .filter((mutant) => !sameBytes(mutant.bytes, original));
}

/** A mutant for a fixed list of mutations (for `examples`). */
export function mutantOf(
  original: Uint8Array,
  corpus: readonly Uint8Array[],
  mutations: readonly Mutation[],
): Mutant {
  return {
    mutations,
    bytes: mutations.reduce((bytes, m) => applyMutation(bytes, m, corpus), copy(original)),
  };
}
