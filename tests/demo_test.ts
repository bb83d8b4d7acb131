/**
 * The README's run command (`npm start` → `deno task demo`) as a real
 * process under its permission set: it must succeed, show a verified
 * credential, refuse a revoked one, and reuse its identities on a second
 * run.
 */
import assert from "node:assert/strict";

const root = new URL("..", import.meta.url).pathname;

async function runDemo(state: string): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "--no-prompt", "-P=demo", "scripts/demo.ts", "--state", state],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout);
  assert.equal(code, 0, `demo failed:\n${out}\n${new TextDecoder().decode(stderr)}`);
  return out;
}

function authorityOf(output: string): string {
  const match = output.match(/authority\s+(I[0-9a-f]{64})/);
  assert.ok(match, `no authority identifier in:\n${output}`);
  return match[1];
}

Deno.test("demo: issues, verifies, rotates, revokes, and reuses its state", async () => {
  const state = `.state/test-demo-${crypto.randomUUID()}`;
  try {
    const first = await runDemo(state);
    assert.match(first, /verified: issuer trusted, signature valid/);
    assert.match(first, /refuses it: bad_signature/);
    assert.match(first, /after receiving the new history, the verifier accepts it/);
    assert.match(first, /refused: revoked/);
    assert.doesNotMatch(first, /unexpected/);

    const key = await Deno.stat(`${root}/${state}/authority.key`);
    assert.equal(key.mode! & 0o777, 0o600);
    const keyText = await Deno.readTextFile(`${root}/${state}/authority.key`);
    const seed = JSON.parse(keyText).seed as string;
    assert.ok(!first.includes(seed), "the demo printed a secret key");

    const second = await runDemo(state);
    assert.equal(authorityOf(second), authorityOf(first));
  } finally {
    await Deno.remove(`${root}/${state}`, { recursive: true }).catch(() => {});
  }
});

Deno.test("demo: --help explains the command and exits 0", async () => {
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "--no-prompt", "-P=demo", "scripts/demo.ts", "--help"],
    cwd: root,
    stdout: "piped",
  }).output();
  assert.equal(code, 0);
  assert.match(new TextDecoder().decode(stdout), /Usage: npm start/);
});
