/**
 * Public identity files: what an operator copies to make a trust anchor.
 */
import assert from "node:assert/strict";
import { MalformedError } from "../encoding/errors.ts";
import { toHex } from "../encoding/hex.ts";
import { IdentityError } from "../errors.ts";
import { MAX_HISTORY_BYTES } from "./change_history.ts";
import {
  exportIdentity,
  importIdentity,
  readIdentityFile,
  writeIdentityFile,
} from "./identity_file.ts";
import {
  assertRejectsWithCode,
  DAY,
  identityFromByte,
  NOW,
  signerFromByte,
  withTempDir,
} from "../testdata/test_helpers.ts";

async function rejectsType(promise: Promise<unknown>, what: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof TypeError, `${what}: expected TypeError, got ${error}`);
    assert.ok(!(error instanceof MalformedError), `${what}: ${error}`);
    return true;
  });
}

const authority = await identityFromByte(1);
const rotated = await authority.rotate(await signerFromByte(3), { now: NOW + DAY });
const member = await identityFromByte(2);

function fileOf(fields: Record<string, unknown>): string {
  return JSON.stringify({
    kind: "nexus.identity",
    version: 1,
    identifier: authority.identifier,
    change_history: toHex(authority.history.encoded),
    ...fields,
  });
}

Deno.test("exportIdentity: the documented JSON fields", () => {
  const text = exportIdentity(authority.history);
  assert.ok(text.endsWith("\n"));
  assert.deepEqual(JSON.parse(text), {
    kind: "nexus.identity",
    version: 1,
    identifier: authority.identifier,
    change_history: toHex(authority.history.encoded),
  });
});

Deno.test("importIdentity: round trip of a new and of a rotated identity", async () => {
  for (const identity of [authority, rotated, member]) {
    const imported = await importIdentity(exportIdentity(identity.history));
    assert.equal(imported.identifier, identity.identifier);
    assert.equal(toHex(imported.primaryKey), toHex(identity.primaryKey));
    assert.equal(toHex(imported.history.encoded), toHex(identity.history.encoded));
  }
  const imported = await importIdentity(exportIdentity(rotated.history));
  assert.equal(imported.identifier, authority.identifier);
  assert.equal(toHex(imported.primaryKey), toHex(rotated.signer.publicKey));
  assert.equal(imported.history.changes.length, 2);
});

Deno.test("importIdentity: an edited identifier is identifier_mismatch", async () => {
  // Another real identifier.
  await assertRejectsWithCode(
    importIdentity(fileOf({ identifier: member.identifier })),
    IdentityError,
    "identifier_mismatch",
  );
  // One hex digit changed.
  const last = authority.identifier.at(-1) === "0" ? "1" : "0";
  await assertRejectsWithCode(
    importIdentity(fileOf({ identifier: authority.identifier.slice(0, -1) + last })),
    IdentityError,
    "identifier_mismatch",
  );
  // Uppercase: the same bytes, but not the identifier's spelling.
  await assertRejectsWithCode(
    importIdentity(fileOf({ identifier: "I" + authority.identifier.slice(1).toUpperCase() })),
    IdentityError,
    "identifier_mismatch",
  );
  // The history swapped for another identity's, the identifier left alone.
  await assertRejectsWithCode(
    importIdentity(fileOf({ change_history: toHex(member.history.encoded) })),
    IdentityError,
    "identifier_mismatch",
  );
});

Deno.test("importIdentity: text that is not an identity file is a TypeError", async () => {
  const cases: [string, string][] = [
    ["not JSON", "kind: nexus.identity"],
    ["truncated JSON", fileOf({}).slice(0, -1)],
    ["empty", ""],
    ["null", "null"],
    ["a string", JSON.stringify(authority.identifier)],
    ["an array", JSON.stringify([authority.identifier])],
    ["wrong kind", fileOf({ kind: "nexus.ed25519.seed" })],
    ["no kind", fileOf({ kind: undefined })],
    ["version 2", fileOf({ version: 2 })],
    ["version as text", fileOf({ version: "1" })],
    ["no identifier", fileOf({ identifier: undefined })],
    ["identifier not text", fileOf({ identifier: 1 })],
    ["no history", fileOf({ change_history: undefined })],
    ["history as an array", fileOf({ change_history: [...authority.history.encoded] })],
    ["history not hex", fileOf({ change_history: "zz" + toHex(authority.history.encoded) })],
    ["history of odd length", fileOf({ change_history: toHex(authority.history.encoded) + "0" })],
  ];
  for (const [what, text] of cases) await rejectsType(importIdentity(text), what);
});

Deno.test("importIdentity: a history that does not verify is refused", async () => {
  const hex = toHex(authority.history.encoded);
  // A flipped bit in the signature (the last 64 bytes).
  const at = hex.length - 2;
  const flipped = hex.slice(0, at) +
    (parseInt(hex.slice(at), 16) ^ 1).toString(16).padStart(2, "0");
  await assertRejectsWithCode(
    importIdentity(fileOf({ change_history: flipped })),
    IdentityError,
    "bad_signature",
  );
  // Truncated.
  await assertRejectsWithCode(
    importIdentity(fileOf({ change_history: hex.slice(0, -2) })),
    MalformedError,
    "truncated",
  );
});

Deno.test("importIdentity: an oversized file is refused before parsing", async () => {
  const text = fileOf({ padding: "x".repeat(MAX_HISTORY_BYTES * 2 + 1024) });
  await assert.rejects(importIdentity(text), RangeError);
});

Deno.test("writeIdentityFile/readIdentityFile: round trip through a file", async () => {
  await withTempDir("nexus-identity-file-test-", async (dir) => {
    const path = `${dir}/authority.identity.json`;
    await writeIdentityFile(path, rotated.history);
    assert.equal(await Deno.readTextFile(path), exportIdentity(rotated.history));
    const read = await readIdentityFile(path);
    assert.equal(read.identifier, authority.identifier);
    assert.equal(toHex(read.primaryKey), toHex(rotated.primaryKey));
    // An identity file is public: it holds no key material.
    const text = await Deno.readTextFile(path);
    for (const seedHex of ["01".repeat(32), "03".repeat(32)]) assert.ok(!text.includes(seedHex));
    // Edited on disk.
    const edited = text.replace(authority.identifier, member.identifier);
    assert.notEqual(edited, text);
    await Deno.writeTextFile(path, edited);
    await assertRejectsWithCode(readIdentityFile(path), IdentityError, "identifier_mismatch");
  });
});
