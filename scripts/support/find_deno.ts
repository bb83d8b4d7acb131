/**
 * The Deno that runs the services: the pinned one in `.tools/bin/deno`
 * (scripts/nexus.sh installs it), else a `deno` on PATH (which
 * scripts/nexus.sh uses only when it is the pinned version). Only these two
 * are in the `run` lists of the `stack` and `launch` permission sets.
 *
 * @module
 */

const ROOT = new URL("../../", import.meta.url).pathname;

/**
 * The first of `.tools/bin/deno` and `deno` that runs.
 * @throws {Error} saying how to install one when neither does.
 */
export async function findDeno(): Promise<string> {
  for (const candidate of [`${ROOT}.tools/bin/deno`, "deno"]) {
    try {
      const out = await new Deno.Command(candidate, {
        args: ["--version"],
        stdout: "null",
        stderr: "null",
      }).output();
      if (out.success) return candidate;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  throw new Error(
    "no Deno to run the services: run `npm start` once (it installs .tools/bin/deno)",
  );
}
