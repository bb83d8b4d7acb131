/**
 * `deno task bench:e2e` as a real process under its permission set, with
 * tiny parameters: the whole deployment (authority, relay, agent, gateway,
 * edge) starts, both modes carry data, and the tables come out. A smoke run
 * only: no figure is checked (a benchmark is never a timed assertion).
 */
import assert from "node:assert/strict";

const root = new URL("..", import.meta.url).pathname;

Deno.test("bench:e2e runs with tiny parameters and prints both modes' tables", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-q",
      "--no-prompt",
      "-P=bench_e2e",
      "scripts/bench_e2e.ts",
      "--megabytes",
      "2",
      "--runs",
      "1",
      "--requests",
      "20",
    ],
    cwd: root,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout);
  const err = new TextDecoder().decode(stderr);
  assert.equal(code, 0, `bench:e2e failed:\n${out}\n${err}`);
  assert.match(
    out,
    /^\| Measure \| Direct TCP \| Phase 2 outlet \| End to end \| Phase 2 \/ direct \| E2E \/ direct \| E2E \/ Phase 2 \|$/m,
  );
  for (
    const row of [
      "Throughput, 1 connection",
      "Throughput, 8 connections (sum)",
      "64 B round trip, median",
      "64 B round trip, p99",
      "New connection + 64 B round trip, median",
      "New connection + 64 B round trip, p99",
    ]
  ) {
    // A label, three figures and three ratios.
    assert.match(out, new RegExp(`^\\| ${row.replace(/[()+]/g, "\\$&")}( \\| [^|]+){6} \\|$`, "m"));
  }
  assert.match(out, /^\| Process \| Phase 2 \| End to end \| E2E \/ Phase 2 \|$/m);
  for (const process of ["edge", "relay", "\\*\\*gateway\\*\\*", "agent"]) {
    assert.match(out, new RegExp(`^\\| ${process} \\| [0-9.]+ s \\| [0-9.]+ s \\| `, "m"));
  }
  assert.match(out, /nothing dropped or refused/);
  assert.match(err, /\[bench:e2e\] run 1\/1/);
});
