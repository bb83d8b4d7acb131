/**
 * curl, for tests that reach services the way a user would.
 *
 * @module
 */

/** Runs curl (silent, errors shown, 15 s at most) and returns what it printed. */
export async function curl(
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command("curl", {
    args: ["-sS", "--max-time", "15", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}
