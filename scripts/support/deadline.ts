/**
 * Time limits on promises, with the timer always cleared (so that tests'
 * op sanitizer sees no timer left behind).
 *
 * @module
 */

/**
 * Resolves with `promise`, or rejects after `ms` saying that `what` timed
 * out; the timer is cleared either way.
 * @throws {Error} `${what} timed out after ${ms} ms`
 */
export async function deadline<T>(promise: Promise<T>, ms: number, what = "waiting"): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Waits for `promise` to settle, at most `ms`: true if it settled in time
 * (resolved or rejected), false if the time ran out.
 */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  try {
    await deadline(promise.catch(() => {}), ms);
    return true;
  } catch {
    return false;
  }
}
