/**
 * What a process uses, from /proc (Linux): resident memory and CPU time.
 *
 * /proc is read through `cat` (the run permission): Deno 2.9 wants
 * --allow-all to read anything under /proc itself.
 *
 * @module
 */

/** Output of a short command (stderr discarded). */
export async function commandOutput(command: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "null" }).output();
  if (!out.success) throw new Error(`${command} ${args.join(" ")} failed`);
  return new TextDecoder().decode(out.stdout);
}

/** Resident memory of a process, KiB: now (VmRSS) and its peak so far (VmHWM). */
export interface Memory {
  /** Resident set size now, KiB. */
  rss: number;
  /** Peak resident set size so far, KiB. */
  hwm: number;
}

/** Memory of each of `pids`, read with one `cat` of their /proc status files. */
export async function memoryOf(pids: number[]): Promise<Map<number, Memory>> {
  const text = await commandOutput("cat", pids.map((pid) => `/proc/${pid}/status`));
  const result = new Map<number, Memory>();
  for (const status of text.split(/^(?=Name:)/m)) {
    const field = (name: string) =>
      Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? NaN);
    const pid = field("Pid");
    if (Number.isFinite(pid)) result.set(pid, { rss: field("VmRSS"), hwm: field("VmHWM") });
  }
  return result;
}

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on Linux everywhere). */
const CLOCK_TICKS = 100;

/** CPU seconds (user + system) a process has used. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await commandOutput("cat", [`/proc/${pid}/stat`]);
  // Fields after the command name (which may hold spaces) start at state.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}
