/**
 * `deno task mutants`: disables each protective check of tests/mutants.ts
 * in turn and shows that some test fails (docs/security.md, "The tests are
 * tested").
 *
 * The work happens in a copy of the tree under the system's temporary
 * directory (the files git tracks or would track, with `node_modules` and
 * `.tools` linked), so an interrupted run never leaves a check disabled in
 * the working tree. First the entries' test files run unmutated (they must
 * pass, or a failure would prove nothing); then, per entry: the edit, a
 * type check of the edited file (an edit that does not compile proves
 * nothing either), the entry's test files, the file restored.
 *
 * Usage:
 *   deno task mutants [--only id,id] [--list] [--timeout SECONDS] [--keep]
 *
 * Prints one progress line per entry on stderr and the table (markdown) on
 * stdout. Exit status 0 when every entry is caught, 1 when one survives or
 * does not apply, 2 for a usage error.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type Mutant, MUTANTS } from "../tests/mutants.ts";
import { findDeno } from "./support/find_deno.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const HELP = `Usage: deno task mutants [--only id,id] [--list] [--timeout SECONDS] [--keep]

Disables each protective check listed in tests/mutants.ts in turn, in a copy of
the tree, runs that entry's tests, and reports which test caught it.

  --only IDS       these entries only (comma-separated ids)
  --list           print the list as a table and exit
  --timeout S      per-entry test time limit in seconds (default 300)
  --keep           keep the copy of the tree (its path is printed)
  -h, --help       this help

Exit status: 0 every entry caught; 1 an entry survived, did not apply or did
not compile, or the unmutated tests failed; 2 usage.`;

/** What happened to one entry. */
export interface Outcome {
  readonly mutant: Mutant;
  readonly verdict: "caught" | "survived" | "not_applicable" | "does_not_compile";
  /** Names of the tests that failed (caught), or what went wrong. */
  readonly detail: string[];
  readonly seconds: number;
}

/** The names of failing tests in `deno test` output (steps included). */
export function failedTests(output: string): string[] {
  // deno test prints "<name> ... FAILED (..)" per test; colours stripped.
  // deno-lint-ignore no-control-regex -- ANSI colour codes
  const plain = output.replace(/\x1b\[[0-9;]*m/g, "");
  const names = new Set<string>();
  for (const line of plain.split("\n")) {
    const match = /^(?:\.\/\S+ => )?\s*(.+?) \.\.\. FAILED/.exec(line);
    if (match) names.add(match[1].trim());
  }
  return [...names];
}

/** Replaces the single occurrence of `find` in `text`; null unless it occurs exactly once. */
export function applyOnce(text: string, find: string, replace: string): string | null {
  const at = text.indexOf(find);
  if (at < 0 || text.indexOf(find, at + 1) >= 0) return null;
  return text.slice(0, at) + replace + text.slice(at + find.length);
}

/**
 * The Noise test vectors live beside the project, not in it
 * (src/channel/noise/vectors_test.ts): the copy is told where.
 */
const NOISE_VECTORS = new URL("../../shared/vectors/noise/noise_xx_cacophony.json", import.meta.url)
  .pathname;

async function run(cmd: string, args: string[], cwd: string, timeoutMs: number) {
  const child = new Deno.Command(cmd, {
    args,
    cwd,
    env: { NOISE_VECTORS },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, text };
}

/** Copies the tree git knows of (tracked and untracked, not ignored) to a fresh directory. */
async function copyTree(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "nexus-mutants-" });
  const listed = await run("git", ["ls-files", "-z", "-co", "--exclude-standard"], ROOT, 60_000);
  if (listed.code !== 0) throw new Error(`git ls-files failed: ${listed.text}`);
  for (const file of listed.text.split("\0").filter((f) => f !== "")) {
    const from = `${ROOT}${file}`;
    try {
      const info = await Deno.lstat(from);
      if (!info.isFile) continue;
    } catch {
      continue; // deleted in the working tree
    }
    const to = `${dir}/${file}`;
    await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
    await Deno.copyFile(from, to);
  }
  // node_modules is copied, not linked: the authority's PKCS#11 addon is
  // allowed by a path inside the project (deno.json, "ffi"), and Deno checks
  // the path the addon really has. The toolchain is linked.
  await copyDir(`${ROOT}node_modules`, `${dir}/node_modules`);
  await Deno.symlink(`${ROOT}.tools`, `${dir}/.tools`).catch(() => {});
  return dir;
}

/** Copies a directory tree, symbolic links as links. */
async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    const source = `${from}/${entry.name}`;
    const target = `${to}/${entry.name}`;
    if (entry.isSymlink) await Deno.symlink(await Deno.readLink(source), target);
    else if (entry.isDirectory) await copyDir(source, target);
    else await Deno.copyFile(source, target);
  }
}

/** The Deno the tests run with: the pinned one (scripts/support/find_deno.ts). */
let denoPath = "deno";
function deno(): string {
  return denoPath;
}

/** The `deno test` arguments the suite uses (deno.json "test"), for `files`. */
function testArgs(files: readonly string[]): string[] {
  return ["test", "-q", "-P", "--no-prompt", "--parallel", ...files];
}

/** Runs one entry in `dir`; restores the file whatever happens. */
async function tryMutant(dir: string, mutant: Mutant, timeoutMs: number): Promise<Outcome> {
  const started = performance.now();
  const path = `${dir}/${mutant.file}`;
  const original = await Deno.readTextFile(path);
  const seconds = () => (performance.now() - started) / 1000;
  const mutated = applyOnce(original, mutant.find, mutant.replace);
  if (mutated === null) {
    return {
      mutant,
      verdict: "not_applicable",
      detail: ["its text does not occur exactly once"],
      seconds: seconds(),
    };
  }
  await Deno.writeTextFile(path, mutated);
  try {
    const check = await run(deno(), ["check", "-q", mutant.file], dir, timeoutMs);
    if (check.code !== 0) {
      return {
        mutant,
        verdict: "does_not_compile",
        detail: [check.text.trim().split("\n").slice(0, 3).join(" ")],
        seconds: seconds(),
      };
    }
    const tested = await run(deno(), testArgs(mutant.tests), dir, timeoutMs);
    if (tested.code === 0) {
      return { mutant, verdict: "survived", detail: [], seconds: seconds() };
    }
    const failed = failedTests(tested.text);
    return {
      mutant,
      verdict: "caught",
      detail: failed.length > 0 ? failed : [`exit ${tested.code} (no test named)`],
      seconds: seconds(),
    };
  } finally {
    await Deno.writeTextFile(path, original);
  }
}

/** The table of outcomes (or of the list alone), markdown. */
export function table(rows: readonly (Outcome | Mutant)[]): string {
  const lines = [
    "| # | id | threat | check | caught by |",
    "|---|---|---|---|---|",
  ];
  rows.forEach((row, i) => {
    const mutant = "mutant" in row ? row.mutant : row;
    const caughtBy = "mutant" in row
      ? row.verdict === "caught"
        ? row.detail.join("; ")
        : `**${row.verdict}** ${row.detail.join("")}`
      : mutant.tests.join(", ");
    const cell = (text: string) => text.replaceAll("|", "\\|");
    lines.push(
      `| ${i + 1} | ${mutant.id} | ${mutant.threat} | ${cell(mutant.check)} | ${cell(caughtBy)} |`,
    );
  });
  return lines.join("\n");
}

/** Runs the task; resolves with its exit status. */
export async function main(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        only: { type: "string" },
        list: { type: "boolean", default: false },
        timeout: { type: "string", default: "300" },
        keep: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (error) {
    console.error(`mutants: ${(error as Error).message}\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const timeoutMs = Number(values.timeout) * 1000;
  if (!(timeoutMs > 0)) {
    console.error(`mutants: --timeout must be a positive number of seconds`);
    return 2;
  }
  let chosen: readonly Mutant[] = MUTANTS;
  if (values.only !== undefined) {
    const ids = values.only.split(",").map((id) => id.trim()).filter((id) => id !== "");
    const unknown = ids.filter((id) => !MUTANTS.some((m) => m.id === id));
    if (unknown.length > 0) {
      console.error(`mutants: no such entry: ${unknown.join(", ")}`);
      return 2;
    }
    chosen = MUTANTS.filter((m) => ids.includes(m.id));
  }
  if (values.list) {
    console.log(table(chosen));
    return 0;
  }

  denoPath = await findDeno();
  const dir = await copyTree();
  try {
    console.error(`mutants: ${chosen.length} entries, in ${dir}`);
    const files = [...new Set(chosen.flatMap((m) => m.tests))].sort();
    console.error(`mutants: the unmutated tests first (${files.length} files)`);
    const baseline = await run(deno(), testArgs(files), dir, timeoutMs * 2);
    if (baseline.code !== 0) {
      console.error(baseline.text.split("\n").slice(-40).join("\n"));
      console.error("mutants: the tests fail without any edit; fix that first");
      return 1;
    }
    const outcomes: Outcome[] = [];
    for (const [i, mutant] of chosen.entries()) {
      const outcome = await tryMutant(dir, mutant, timeoutMs);
      outcomes.push(outcome);
      console.error(
        `mutants: [${i + 1}/${chosen.length}] ${mutant.id}: ${outcome.verdict} ` +
          `(${outcome.seconds.toFixed(1)} s)`,
      );
    }
    console.log(table(outcomes));
    const missed = outcomes.filter((o) => o.verdict !== "caught");
    console.log(
      `\n${outcomes.length - missed.length} of ${outcomes.length} caught` +
        (missed.length > 0 ? `; not caught: ${missed.map((o) => o.mutant.id).join(", ")}` : ""),
    );
    return missed.length === 0 ? 0 : 1;
  } finally {
    if (values.keep) console.error(`mutants: kept ${dir}`);
    else await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
