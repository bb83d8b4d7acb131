/**
 * The HSM PIN comes from a file, an environment variable, or a prompt —
 * never from a command-line argument, which other users can read in the
 * process list and which shells keep in their history (docs/design.md §8).
 *
 * @module
 */
import { formatMode, readSecretFile } from "../src/config/secret_file.ts";
import { HsmError } from "../src/errors.ts";

/** Where to read the PIN, tried in this order. */
export interface PinSource {
  /**
   * A file holding the PIN (trailing newline ignored). Group and others
   * must have no access to it (mode 0600 or 0400), or it is refused.
   */
  file?: string;
  /** The name of an environment variable holding the PIN. */
  env?: string;
  /** Ask on the terminal when neither gives one (default false). */
  prompt?: boolean;
}

/**
 * The PIN from the first source that has one.
 *
 * A PIN file whose mode gives group or others any access is refused before
 * it is read, and the other sources are not tried: a PIN others may have
 * read must be presumed known (with it, anyone who reaches the token signs as
 * the authority), and falling back to the environment would hide that. The
 * check is on the handle the PIN is read through, so the file checked is the
 * file read; under systemd, `LoadCredential=` files pass
 * (src/config/secret_file.ts, `forbiddenAccess`).
 * @throws {HsmError} `pin_file_mode` when the file's mode lets group or
 *   others in (the message names the file and its mode, never the PIN);
 *   `pin_missing` when no source has a PIN.
 */
export async function readPin(source: PinSource): Promise<string> {
  if (source.file !== undefined) {
    const read = await readSecretFile(source.file, 0o077);
    if (!read.ok) {
      throw new HsmError(
        "pin_file_mode",
        `PIN file ${source.file} has mode ${formatMode(read.mode)}; group and others must ` +
          `have no access: chmod 600 ${source.file}`,
      );
    }
    const pin = read.text.replace(/\r?\n$/, "");
    if (pin.length > 0) return pin;
  }
  if (source.env !== undefined) {
    const pin = Deno.env.get(source.env);
    if (pin !== undefined && pin.length > 0) return pin;
  }
  if (source.prompt && Deno.stdin.isTerminal()) {
    const pin = promptSecret("HSM user PIN: ");
    if (pin.length > 0) return pin;
  }
  throw new HsmError(
    "pin_missing",
    "no HSM PIN: give --pin-file, set the PIN environment variable, or run on a terminal",
  );
}

/** Reads a line from the terminal without echoing it. */
function promptSecret(question: string): string {
  const encoder = new TextEncoder();
  Deno.stdout.writeSync(encoder.encode(question));
  Deno.stdin.setRaw(true);
  const bytes: number[] = [];
  const buffer = new Uint8Array(1);
  try {
    for (;;) {
      const n = Deno.stdin.readSync(buffer);
      if (n === null || buffer[0] === 0x0d || buffer[0] === 0x0a) break;
      if (buffer[0] === 0x03) throw new HsmError("pin_missing", "PIN entry interrupted");
      if (buffer[0] === 0x7f) bytes.pop();
      else bytes.push(buffer[0]);
    }
  } finally {
    Deno.stdin.setRaw(false);
    Deno.stdout.writeSync(encoder.encode("\n"));
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}
