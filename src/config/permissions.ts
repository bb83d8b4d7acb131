/**
 * The Deno permissions one configuration needs, and no more: what each
 * executable's `permissions` answer prints (`deno task permissions
 * <service> --config FILE`), what the launcher grants
 * (`deno task launch <service> …`), and what a systemd unit's `ExecStart`
 * carries. Each executable computes its own from its configuration
 * (`edge/config.ts`, `gateway/config.ts`, …); this module only turns them
 * into flags.
 *
 * @module
 */

/** Permissions by kind, each a list of what it is granted for. */
export interface Permissions {
  /** `host:port` to connect to or listen on. */
  readonly net?: readonly string[];
  /** Files and folders to read. */
  readonly read?: readonly string[];
  /** Files and folders to write. */
  readonly write?: readonly string[];
  /** Native libraries to load. */
  readonly ffi?: readonly string[];
  /** Environment variables to read. */
  readonly env?: readonly string[];
}

const KINDS = ["net", "read", "write", "ffi", "env"] as const;

/**
 * `--allow-<kind>=a,b` for each kind with entries, in the order net, read,
 * write, ffi, env; repeated entries once.
 *
 * @example
 * ```ts
 * import { permissionFlags } from "./permissions.ts";
 * permissionFlags({ net: ["relay:4000"], read: ["/etc/nexus"] });
 * // ["--allow-net=relay:4000", "--allow-read=/etc/nexus"]
 * ```
 */
export function permissionFlags(permissions: Permissions): string[] {
  const flags: string[] = [];
  for (const kind of KINDS) {
    const entries = [...new Set(permissions[kind] ?? [])];
    if (entries.length > 0) flags.push(`--allow-${kind}=${entries.join(",")}`);
  }
  return flags;
}

/**
 * The native libraries a `cipher` block needs: OpenSSL's libcrypto unless
 * the backend is `webcrypto` (`auto` asks for it too, so that the flags
 * printed for a configuration get the fast backend).
 */
export function cipherLibraries(cipher: { backend: string; library: string }): string[] {
  return cipher.backend === "webcrypto" ? [] : [cipher.library];
}
