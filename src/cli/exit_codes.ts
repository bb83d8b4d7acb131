/**
 * Exit statuses shared by every executable (`nexus-authority`, `nexus-relay`,
 * `nexus-gateway`, `nexus-edge`, `nexus-agent`), so that a supervisor or
 * an operator's script can tell why a process ended without reading its
 * log. Documented in docs/operations.md ("Exit statuses").
 *
 * @module
 */

/** The exit statuses, by name. */
export const EXIT: {
  /** Done, or stopped by SIGINT/SIGTERM. */
  readonly ok: 0;
  /** Failed at run time: an authority that refused, a peer that broke the protocol, an I/O error. */
  readonly runtime: 1;
  /** The command line is wrong: an unknown command or flag, a missing argument. */
  readonly usage: 2;
  /** `status`: the service answers but is not up (no path, not ready). */
  readonly notReady: 3;
  /** The configuration is wrong: a file that cannot be read or parsed, a field that fails its check. */
  readonly config: 4;
  /** The permission set forbids something the configuration asks for (Deno's `NotCapable`). */
  readonly permission: 5;
  /** The HSM PIN is missing, wrong or locked: never retried, to keep the token's PIN counter. */
  readonly hsmPin: 6;
  /** The HSM cannot be used: module, token, key or mechanism missing, or a PKCS#11 failure. */
  readonly hsm: 7;
} = Object.freeze({
  ok: 0,
  runtime: 1,
  usage: 2,
  notReady: 3,
  config: 4,
  permission: 5,
  hsmPin: 6,
  hsm: 7,
});

/** One of the {@link EXIT} statuses. */
export type ExitCode = typeof EXIT[keyof typeof EXIT];
