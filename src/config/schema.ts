/**
 * The building blocks of every executable's configuration schema, over
 * zod (docs/architecture.md, "Configuration": why a schema library). Each
 * block carries the one message an operator reads when the field is wrong
 * (`"relays[0]" must be HOST:PORT, got "relay-1"`), so that all five
 * executables word their errors alike; {@link secret} fields never quote
 * their value, whatever is wrong with them.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import { hostPort, nonEmpty, object } from "./schema.ts";
 * const Relay = object({ listen: hostPort().default("0.0.0.0:4000"), trust: z.array(nonEmpty()) });
 * Relay.parse({ trust: ["/etc/nexus/authority.identity.json"] }).listen; // "0.0.0.0:4000"
 * ```
 *
 * @module
 */
import { z } from "zod";
import { parseHostPort } from "./host_port.ts";

const NON_EMPTY = "must be a non-empty string";

/** A value quoted for an error message: JSON, cut to 60 characters. */
export function quoteValue(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** A non-empty string; `message` says what else it must be. */
export function nonEmpty(message: string = NON_EMPTY): z.ZodString {
  return z.string({ error: message }).min(1, { error: message });
}

/**
 * A secret (a ticket, a license key): a non-empty string whose value no
 * error message ever quotes.
 */
export function secret(): z.ZodString {
  return nonEmpty();
}

/** `host:port`, IPv6 in brackets. */
export function hostPort(): z.ZodString {
  return nonEmpty().refine(isHostPort, {
    error: (issue) => `must be HOST:PORT, got ${quoteValue(issue.input)}`,
  });
}

/**
 * The authority's endpoints: one `host:port`, or a list of them (replicas,
 * tried in order, the next one when one fails: the member runtime's
 * failover, src/member/member.ts). Checked as a list either way.
 */
export function authorityAddresses(): z.ZodType<string[], string | string[]> {
  return z.union([hostPort().transform((one) => [one]), z.array(hostPort()).min(1).max(16)], {
    error: "must be HOST:PORT or a list of one to 16 of them",
  });
}

/** `host:port`, or `"off"` (an operations endpoint that is not served). */
export function hostPortOrOff(): z.ZodString {
  return nonEmpty().refine((v) => v === "off" || isHostPort(v), {
    error: (issue) => `must be HOST:PORT or "off", got ${quoteValue(issue.input)}`,
  });
}

/** True when `text` parses as `host:port`. */
export function isHostPort(text: string): boolean {
  try {
    parseHostPort(text, "address");
    return true;
  } catch {
    return false;
  }
}

/** A whole number of at least `min`; `what` names the unit (e.g. "milliseconds"). */
export function wholeNumber(what: string, min: number): z.ZodNumber {
  const message = `must be a whole number of ${what}, ${min} or more`;
  return z.number({ error: message }).int({ error: message }).min(min, { error: message });
}

/** A number above 0 (a rate, say), finite. */
export function positiveNumber(): z.ZodNumber {
  const message = "must be a number above 0";
  return z.number({ error: message }).positive({ error: message }).finite({ error: message });
}

/**
 * A whole number given as a JSON number or as digits in a string (the
 * relay's and the authority's files write `"max-connections": "20000"`).
 */
export function countOrDigits(what: string, min: number): z.ZodType<number> {
  const message = `must be a positive whole number of ${what}`;
  return z.union([z.number(), z.string().regex(/^\d+$/)], { error: message })
    .transform(Number)
    .pipe(z.number().int().min(min, { error: message }));
}

/** True or false. */
export function flag(): z.ZodBoolean {
  return z.boolean({ error: "must be true or false" });
}

/** A name: letters, digits, `_`, `.` and `-`, at most 64 characters. */
export function name(): z.ZodString {
  return nonEmpty("must be a name (letters, digits, _.-)")
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, { error: "must be a name (letters, digits, _.-)" });
}

/** An identifier: `I` and 64 lowercase hex digits. */
export function identifier(): z.ZodString {
  return nonEmpty().regex(/^I[0-9a-f]{64}$/, {
    error: "must be I followed by 64 hex digits",
  });
}

/** An object whose unknown keys are refused (a typo is an error, not a silent default). */
export function object<T extends z.ZodRawShape>(shape: T): z.ZodObject<T, z.core.$strict> {
  return z.strictObject(shape, { error: "is required" });
}

/** The record cipher backends an executable may be told to use (`cipher.backend`). */
export const CIPHER_BACKENDS = ["auto", "openssl", "webcrypto"] as const;

/**
 * The `cipher` block of the executables that carry channel records (edge,
 * gateway, agent): which AES-GCM seals them (docs/operations.md §2.3).
 * `auto` (the default) takes OpenSSL when the permission set allows FFI
 * for `library`, and WebCrypto otherwise; `openssl` refuses to start
 * without it; `webcrypto` never loads native code.
 */
export function cipherBlock(defaultLibrary: string): z.ZodPrefault<
  z.ZodObject<{
    backend: z.ZodDefault<z.ZodEnum<{ [K in (typeof CIPHER_BACKENDS)[number]]: K }>>;
    library: z.ZodDefault<z.ZodString>;
  }, z.core.$strict>
> {
  return object({
    backend: z.enum(CIPHER_BACKENDS, { error: `must be one of ${CIPHER_BACKENDS.join(", ")}` })
      .default("auto"),
    library: nonEmpty().default(defaultLibrary),
  }).prefault({});
}
