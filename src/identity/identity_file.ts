/**
 * Public identity files: an identity's change history as JSON, so that an
 * operator can copy the authority's identity to gateways, relays and edges,
 * where it becomes a trust anchor.
 *
 * ```json
 * { "kind": "nexus.identity", "version": 1,
 *   "identifier": "I…", "change_history": "<hex of the encoded history>" }
 * ```
 *
 * `identifier` is redundant (it is derived from the history) and is checked
 * on import, so a file whose name or text was edited by hand cannot
 * silently anchor another identity.
 *
 * @module
 */
import { fromHex, toHex } from "../encoding/hex.ts";
import { IdentityError } from "../errors.ts";
import {
  type ChangeHistory,
  MAX_HISTORY_BYTES,
  type VerifiedIdentity,
  verifyChangeHistory,
} from "./change_history.ts";

const KIND = "nexus.identity";

/** The text of an identity file for `history`. */
export function exportIdentity(history: ChangeHistory): string {
  return JSON.stringify(
    {
      kind: KIND,
      version: 1,
      identifier: history.identifier,
      change_history: toHex(history.encoded),
    },
    null,
    2,
  ) + "\n";
}

/**
 * Verifies the identity in an identity file's text.
 * @throws {TypeError} when the text is not an identity file.
 * @throws {IdentityError} `identifier_mismatch`, or any verification error.
 */
export async function importIdentity(text: string): Promise<VerifiedIdentity> {
  if (text.length > MAX_HISTORY_BYTES * 2 + 1024) {
    throw new RangeError("identity file is too large");
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new TypeError("identity file is not valid JSON", { cause });
  }
  const record = parsed as Record<string, unknown>;
  if (
    typeof record !== "object" || record === null || record.kind !== KIND ||
    record.version !== 1 || typeof record.identifier !== "string" ||
    typeof record.change_history !== "string"
  ) {
    throw new TypeError(`not a ${KIND} version 1 file`);
  }
  const verified = await verifyChangeHistory(fromHex(record.change_history));
  if (verified.identifier !== record.identifier) {
    throw new IdentityError(
      "identifier_mismatch",
      `identity file names ${record.identifier} but holds ${verified.identifier}`,
    );
  }
  return verified;
}

/** Writes `history`'s identity file to `path` (public: mode 0644). */
export async function writeIdentityFile(path: string, history: ChangeHistory): Promise<void> {
  await Deno.writeTextFile(path, exportIdentity(history), { mode: 0o644 });
}

/** Reads and verifies the identity file at `path`. */
export async function readIdentityFile(path: string): Promise<VerifiedIdentity> {
  return await importIdentity(await Deno.readTextFile(path));
}
