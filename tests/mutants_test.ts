/**
 * The list of protective checks (tests/mutants.ts) stays current: every
 * entry's text occurs exactly once in its file (code that moves a check
 * must move its entry too), its tests exist, its id is unique and named in
 * docs/security.md; and the runner itself works, shown on one entry
 * end to end (the full run is `deno task mutants`, not part of this suite).
 */
import assert from "node:assert/strict";
import { MUTANTS } from "./mutants.ts";
import { applyOnce, failedTests } from "../scripts/mutants.ts";

const root = new URL("..", import.meta.url).pathname;

Deno.test("mutants: at least 25 entries, unique ids, each named in docs/security.md", async () => {
  assert.ok(MUTANTS.length >= 25, `${MUTANTS.length} entries`);
  const ids = MUTANTS.map((m) => m.id);
  assert.equal(new Set(ids).size, ids.length, "duplicate ids");
  const security = await Deno.readTextFile(`${root}docs/security.md`);
  const missing = ids.filter((id) => !security.includes(`\`${id}\``));
  assert.deepEqual(missing, [], "ids not in docs/security.md");
});

Deno.test("mutants: every entry applies exactly once, and its tests exist", async () => {
  const problems: string[] = [];
  for (const mutant of MUTANTS) {
    const text = await Deno.readTextFile(`${root}${mutant.file}`);
    if (applyOnce(text, mutant.find, mutant.replace) === null) {
      problems.push(`${mutant.id}: its text does not occur exactly once in ${mutant.file}`);
    }
    if (mutant.find === mutant.replace) problems.push(`${mutant.id}: the edit changes nothing`);
    for (const test of mutant.tests) {
      try {
        await Deno.stat(`${root}${test}`);
      } catch {
        problems.push(`${mutant.id}: no test file ${test}`);
      }
    }
  }
  assert.deepEqual(problems, []);
});

Deno.test("mutants: failing test names are read from deno test's output", () => {
  const output = [
    "./src/a_test.ts => replay: a record twice ... \x1b[31mFAILED\x1b[0m (3ms)",
    "portal: fine ... ok (1ms)",
    "  a step ... FAILED (2ms)",
  ].join("\n");
  assert.deepEqual(failedTests(output), ["replay: a record twice", "a step"]);
});

Deno.test("mutants: the task catches one disabled check end to end (the replay window's re-check)", async () => {
  // The real task, under its own permission set, as `deno task mutants` runs it.
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-q",
      "--no-prompt",
      "-P=mutants",
      "scripts/mutants.ts",
      "--only",
      "replay-window-recheck",
      "--timeout",
      "120",
    ],
    cwd: root,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `${stdout}\n${stderr}`);
  assert.match(
    stdout,
    /\| replay-window-recheck \| replay \|.*cannot undo each other's window slot/,
  );
  assert.match(stdout, /1 of 1 caught/);
  assert.match(stderr, /\[1\/1\] replay-window-recheck: caught/);
});
