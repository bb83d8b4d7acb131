/**
 * Reading a child process's output line by line: {@link LineStream} splits
 * text into lines, {@link Lines} collects a stream's lines as they come (to
 * wait for one, or to show what a child printed), and {@link lineReader}
 * reads them one at a time.
 *
 * @module
 */
import { deadline } from "./deadline.ts";

/**
 * Splits text into lines, without their `\n`. A last line without one is
 * passed on when the text ends.
 */
export class LineStream extends TransformStream<string, string> {
  constructor() {
    let rest = "";
    super({
      transform(chunk, controller) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        for (const line of parts) controller.enqueue(line);
      },
      flush(controller) {
        if (rest !== "") controller.enqueue(rest);
      },
    });
  }
}

/** The lines of a byte stream (UTF-8), as a stream. */
export function linesOf(stream: ReadableStream<Uint8Array>): ReadableStream<string> {
  return stream.pipeThrough(new TextDecoderStream()).pipeThrough(new LineStream());
}

/** Options of {@link Lines}. */
export interface LinesOptions {
  /** Called with each line as it comes (before {@link Lines.changed} resolves). */
  onLine?: (line: string) => void;
  /** Keep only the last `keep` lines (default: all). */
  keep?: number;
}

/** Lines of a stream, collected as they come, until the stream ends. */
export class Lines {
  /** The lines so far (the last `keep` of them, with that option). */
  readonly lines: string[] = [];
  /** True once the stream has ended (or failed: a child that went away). */
  ended = false;
  /** Resolves once the stream has ended; never rejects. */
  readonly done: Promise<void>;
  #waiters: (() => void)[] = [];

  /** Starts reading `stream` (it is locked from now on). */
  constructor(stream: ReadableStream<Uint8Array>, options: LinesOptions = {}) {
    const { onLine, keep = Infinity } = options;
    this.done = (async () => {
      for await (const line of linesOf(stream)) {
        this.lines.push(line);
        if (this.lines.length > keep) this.lines.shift();
        onLine?.(line);
        this.#wake();
      }
    })().catch(() => {}).finally(() => {
      this.ended = true;
      this.#wake();
    });
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }

  /** The last `last` lines, joined with newlines. */
  text(last = 60): string {
    return this.lines.slice(-last).join("\n");
  }

  /**
   * Resolves at the next line or when the stream ends. Once it has ended
   * nothing changes any more: the promise then stays pending.
   */
  changed(): Promise<void> {
    if (this.ended) return new Promise(() => {});
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /**
   * The first line (from index `from` of {@link lines} on) matching
   * `pattern`; null when the stream ends first.
   * @throws {Error} when none comes within `ms`.
   */
  async waitFor(pattern: RegExp, ms: number, from = 0): Promise<string | null> {
    const until = Date.now() + ms;
    for (;;) {
      const line = this.lines.slice(from).find((l) => pattern.test(l));
      if (line !== undefined) return line;
      if (this.ended) return null;
      const left = until - Date.now();
      if (left < 0) throw new Error(`no line matching ${pattern} in ${ms} ms`);
      await deadline(this.changed(), left + 1).catch(() => {});
    }
  }
}

/** Reads lines one at a time; see {@link lineReader}. */
export interface LineReader {
  /** The next line; null once the stream has ended. */
  next(): Promise<string | null>;
  /** Stops reading and cancels the stream. */
  cancel(): Promise<void>;
  /** Stops reading, leaving the rest of the stream unread. */
  release(): void;
}

/** Reads the lines of `stream` (a child's stdout, say) one at a time. */
export function lineReader(stream: ReadableStream<Uint8Array>): LineReader {
  const reader = linesOf(stream).getReader();
  return {
    async next() {
      const { value, done } = await reader.read();
      return done ? null : value;
    },
    cancel: () => reader.cancel().catch(() => {}),
    release: () => reader.releaseLock(),
  };
}
