/**
 * The one backoff every reconnecting loop uses (the member runtime's link
 * to the authority, a gateway's relay registrations, an edge's path):
 * 500 ms doubling to 30 s, each wait drawn between half and one and a half
 * times the step. The doubling keeps a down peer from being hammered; the
 * jitter keeps processes that lost the same peer from retrying in step.
 *
 * @module
 */

/** Shortest step of the backoff, ms. */
export const BACKOFF_BASE_MS = 500;
/** Longest step of the backoff, ms. */
export const BACKOFF_MAX_MS = 30_000;

/**
 * The wait before attempt `attempt` (0 after a success): 500 ms doubling
 * to 30 s, times 0.5 to 1.5.
 *
 * @example
 * ```ts
 * import { backoffMs } from "./backoff.ts";
 * backoffMs(0, () => 0.5); // 500
 * backoffMs(10, () => 0.5); // 30000
 * ```
 */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  return Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16)) * (0.5 + random());
}

/** Resolves once `signal` aborts (at once when it already has); never rejects. */
export function whenAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}

/**
 * Resolves after `ms`, or as soon as `signal` aborts or `wake` settles,
 * whichever comes first; never rejects, and leaves no timer behind.
 */
export function sleep(
  ms: number,
  options: { signal?: AbortSignal; wake?: Promise<unknown> } = {},
): Promise<void> {
  const { signal, wake } = options;
  if (signal?.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    wake?.then(done, done);
  });
}
