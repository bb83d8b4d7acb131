/**
 * Secret keys at rest (docs/design.md §2): one JSON file per key, mode 0600, in a
 * state directory. Reading refuses a file that group or others may read,
 * as ssh does, because such a key must be presumed copied.
 *
 * @module
 */
import { IdentityError } from "../errors.ts";
import { fromHex, toHex } from "../encoding/hex.ts";
import { SoftwareSigner } from "./software_signer.ts";

const KIND = "nexus.ed25519.seed";

/**
 * Generates a key, writes it to `path` (mode 0600, never overwriting) and
 * returns its signer.
 * @throws {IdentityError} `key_file_exists` when `path` exists.
 */
export async function createKeyFile(path: string): Promise<SoftwareSigner> {
  const seed = crypto.getRandomValues(new Uint8Array(32));
  try {
    const text = JSON.stringify({ kind: KIND, version: 1, seed: toHex(seed) }) + "\n";
    try {
      await Deno.writeTextFile(path, text, { createNew: true, mode: 0o600 });
    } catch (cause) {
      if (cause instanceof Deno.errors.AlreadyExists) {
        throw new IdentityError("key_file_exists", `refusing to overwrite key file ${path}`, {
          cause,
        });
      }
      throw cause;
    }
    // The mode given at creation is filtered by the umask; set it exactly.
    await Deno.chmod(path, 0o600);
    return await SoftwareSigner.fromSeed(seed);
  } finally {
    seed.fill(0);
  }
}

/**
 * Reads the key file at `path`.
 * @throws {IdentityError} `key_file_permissions` when group or others may access it.
 * @throws {TypeError} when the file is not a key file.
 */
export async function readKeyFile(path: string): Promise<SoftwareSigner> {
  // One open, then stat and read through the same handle: the file checked is
  // the file read, even if the path is swapped in between.
  let text: string;
  const file = await Deno.open(path, { read: true });
  try {
    const info = await file.stat();
    if (!info.isFile) throw new TypeError(`key file ${path} is not a regular file`);
    if (info.mode !== null && (info.mode & 0o077) !== 0) {
      throw new IdentityError(
        "key_file_permissions",
        `key file ${path} has mode ${
          (info.mode & 0o777).toString(8)
        }; group and others must have no access (chmod 600)`,
      );
    }
    if (info.size > 4096) throw new TypeError(`key file ${path} is too large`);
    text = new TextDecoder().decode(await readAll(file, info.size));
  } finally {
    file.close();
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not echoing the content or the parser's message: either may quote key bytes.
    throw new TypeError(`key file ${path} is not valid JSON`);
  }
  const record = parsed as { kind?: unknown; version?: unknown; seed?: unknown };
  if (
    typeof record !== "object" || record === null || record.kind !== KIND ||
    record.version !== 1 || typeof record.seed !== "string" || !/^[0-9a-f]{64}$/.test(record.seed)
  ) {
    throw new TypeError(`key file ${path} is not a ${KIND} version 1 file`);
  }
  const seed = fromHex(record.seed);
  try {
    return await SoftwareSigner.fromSeed(seed);
  } finally {
    seed.fill(0);
  }
}

async function readAll(file: Deno.FsFile, size: number): Promise<Uint8Array> {
  const buffer = new Uint8Array(size);
  let filled = 0;
  while (filled < size) {
    const n = await file.read(buffer.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  return buffer.subarray(0, filled);
}

/** Reads the key file at `path`, creating it first when it does not exist. */
export async function loadOrCreateKeyFile(path: string): Promise<SoftwareSigner> {
  try {
    return await readKeyFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return await createKeyFile(path);
    throw error;
  }
}
