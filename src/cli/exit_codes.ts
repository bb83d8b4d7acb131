/**
 * Exit statuses shared by every executable (`nexus-authority`, `nexus-relay`,
 * `nexus-gateway`, `nexus-edge`, `nexus-service`), so that a supervisor or
 * an operator's script can tell why a process ended without reading its
 * log. Documented in docs/operations.md ("Exit statuses").
 *
 * @module
 */

/** The exit statuses, by name. */
export const EXIT = Object.freeze({
  /** Done, or stopped by SIGINT/SIGTERM. */
  ok: 0,
  /** Failed at run time: an authority that refused, a peer that broke the protocol, an I/O error. */
  runtime: 1,
  /** The command line is wrong: an unknown command or flag, a missing argument. */
  usage: 2,
  /** `status`: the service answers but is not up (no path, not ready). */
  notReady: 3,
  /** The configuration is wrong: a file that cannot be read or parsed, a field that fails its check. */
  config: 4,
  /** The permission set forbids something the configuration asks for (Deno's `NotCapable`). */
  permission: 5,
  /** The HSM PIN is missing, wrong or locked: never retried, to keep the token's PIN counter. */
  hsmPin: 6,
  /** The HSM cannot be used: module, token, key or mechanism missing, or a PKCS#11 failure. */
  hsm: 7,
});

/** One of the {@link EXIT} statuses. */
export type ExitCode = typeof EXIT[keyof typeof EXIT];
