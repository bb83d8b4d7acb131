/**
 * Secret files: a ticket, a license key or an HSM PIN that an executable
 * reads from a file named by its configuration or command line, so that the
 * secret is neither on a command line (which `ps` shows to every user) nor
 * in a configuration file that many may read.
 *
 * A file whose mode lets the wrong people read it is refused before its
 * content is read: its secret must be presumed copied, and starting with it
 * would hide that. The mode is checked on the handle the content is read
 * through (one open, then `stat` and `read`), so the file checked is the file
 * read even if the path is swapped in between.
 *
 * @example
 * ```ts ignore
 * import { readSecretFile } from "./secret_file.ts";
 * const read = await readSecretFile("/etc/nexus/hsm.pin", 0o077);
 * if (!read.ok) throw new Error(`mode ${read.mode.toString(8)}: chmod 600 it`);
 * read.text;
 * ```
 *
 * @module
 */
import { ConfigError } from "../errors.ts";

/**
 * systemd's credentials directory for system services (`LoadCredential=`,
 * `%d` in a unit). See {@link forbiddenAccess} for why it is special.
 */
export const SYSTEMD_CREDENTIALS_DIR = "/run/credentials/";

/** What {@link readSecretFile} found: the text, or the mode that refused it. */
export type SecretFileRead =
  | { readonly ok: true; readonly text: string }
  | { readonly ok: false; readonly mode: number };

/** A mode's permission bits as four octal digits, as `chmod` takes them: `0644`. */
export function formatMode(mode: number): string {
  return (mode & 0o777).toString(8).padStart(4, "0");
}

/**
 * The bits of `refuse` that `mode` grants, for the file at `path`; 0 when
 * it may be read. `refuse` names what must be clear, e.g. `0o077` (no access
 * for group and others) or `0o004` (others may not read).
 *
 * One exception, for the group bits only: a file in systemd's credentials
 * directory ({@link SYSTEMD_CREDENTIALS_DIR}). systemd writes each credential
 * there as 0400 and, where the file system has POSIX ACLs (tmpfs, which
 * systemd prefers on current kernels), grants the service's user read with
 * an ACL entry; `stat` then shows the ACL's mask in the group bits (0440)
 * while the owning group itself has no access. That directory is root's (only
 * systemd writes to it) and readable by the service alone, so its group bits
 * say nothing about who else may read; the other bits are still checked. A
 * path with `..` in it never gets the exception.
 */
export function forbiddenAccess(path: string, mode: number, refuse: number): number {
  const credential = path.startsWith(SYSTEMD_CREDENTIALS_DIR) &&
    !path.split("/").includes("..");
  return mode & refuse & (credential ? ~0o070 : ~0);
}

/**
 * Reads the text of the secret file at `path` unless its mode grants any of
 * the bits `refuse` names ({@link forbiddenAccess}); then the content is not
 * read and the mode is returned instead. On a system without POSIX modes
 * (Windows: `stat` gives none) nothing is refused.
 * @throws whatever opening or reading the file throws (`NotFound`, `NotCapable`, ...).
 */
export async function readSecretFile(path: string, refuse: number): Promise<SecretFileRead> {
  using file = await Deno.open(path, { read: true });
  const { mode } = await file.stat();
  if (mode !== null && forbiddenAccess(path, mode, refuse) !== 0) return { ok: false, mode };
  return { ok: true, text: await new Response(file.readable).text() };
}

/** How {@link readSecretLine} checks a file and words its refusal. */
export interface SecretLineOptions {
  /** The mode bits that must be clear ({@link forbiddenAccess}); default 0, nothing checked. */
  readonly refuse?: number;
  /**
   * What the error says when the mode is refused, given the mode (`0644`);
   * default `which group or others may access (mode 0644): chmod 600 it`.
   */
  readonly refusal?: (mode: string) => string;
}

/**
 * The first line of the secret file at `path`, trimmed: what a configuration
 * field such as `licenseFile` or `ticketFile` names.
 * @throws {ConfigError} `invalid`, naming `field` and the file, never its
 *   content: the file cannot be read, its mode is refused, or its first line
 *   is empty. Deno's `NotCapable` as it is (the CLI maps it to its own status).
 */
export async function readSecretLine(
  path: string,
  field: string,
  options: SecretLineOptions = {},
): Promise<string> {
  const fail = (what: string): never => {
    throw new ConfigError("invalid", `config: "${field}" names ${path}, ${what}`, { field });
  };
  let read: SecretFileRead;
  try {
    read = await readSecretFile(path, options.refuse ?? 0);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) throw error;
    return fail(`which cannot be read: ${(error as Error).name}`);
  }
  if (!read.ok) {
    const mode = formatMode(read.mode);
    return fail(
      options.refusal?.(mode) ?? `which group or others may access (mode ${mode}): chmod 600 it`,
    );
  }
  const first = read.text.split("\n")[0].trim();
  if (first === "") fail("which is empty");
  return first;
}
