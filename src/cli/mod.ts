/**
 * What every executable's `main.ts` shares: the command line parsed with
 * usage errors, SIGINT/SIGTERM as one abort signal, and errors mapped to
 * one line and a distinct exit status.
 *
 * @module
 */
export {
  type CommandLine,
  describeFailure,
  type FlagSpec,
  parseCommandLine,
  printHelp,
  runCli,
  stopSignal,
  usage,
} from "./cli.ts";
export { EXIT, type ExitCode } from "./exit_codes.ts";
