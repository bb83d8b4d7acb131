/**
 * `deno run -A tests/support/memory_scan.ts <pid> <needle>...`: prints, as
 * JSON, how many times each needle occurs in the resident memory of
 * process <pid> (tap.ts `scanMemory`).
 *
 * Why `-A`: Deno asks for every permission before it reads anything under
 * /proc/<pid>/ (mem, pagemap, smaps), whatever read permission is given, so
 * the scan cannot run under the test permission set. It runs as its own
 * process, for this one read-only job, and prints counts, never memory.
 */
import { scanMemory } from "./tap.ts";

if (import.meta.main) {
  const [pid, ...needles] = Deno.args;
  const counts = await scanMemory(Number(pid), needles);
  console.log(JSON.stringify(Object.fromEntries(counts)));
}
