/**
 * The V8 flags every service runs with: the one list that the deno.json
 * tasks, the systemd units in deploy/, the launcher (`deno task launch`),
 * the local stack and the benchmarks' deployments pass as `--v8-flags=`
 * (tests/runtime_flags_test.ts checks that the text ones agree).
 *
 * `--max-semi-space-size=1` (MiB): V8 sizes the young generation by the
 * machine's memory, up to 16 MiB per semi-space here (24 GiB). A service's
 * hot path allocates little that survives (records are sealed into pooled
 * buffers, payloads are views), so a small nursery costs scavenges that
 * find almost nothing alive, and saves tens of MiB of resident memory per
 * process under load (docs/operations.md §2.4; docs/benchmarks.md).
 *
 * @module
 */

/** The V8 flags of every service, as V8 spells them. */
export const SERVICE_V8_FLAGS: readonly string[] = ["--max-semi-space-size=1"];

/**
 * The Deno argument that passes {@link SERVICE_V8_FLAGS}, to put after
 * `deno run` and before the script.
 *
 * @example
 * ```ts
 * import { serviceV8Flag } from "./runtime_flags.ts";
 * const args = ["run", "-q", "--no-prompt", "-P=relay", serviceV8Flag(), "relay/main.ts"];
 * ```
 */
export function serviceV8Flag(): string {
  return `--v8-flags=${SERVICE_V8_FLAGS.join(",")}`;
}
