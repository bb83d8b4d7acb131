/**
 * Secret keys at rest: 0600 on creation, never overwritten, refused when
 * others may read them, and never echoed in errors or in a signer's output.
 */
import assert from "node:assert/strict";
import { inspect } from "node:util";
import { ed25519 } from "@noble/curves/ed25519.js";
import { fromHex, toHex } from "../encoding/hex.ts";
import { IdentityError } from "../errors.ts";
import {
  assertRejectsWithCode,
  withTempDir as withPrefixedTempDir,
} from "../testdata/test_helpers.ts";
import { createKeyFile, loadOrCreateKeyFile, readKeyFile } from "./key_file.ts";
import { SoftwareSigner } from "./software_signer.ts";

const KIND = "nexus.ed25519.seed";

/** Runs `fn` with a fresh temporary directory for key files. */
function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  return withPrefixedTempDir("nexus-key-file-test-", fn);
}

async function modeOf(path: string): Promise<number> {
  const info = await Deno.stat(path);
  assert.notEqual(info.mode, null, "this test needs a POSIX file system");
  return info.mode! & 0o777;
}

async function seedOf(path: string): Promise<string> {
  const record = JSON.parse(await Deno.readTextFile(path));
  return record.seed as string;
}

/** Writes `text` as a key file with the right mode, so that only its content is wrong. */
async function writePrivate(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(path, text, { mode: 0o600 });
  await Deno.chmod(path, 0o600);
}

/**
 * True when the seed appears in `text` as hex (any case) or as its byte
 * values in order (as an inspected Uint8Array would show them).
 */
function revealsSeed(text: string, seedHex: string): boolean {
  if (text.toLowerCase().includes(seedHex)) return true;
  const seed = [...fromHex(seedHex)];
  const numbers = (text.match(/\d+/g) ?? []).map(Number);
  outer: for (let i = 0; i + seed.length <= numbers.length; i++) {
    for (let j = 0; j < seed.length; j++) if (numbers[i + j] !== seed[j]) continue outer;
    return true;
  }
  return false;
}

Deno.test("createKeyFile: a 0600 JSON file whose seed is the signer's key", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/edge.key`;
    const signer = await createKeyFile(path);
    assert.equal(await modeOf(path), 0o600);
    const record = JSON.parse(await Deno.readTextFile(path));
    assert.deepEqual(Object.keys(record).sort(), ["kind", "seed", "version"]);
    assert.equal(record.kind, KIND);
    assert.equal(record.version, 1);
    assert.match(record.seed, /^[0-9a-f]{64}$/);
    const seed = fromHex(record.seed);
    assert.equal(toHex(signer.publicKey), toHex(ed25519.getPublicKey(seed)));
    const message = new TextEncoder().encode("key file");
    assert.equal(toHex(await signer.sign(message)), toHex(ed25519.sign(message, seed)));
  });
});

Deno.test("createKeyFile: each file holds a fresh key", async () => {
  await withTempDir(async (dir) => {
    const a = await createKeyFile(`${dir}/a.key`);
    const b = await createKeyFile(`${dir}/b.key`);
    assert.notEqual(toHex(a.publicKey), toHex(b.publicKey));
    assert.notEqual(await seedOf(`${dir}/a.key`), await seedOf(`${dir}/b.key`));
  });
});

Deno.test("readKeyFile: reads back the same key", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/gateway.key`;
    const created = await createKeyFile(path);
    const read = await readKeyFile(path);
    assert.equal(toHex(read.publicKey), toHex(created.publicKey));
    const message = new Uint8Array([1, 2, 3]);
    assert.equal(toHex(await read.sign(message)), toHex(await created.sign(message)));
  });
});

Deno.test("createKeyFile: refuses to overwrite, leaving the file as it was", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/relay.key`;
    await createKeyFile(path);
    const before = await Deno.readTextFile(path);
    await assertRejectsWithCode(createKeyFile(path), IdentityError, "key_file_exists");
    assert.equal(await Deno.readTextFile(path), before);
    assert.equal(await modeOf(path), 0o600);
    // Any existing file counts, not only key files.
    const other = `${dir}/notes.txt`;
    await Deno.writeTextFile(other, "keep me\n");
    await assertRejectsWithCode(createKeyFile(other), IdentityError, "key_file_exists");
    assert.equal(await Deno.readTextFile(other), "keep me\n");
  });
});

Deno.test("readKeyFile: refuses a key that group or others may access", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/edge.key`;
    await createKeyFile(path);
    const seed = await seedOf(path);
    for (const mode of [0o640, 0o604, 0o660, 0o644, 0o666, 0o610, 0o601, 0o620, 0o602, 0o677]) {
      await Deno.chmod(path, mode);
      const error = await assertRejectsWithCode(
        readKeyFile(path),
        IdentityError,
        "key_file_permissions",
        `mode ${mode.toString(8)}`,
      );
      assert.ok(!revealsSeed(`${error.message}\n${error.stack}`, seed));
      await assertRejectsWithCode(loadOrCreateKeyFile(path), IdentityError, "key_file_permissions");
    }
    // Owner-only modes are accepted.
    for (const mode of [0o600, 0o400, 0o700]) {
      await Deno.chmod(path, mode);
      await readKeyFile(path);
    }
  });
});

Deno.test("readKeyFile: a malformed file is a TypeError that never quotes the seed", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/edge.key`;
    await createKeyFile(path);
    const seed = await seedOf(path);
    const good = JSON.stringify({ kind: KIND, version: 1, seed });
    const cases: [string, string][] = [
      ["truncated JSON", good.slice(0, -2)],
      ["trailing garbage", good + " x"],
      ["seed in a JSON syntax error", `{"kind":"${KIND}","version":1,"seed":${seed}}`],
      ["wrong kind", JSON.stringify({ kind: "nexus.identity", version: 1, seed })],
      ["no kind", JSON.stringify({ version: 1, seed })],
      ["version 2", JSON.stringify({ kind: KIND, version: 2, seed })],
      ["version as text", JSON.stringify({ kind: KIND, version: "1", seed })],
      ["uppercase seed", JSON.stringify({ kind: KIND, version: 1, seed: seed.toUpperCase() })],
      ["short seed", JSON.stringify({ kind: KIND, version: 1, seed: seed.slice(2) })],
      ["long seed", JSON.stringify({ kind: KIND, version: 1, seed: seed + "00" })],
      ["seed not hex", JSON.stringify({ kind: KIND, version: 1, seed: seed.slice(1) + "g" })],
      ["seed as bytes", JSON.stringify({ kind: KIND, version: 1, seed: [...fromHex(seed)] })],
      ["a bare string", JSON.stringify(seed)],
      ["an array", JSON.stringify([KIND, 1, seed])],
      ["null", "null"],
      ["empty", ""],
    ];
    for (const [what, text] of cases) {
      await writePrivate(path, text);
      await assert.rejects(readKeyFile(path), (error: unknown) => {
        assert.ok(error instanceof TypeError, `${what}: expected TypeError, got ${error}`);
        assert.ok(!(error instanceof IdentityError), what);
        for (
          const shown of [error.message, String(error), error.stack ?? "", Deno.inspect(error)]
        ) {
          assert.ok(!revealsSeed(shown, seed), `${what}: the error quotes the seed`);
        }
        return true;
      });
    }
  });
});

Deno.test("readKeyFile: a missing file is NotFound", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(readKeyFile(`${dir}/absent.key`), Deno.errors.NotFound);
  });
});

Deno.test("loadOrCreateKeyFile: creates once, then reads the same key", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state/edge.key`;
    await Deno.mkdir(`${dir}/state`);
    const first = await loadOrCreateKeyFile(path);
    assert.equal(await modeOf(path), 0o600);
    const text = await Deno.readTextFile(path);
    const second = await loadOrCreateKeyFile(path);
    assert.equal(toHex(second.publicKey), toHex(first.publicKey));
    assert.equal(await Deno.readTextFile(path), text);
    // A malformed file is an error, not a reason to replace the key.
    await writePrivate(path, "{}");
    await assert.rejects(loadOrCreateKeyFile(path), TypeError);
    assert.equal(await Deno.readTextFile(path), "{}");
  });
});

Deno.test("signers never show their seed: inspect, JSON, String", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/authority.key`;
    const signers: SoftwareSigner[] = [await createKeyFile(path), await readKeyFile(path)];
    const seed = await seedOf(path);
    signers.push(await SoftwareSigner.fromSeed(fromHex(seed)));
    for (const signer of signers) {
      const publicHex = toHex(signer.publicKey);
      const shown: [string, string, boolean][] = [
        ["Deno.inspect", Deno.inspect(signer), true],
        [
          "Deno.inspect, everything",
          Deno.inspect(signer, { showHidden: true, depth: Infinity, getters: true }),
          true,
        ],
        [
          "node:util inspect",
          inspect(signer, { showHidden: true, depth: Infinity, getters: true }),
          true,
        ],
        [
          "Deno.inspect, nested",
          Deno.inspect({ signer, list: [signer] }, { depth: Infinity }),
          true,
        ],
        ["JSON.stringify", JSON.stringify(signer), true],
        ["JSON.stringify, nested", JSON.stringify({ signer }), true],
        ["String", String(signer), false],
        ["template", `${signer}`, false],
        [
          "own properties, without the custom inspect",
          Deno.inspect(
            Object.fromEntries(
              Reflect.ownKeys(signer).map((key) => [String(key), Reflect.get(signer, key)]),
            ),
            { showHidden: true, depth: Infinity },
          ),
          false,
        ],
      ];
      for (const [what, text, showsPublicKey] of shown) {
        assert.ok(!revealsSeed(text, seed), `${what} reveals the seed: ${text}`);
        if (showsPublicKey) assert.ok(text.includes(publicHex), `${what}: ${text}`);
      }
      // The check itself can see a seed where there is one.
      assert.ok(revealsSeed(Deno.inspect(fromHex(seed)), seed));
      assert.ok(revealsSeed(JSON.stringify({ seed }), seed));
    }
  });
});
