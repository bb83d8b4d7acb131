/**
 * A fresh SoftHSM2 token in a temporary directory, for tests and the local
 * demo: its own softhsm2.conf and token directory, initialised with
 * softhsm2-util. Nothing outside the directory is touched.
 *
 * @module
 */

/** SoftHSM2's PKCS#11 module as Debian installs it. */
export const SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so";

/** A token made by {@link createSoftHsmToken}. */
export interface SoftHsmToken {
  readonly dir: string;
  /** Path of the softhsm2.conf to put in SOFTHSM2_CONF. */
  readonly conf: string;
  readonly modulePath: string;
  readonly tokenLabel: string;
  readonly pin: string;
  readonly soPin: string;
  /** A 0600 file holding the user PIN. */
  readonly pinFile: string;
  /** Removes the directory. */
  remove(): Promise<void>;
}

/**
 * Creates a token. `dir` defaults to a new temporary directory; pass one to
 * keep the token (the demo keeps it in its state folder).
 */
export async function createSoftHsmToken(
  options: { dir?: string; label?: string; pin?: string } = {},
): Promise<SoftHsmToken> {
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "nexus-softhsm-" });
  const tokens = `${dir}/tokens`;
  await Deno.mkdir(tokens, { recursive: true, mode: 0o700 });
  const conf = `${dir}/softhsm2.conf`;
  await Deno.writeTextFile(
    conf,
    `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`,
  );
  const tokenLabel = options.label ?? "nexus-authority";
  const pin = options.pin ?? "1234-" + crypto.randomUUID().slice(0, 8);
  const soPin = "so-" + crypto.randomUUID().slice(0, 12);
  const { code, stderr } = await new Deno.Command("softhsm2-util", {
    args: ["--init-token", "--free", "--label", tokenLabel, "--so-pin", soPin, "--pin", pin],
    env: { SOFTHSM2_CONF: conf },
    stdout: "null",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    throw new Error(`softhsm2-util failed: ${new TextDecoder().decode(stderr)}`);
  }
  // A new file, made 0600 (the umask can only take bits away): the mode
  // given to a write does not change a file that was there already (a reused
  // `dir`), and the authority refuses a PIN file that group or others may
  // access (hsm/pin.ts).
  const pinFile = `${dir}/user.pin`;
  await Deno.remove(pinFile).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
  await Deno.writeTextFile(pinFile, pin + "\n", { createNew: true, mode: 0o600 });
  return {
    dir,
    conf,
    modulePath: SOFTHSM_MODULE,
    tokenLabel,
    pin,
    soPin,
    pinFile,
    remove: () => Deno.remove(dir, { recursive: true }),
  };
}
