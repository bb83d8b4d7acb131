/**
 * What every executable's `main.ts` shares: the command line parsed into
 * typed values with usage errors instead of stack traces, SIGINT and
 * SIGTERM turned into one abort signal, and every error mapped to one line
 * on stderr and a distinct exit status ({@link EXIT}).
 *
 * A `main.ts` is then: parse flags, load the configuration, call the
 * library's `run(config, { signal })`.
 *
 * @example
 * ```ts ignore
 * import { runCli, parseCommandLine } from "./cli.ts";
 * if (import.meta.main) {
 *   runCli("nexus-relay", async (signal) => {
 *     const { values } = parseCommandLine(Deno.args, { config: { type: "string" } });
 *     await run(await loadRelayConfig(values), { signal });
 *   });
 * }
 * ```
 *
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { CipherBackendError, ConfigError, HsmError, NexusError, PolicyError } from "../errors.ts";
import { EXIT, type ExitCode } from "./exit_codes.ts";

/** The options `node:util`'s `parseArgs` takes, by long name. */
export type FlagSpec = NonNullable<ParseArgsConfig["options"]>;

/** What {@link parseCommandLine} returns: the flags by name, and the positionals. */
export interface CommandLine {
  /** Each flag's value: a string, a boolean, or a list for `multiple` flags. */
  readonly values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  /** The words that are not flags: the command and its arguments. */
  readonly positionals: string[];
}

/**
 * Parses `args` against `flags` (positionals allowed).
 * @throws {ConfigError} `usage` for an unknown flag or a flag without its value.
 */
export function parseCommandLine(args: string[], flags: FlagSpec): CommandLine {
  try {
    const { values, positionals } = parseArgs({
      args,
      options: flags,
      allowPositionals: true,
      strict: true,
    });
    return { values: values as CommandLine["values"], positionals };
  } catch (error) {
    const text = error instanceof Error ? error.message : String(error);
    throw new ConfigError("usage", `${text.replace(/\. To specify.*$/s, "")}; see --help`);
  }
}

/** A usage error (exit status 2) with `message`. */
export function usage(message: string): ConfigError {
  return new ConfigError("usage", message);
}

/**
 * HSM codes that mean "the PIN": never retried, so they get their own status.
 * `pin_file_mode` (a PIN file others may read) is one: the fix is the PIN's
 * file, not the HSM.
 */
const PIN_CODES: ReadonlySet<string> = new Set([
  "wrong_pin",
  "pin_locked",
  "pin_missing",
  "pin_file_mode",
]);

/**
 * The exit status and the one line to print for `error`. Messages come from
 * the project's own errors, which never carry key material; anything else
 * is reported by name and message only, never by dumping the object.
 */
export function describeFailure(error: unknown): { code: ExitCode; message: string } {
  if (error instanceof ConfigError) {
    return { code: error.code === "usage" ? EXIT.usage : EXIT.config, message: error.message };
  }
  if (error instanceof Deno.errors.NotCapable) {
    return {
      code: EXIT.permission,
      message: `permission denied: ${error.message} (outside this executable's permission set; ` +
        "`deno task permissions <service> --config FILE` prints the flags a configuration needs)",
    };
  }
  if (error instanceof HsmError) {
    return {
      code: PIN_CODES.has(error.code) ? EXIT.hsmPin : EXIT.hsm,
      message: `${error.message} [${error.code}]`,
    };
  }
  if (error instanceof PolicyError) {
    return { code: EXIT.config, message: `${error.message} [${error.code}]` };
  }
  if (error instanceof CipherBackendError) {
    return {
      code: error.code === "no_permission" ? EXIT.permission : EXIT.config,
      message:
        `${error.message} [${error.code}] (cipher.backend "auto" or "webcrypto" runs without it)`,
    };
  }
  if (error instanceof NexusError) {
    return { code: EXIT.runtime, message: `${error.message} [${error.code}]` };
  }
  if (error instanceof Error) {
    return { code: EXIT.runtime, message: `${error.name}: ${error.message}` };
  }
  return { code: EXIT.runtime, message: String(error) };
}

/**
 * An abort signal that fires on the first SIGINT or SIGTERM: what
 * `run(config, { signal })` stops on. The listeners are removed once it
 * fires, so a second signal gets the runtime's default (the process ends).
 */
export function stopSignal(): AbortSignal {
  const controller = new AbortController();
  const signals = ["SIGINT", "SIGTERM"] as const;
  const stop = () => {
    for (const name of signals) Deno.removeSignalListener(name, stop);
    controller.abort(new Error("stopped by signal"));
  };
  for (const name of signals) Deno.addSignalListener(name, stop);
  return controller.signal;
}

/**
 * Runs an executable's `main` and exits: with the status `main` returns
 * (default {@link EXIT.ok}), or, when it throws, with the status
 * {@link describeFailure} gives, after printing `<name>: <message>` on
 * stderr.
 */
export async function runCli(
  name: string,
  main: (signal: AbortSignal) => Promise<ExitCode | void>,
): Promise<never> {
  let code: ExitCode;
  try {
    code = (await main(stopSignal())) ?? EXIT.ok;
  } catch (error) {
    const failure = describeFailure(error);
    console.error(`${name}: ${failure.message}`);
    code = failure.code;
  }
  Deno.exit(code);
}

/**
 * Prints `help` on stdout and returns {@link EXIT.ok} when it was asked
 * for (`--help`), {@link EXIT.usage} when the command line said nothing.
 */
export function printHelp(help: string, asked: boolean): ExitCode {
  console.log(help);
  return asked ? EXIT.ok : EXIT.usage;
}
