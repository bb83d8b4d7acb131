/**
 * The authority's key ceremonies (docs/design.md §8): `init` generates the
 * signing key inside the HSM and creates the authority's identity from it;
 * `rotate` generates the next key and adds a change signed by the old and
 * the new key, both inside the HSM; `show` reports both.
 *
 * State directory:
 *
 * ```
 * authority.history        the change history (binary), the source of truth
 * authority.identity.json  the public identity file for gateways, relays, edges
 * authority.keys.json      HSM labels and ids of the history's keys, in order
 * authority.db             the service's store (authority/store.ts)
 * ```
 *
 * @module
 */
import { HsmSession, type KeySelector, type Pkcs11Signer } from "../hsm/pkcs11_signer.ts";
import type { HsmOptions } from "../hsm/pkcs11_signer.ts";
import { toHex } from "../src/encoding/hex.ts";
import { AuthorityError } from "../src/errors.ts";
import { verifyChangeHistory } from "../src/identity/change_history.ts";
import { Identity } from "../src/identity/identity.ts";
import { exportIdentity } from "../src/identity/identity_file.ts";

/** Files of the state directory. */
export function statePaths(stateDir: string) {
  return {
    history: `${stateDir}/authority.history`,
    identity: `${stateDir}/authority.identity.json`,
    keys: `${stateDir}/authority.keys.json`,
    db: `${stateDir}/authority.db`,
  };
}

/** One HSM key of the authority's history. */
export interface KeyRecord {
  label: string;
  id: string;
  publicKey: string;
}

/**
 * A short fingerprint an operator can read aloud to compare an identity
 * file with the authority: the identifier's first 80 bits in five groups.
 */
export function fingerprint(identifier: string): string {
  return identifier.slice(1, 21).match(/.{4}/g)!.join("-");
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

async function writeState(stateDir: string, identity: Identity, keys: KeyRecord[]): Promise<void> {
  const paths = statePaths(stateDir);
  // The history first: it is what every other file is derived from.
  await Deno.writeFile(`${paths.history}.new`, identity.history.encoded, { mode: 0o644 });
  await Deno.rename(`${paths.history}.new`, paths.history);
  await Deno.writeTextFile(paths.identity, exportIdentity(identity.history), { mode: 0o644 });
  await Deno.writeTextFile(paths.keys, JSON.stringify({ keys }, null, 2) + "\n", { mode: 0o644 });
}

/** Result of a ceremony. */
export interface CeremonyResult {
  identity: Identity;
  fingerprint: string;
  key: KeyRecord;
  session: HsmSession;
}

/** Options of {@link initAuthority}. */
export interface InitOptions {
  stateDir: string;
  hsm: HsmOptions;
  /** HSM label of the first key (default "nexus-authority-1"). */
  keyLabel?: string;
  /** HSM id of the first key, hex (default "01"). */
  keyId?: string;
  /** Use an existing HSM key (made by another tool) instead of generating one. */
  existingKey?: KeySelector;
}

/**
 * The first ceremony. Refuses when the state directory already holds an
 * authority or the HSM already holds a key with the label (nothing is
 * written then).
 * @throws {AuthorityError} `state_exists`; {HsmError} `key_exists` and the
 *   HSM's own failures.
 */
export async function initAuthority(options: InitOptions): Promise<CeremonyResult> {
  const paths = statePaths(options.stateDir);
  if (await exists(paths.history)) {
    throw new AuthorityError(
      "state_exists",
      `${paths.history} exists: this state directory already holds an authority`,
    );
  }
  const session = HsmSession.open(options.hsm);
  try {
    const signer: Pkcs11Signer = options.existingKey !== undefined
      ? session.findKey(options.existingKey)
      : session.generateKey({
        label: options.keyLabel ?? "nexus-authority-1",
        id: options.keyId ?? "01",
      });
    const identity = await Identity.create(signer);
    const key = { label: signer.label, id: signer.id, publicKey: toHex(signer.publicKey) };
    await Deno.mkdir(options.stateDir, { recursive: true, mode: 0o700 });
    await writeState(options.stateDir, identity, [key]);
    return { identity, fingerprint: fingerprint(identity.identifier), key, session };
  } catch (error) {
    session.close();
    throw error;
  }
}

/** Options of {@link loadAuthority}. */
export interface LoadOptions {
  stateDir: string;
  hsm: HsmOptions;
}

/** The authority's identity with its current HSM key, and the keys of its history. */
export interface LoadedAuthority {
  identity: Identity;
  keys: KeyRecord[];
  session: HsmSession;
}

/**
 * Loads the authority: verifies its history and finds the HSM key of its
 * current primary key.
 * @throws {AuthorityError} `state_missing`; {HsmError} (fail closed).
 */
export async function loadAuthority(options: LoadOptions): Promise<LoadedAuthority> {
  const paths = statePaths(options.stateDir);
  let history: Uint8Array;
  let keys: KeyRecord[];
  try {
    history = await Deno.readFile(paths.history);
    keys = (JSON.parse(await Deno.readTextFile(paths.keys)) as { keys: KeyRecord[] }).keys;
  } catch (cause) {
    if (cause instanceof Deno.errors.NotFound) {
      throw new AuthorityError(
        "state_missing",
        `no authority in ${options.stateDir}: run "authority init" first`,
        { cause },
      );
    }
    throw cause;
  }
  const verified = await verifyChangeHistory(history);
  const current = keys.at(-1);
  if (current === undefined || current.publicKey !== toHex(verified.primaryKey)) {
    throw new AuthorityError(
      "store_corrupt",
      `${paths.keys} does not name the history's current key`,
    );
  }
  const session = HsmSession.open(options.hsm);
  try {
    const signer = session.findKey({ label: current.label, id: current.id });
    const identity = await Identity.fromHistory(verified.history, signer);
    return { identity, keys, session };
  } catch (error) {
    session.close();
    throw error;
  }
}

/**
 * The rotation ceremony: a new HSM key and a change signed by the current
 * and the new key. Returns the rotated authority.
 */
export async function rotateAuthority(options: LoadOptions): Promise<CeremonyResult> {
  const loaded = await loadAuthority(options);
  try {
    const n = loaded.keys.length + 1;
    const next = loaded.session.generateKey({
      label: `nexus-authority-${n}`,
      id: n.toString(16).padStart(2, "0"),
    });
    const identity = await loaded.identity.rotate(next);
    const key = { label: next.label, id: next.id, publicKey: toHex(next.publicKey) };
    await writeState(options.stateDir, identity, [...loaded.keys, key]);
    return {
      identity,
      fingerprint: fingerprint(identity.identifier),
      key,
      session: loaded.session,
    };
  } catch (error) {
    loaded.session.close();
    throw error;
  }
}

/** What `authority show` prints, as data. */
export interface AuthorityDescription {
  identifier: string;
  fingerprint: string;
  changes: number;
  keys: (KeyRecord & {
    current: boolean;
    inHsm: boolean;
    extractable?: boolean;
    sensitive?: boolean;
    valueReadable?: boolean;
  })[];
}

/** Describes the authority and checks each of its keys in the HSM. */
export async function describeAuthority(options: LoadOptions): Promise<AuthorityDescription> {
  const loaded = await loadAuthority(options);
  try {
    return {
      identifier: loaded.identity.identifier,
      fingerprint: fingerprint(loaded.identity.identifier),
      changes: loaded.identity.history.changes.length,
      keys: loaded.keys.map((key, i) => {
        const current = i === loaded.keys.length - 1;
        if (!loaded.session.hasKey({ label: key.label, id: key.id })) {
          return { ...key, current, inHsm: false };
        }
        const signer = loaded.session.findKey({ label: key.label, id: key.id });
        return {
          ...key,
          current,
          inHsm: true,
          extractable: signer.extractable,
          sensitive: signer.sensitive,
          valueReadable: signer.valueReadable(),
        };
      }),
    };
  } finally {
    loaded.session.close();
  }
}
