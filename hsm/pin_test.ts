/**
 * Where the HSM PIN comes from: a PIN file that group or others may access
 * is refused (never read, no fallback to the environment), with a message
 * that names the file and its mode and never the PIN, and the CLI reports it
 * with the PIN's exit status.
 */
import assert from "node:assert/strict";
import { describeFailure } from "../src/cli/cli.ts";
import { EXIT } from "../src/cli/exit_codes.ts";
import { HsmError } from "../src/errors.ts";
import { readPin } from "./pin.ts";

const PIN = "4711-pin-value";
const ENV = "NEXUS_PIN_TEST_FALLBACK";

async function withPinFile(fn: (file: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "nexus-pin-" });
  try {
    const file = `${dir}/hsm.pin`;
    await Deno.writeTextFile(file, `${PIN}\n`, { createNew: true, mode: 0o600 });
    await fn(file);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("readPin: a 0600 or 0400 file gives its PIN, trailing newline dropped", async () => {
  await withPinFile(async (file) => {
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600, "this test needs POSIX modes");
    assert.equal(await readPin({ file }), PIN);
    await Deno.chmod(file, 0o400);
    assert.equal(await readPin({ file }), PIN);
  });
});

Deno.test("readPin: a PIN file group or others may access is refused, never read", async () => {
  await withPinFile(async (file) => {
    Deno.env.set(ENV, "from-the-environment");
    try {
      for (const mode of [0o644, 0o640, 0o604, 0o620, 0o602, 0o610, 0o601]) {
        await Deno.chmod(file, mode);
        const text = mode.toString(8).padStart(4, "0");
        await assert.rejects(readPin({ file, env: ENV, prompt: false }), (error: unknown) => {
          assert.ok(error instanceof HsmError, `mode ${text}: ${error}`);
          assert.equal(error.code, "pin_file_mode");
          assert.ok(error.message.includes(file), error.message);
          assert.ok(error.message.includes(`mode ${text}`), error.message);
          assert.match(error.message, /chmod 600/);
          assert.ok(!error.message.includes(PIN), "the message quotes the PIN");
          // The PIN's exit status: fixed by the operator, never retried.
          const failure = describeFailure(error);
          assert.equal(failure.code, EXIT.hsmPin);
          assert.ok(!failure.message.includes(PIN));
          assert.match(failure.message, /\[pin_file_mode\]$/);
          return true;
        });
      }
    } finally {
      Deno.env.delete(ENV);
    }
  });
});

Deno.test("readPin: an empty 0600 file falls through to the environment", async () => {
  await withPinFile(async (file) => {
    await Deno.writeTextFile(file, "\n");
    Deno.env.set(ENV, PIN);
    try {
      assert.equal(await readPin({ file, env: ENV }), PIN);
    } finally {
      Deno.env.delete(ENV);
    }
    await assert.rejects(
      readPin({ file }),
      (error: unknown) => error instanceof HsmError && error.code === "pin_missing",
    );
  });
});
