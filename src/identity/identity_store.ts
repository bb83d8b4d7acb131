/**
 * A process's own identity kept in its state directory: `<name>.key`
 * (the Ed25519 seed, mode 0600) and `<name>.history` (the public change
 * history). Created on first use, verified on every load.
 *
 * @module
 */
import { verifyChangeHistory } from "./change_history.ts";
import { Identity } from "./identity.ts";
import { loadOrCreateKeyFile, readKeyFile } from "./key_file.ts";

/** Loads the identity `name` from `stateDir`, creating it (and the directory) if absent. */
export async function loadOrCreateIdentity(stateDir: string, name: string): Promise<Identity> {
  await Deno.mkdir(stateDir, { recursive: true, mode: 0o700 });
  const keyPath = `${stateDir}/${name}.key`;
  const historyPath = `${stateDir}/${name}.history`;
  try {
    const verified = await verifyChangeHistory(await Deno.readFile(historyPath));
    return await Identity.fromHistory(verified.history, await readKeyFile(keyPath));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const identity = await Identity.create(await loadOrCreateKeyFile(keyPath));
  await Deno.writeFile(historyPath, identity.history.encoded, { mode: 0o644 });
  return identity;
}
