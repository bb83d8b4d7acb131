import assert from "node:assert/strict";
import { ConfigError } from "../errors.ts";
import {
  forbiddenAccess,
  formatMode,
  readSecretFile,
  readSecretLine,
  SYSTEMD_CREDENTIALS_DIR,
} from "./secret_file.ts";

const SECRET = "nxt_secret-file-content";

async function withFile(mode: number, fn: (file: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "nexus-secret-" });
  try {
    const file = `${dir}/secret`;
    await Deno.writeTextFile(file, `${SECRET}\nsecond line\n`, { createNew: true, mode: 0o600 });
    await Deno.chmod(file, mode);
    await fn(file);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("formatMode: four octal digits, file type bits dropped", () => {
  assert.equal(formatMode(0o100644), "0644");
  assert.equal(formatMode(0o600), "0600");
  assert.equal(formatMode(0o40), "0040");
});

Deno.test("forbiddenAccess: the refused bits that are set", () => {
  assert.equal(forbiddenAccess("/etc/nexus/hsm.pin", 0o100600, 0o077), 0);
  assert.equal(forbiddenAccess("/etc/nexus/hsm.pin", 0o100640, 0o077), 0o040);
  assert.equal(forbiddenAccess("/etc/nexus/hsm.pin", 0o100644, 0o077), 0o044);
  assert.equal(forbiddenAccess("/etc/nexus/edge.license", 0o100640, 0o004), 0);
  assert.equal(forbiddenAccess("/etc/nexus/edge.license", 0o100644, 0o004), 0o004);
  assert.equal(forbiddenAccess("relative/file", 0o100644, 0), 0);
});

Deno.test("forbiddenAccess: systemd credentials' group bits (an ACL mask) pass, others' do not", () => {
  const credential = `${SYSTEMD_CREDENTIALS_DIR}nexus-authority.service/hsm.pin`;
  // systemd writes 0400 and grants the service's user an ACL entry: stat shows 0440.
  assert.equal(forbiddenAccess(credential, 0o100440, 0o077), 0);
  assert.equal(forbiddenAccess(credential, 0o100400, 0o077), 0);
  assert.equal(forbiddenAccess(credential, 0o100444, 0o077), 0o004);
  // Only that directory, and never through "..".
  assert.equal(forbiddenAccess(`${credential}/../../../../tmp/pin`, 0o100440, 0o077), 0o040);
  assert.equal(forbiddenAccess("/run/credentials-not/x/pin", 0o100440, 0o077), 0o040);
  assert.equal(forbiddenAccess("/tmp/run/credentials/x/pin", 0o100440, 0o077), 0o040);
});

Deno.test("readSecretFile: the text, or the mode that refused it (content not read)", async () => {
  await withFile(0o600, async (file) => {
    assert.deepEqual(await readSecretFile(file, 0o077), {
      ok: true,
      text: `${SECRET}\nsecond line\n`,
    });
  });
  await withFile(0o640, async (file) => {
    const read = await readSecretFile(file, 0o077);
    assert.equal(read.ok, false);
    assert.equal(!read.ok && read.mode & 0o777, 0o640);
    assert.ok(!JSON.stringify(read).includes(SECRET));
    assert.equal((await readSecretFile(file, 0o004)).ok, true);
  });
  await assert.rejects(readSecretFile("/nonexistent/nexus-secret", 0o077), Deno.errors.NotFound);
});

Deno.test("readSecretLine: first line trimmed; errors name field and file, never the content", async () => {
  await withFile(0o600, async (file) => {
    assert.equal(await readSecretLine(file, "ticketFile", { refuse: 0o077 }), SECRET);
  });
  await withFile(0o644, async (file) => {
    await assert.rejects(readSecretLine(file, "ticketFile", { refuse: 0o077 }), (error) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.code, "invalid");
      assert.equal(error.field, "ticketFile");
      assert.equal(
        error.message,
        `config: "ticketFile" names ${file}, which group or others may access (mode 0644): ` +
          "chmod 600 it",
      );
      return true;
    });
    const refusal = (mode: string) => `which others may read (${mode})`;
    await assert.rejects(
      readSecretLine(file, "licenseFile", { refuse: 0o004, refusal }),
      /"licenseFile" names .*, which others may read \(0644\)$/,
    );
    // Nothing refused: read as it is.
    assert.equal(await readSecretLine(file, "ticketFile"), SECRET);
  });
  await assert.rejects(
    readSecretLine("/nonexistent/nexus-secret", "ticketFile"),
    /"ticketFile" names \/nonexistent\/nexus-secret, which cannot be read: NotFound/,
  );
});
