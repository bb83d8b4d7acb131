/**
 * The authority's configuration: a JSON file (deploy/authority.example.json)
 * whose keys are the long flag names, with the command line's flags laid
 * over it, checked against {@link AuthorityConfigSchema} before any command
 * runs. The PIN is never part of it: it comes from a file, an environment
 * variable or a prompt (hsm/pin.ts).
 *
 * @module
 */
import { loadConfig } from "../src/config/loader.ts";
import type { Permissions } from "../src/config/permissions.ts";
import { z } from "zod";
import {
  countOrDigits,
  hostPort,
  hostPortOrOff,
  nonEmpty,
  object,
  quoteValue,
} from "../src/config/schema.ts";

/** The PKCS#11 module used unless the configuration names another. */
export const DEFAULT_HSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so";
/** The pkcs11js addon: the one native library the authority loads. */
export const PKCS11_ADDON = "./node_modules/pkcs11js/build/Release/pkcs11.node";

/**
 * Parses a duration: whole seconds (`3600`, `"3600"`), or a number with a
 * unit (`90s`, `10m`, `2h`, `1d`).
 * @returns seconds, or null when `value` is not a duration.
 */
export function parseDuration(value: unknown): number | null {
  if (typeof value === "number") return Number.isSafeInteger(value) && value > 0 ? value : null;
  if (typeof value !== "string") return null;
  const match = value.match(/^(\d+)(s|m|h|d)?$/);
  if (!match) return null;
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[match[2] as "s" | "m" | "h" | "d"] ?? 1;
  const seconds = Number(match[1]) * unit;
  return seconds > 0 ? seconds : null;
}

/** A duration field (seconds, or `90s`, `10m`, `2h`, `1d`), as seconds. */
export function duration(): z.ZodType<number> {
  return z.union([z.number(), z.string()]).transform((value, ctx) => {
    const seconds = parseDuration(value);
    if (seconds === null) {
      ctx.addIssue({
        code: "custom",
        message: `must be a duration (e.g. 90s, 10m, 2h, 1d), got ${quoteValue(value)}`,
      });
      return z.NEVER;
    }
    return seconds;
  });
}

/** The authority's configuration (docs/operations.md, "The authority"). */
export const AuthorityConfigSchema = object({
  /** The state directory: identity, key records, the store. */
  state: nonEmpty().default("/var/lib/nexus-authority"),
  /**
   * Where the store is: a PostgreSQL URL (`postgres://user@host:port/db`),
   * which any number of replicas share, or absent for the SQLite file
   * `authority.db` in the state directory. A URL with a password is
   * refused: the command line and configuration files are not secret
   * stores (docs/operations.md, "Replicas on PostgreSQL").
   */
  database: nonEmpty().regex(/^postgres(ql)?:\/\/[^:@/]+@[^/]+\/[^/?#]+$/, {
    error: "must be postgres://user@host:port/database, with no password",
  }).optional(),
  "hsm-module": nonEmpty().default(DEFAULT_HSM_MODULE),
  "hsm-token": nonEmpty().default("nexus-authority"),
  /** A file holding the HSM user PIN. */
  "pin-file": nonEmpty().optional(),
  /** The environment variable holding the PIN. */
  "pin-env": nonEmpty().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, {
    error: "must be an environment variable's name",
  }).default("NEXUS_HSM_PIN"),
  /** serve: where members connect. */
  listen: hostPort().default("0.0.0.0:4100"),
  /** serve: /metrics, /healthz, /readyz, or "off". */
  metrics: hostPortOrOff().default("127.0.0.1:9410"),
  /** serve: credential lifetime for role=edge. */
  "edge-ttl": duration().default(3600),
  /** serve: credential lifetime for other roles. */
  "default-ttl": duration().default(3600),
  /** serve: lifetime of the authority's own channel attestation (renewed at two thirds). */
  "attestation-ttl": duration().optional(),
  /**
   * serve: time a connection has to carry a secure channel before it is
   * closed; a connection of non-members' channels is closed after three
   * times as long without a request.
   */
  "handshake-timeout": duration().default(10),
  /** serve: TCP connections open at once. */
  "max-connections": countOrDigits("connections", 1).default(10_000),
  /** serve: TCP connections open at once from one IPv4 address or IPv6 /64. */
  "max-per-source": countOrDigits("connections", 1).default(256),
});

/** The authority's configuration as a file gives it. */
export type AuthorityConfig = z.input<typeof AuthorityConfigSchema>;
/** The checked configuration, defaults filled in. */
export type CheckedAuthorityConfig = z.output<typeof AuthorityConfigSchema>;

/**
 * Reads `file` (when given) with `overrides` from the flags laid over it,
 * and checks it.
 * @throws {ConfigError}
 */
export function loadAuthorityConfig(
  file: string | undefined,
  overrides: Record<string, unknown>,
): Promise<CheckedAuthorityConfig> {
  return loadConfig(AuthorityConfigSchema, { file, overrides });
}

/**
 * The environment the PostgreSQL client (`pg`) reads when it connects: the
 * libpq variables for what the URL leaves out (PGPASSWORD is how an
 * operator gives the database password: never in the URL), and USER, its
 * default user name. Granted only with a `database`.
 */
export const POSTGRES_ENV: readonly string[] = [
  "PGUSER",
  "PGPASSWORD",
  "PGHOST",
  "PGPORT",
  "PGDATABASE",
  "PGBINARY",
  "PGOPTIONS",
  "PGSSLMODE",
  "PGSSLNEGOTIATION",
  "PGCLIENT_ENCODING",
  "PGREPLICATION",
  "PGCONNECT_TIMEOUT",
  "USER",
];

/** The `host:port` of a PostgreSQL URL (port 5432 when none is given). */
export function databaseHost(url: string): string {
  const { hostname, port } = new URL(url);
  return `${hostname}:${port || "5432"}`;
}

/**
 * The Deno permissions a command with this configuration needs and no
 * more: read and write the state directory; read the configuration, the
 * PIN file and the PKCS#11 module (checked before it is loaded); ffi for
 * the pkcs11js addon; env for the PIN variable and `SOFTHSM2_CONF`; net
 * for `serve`'s listen and metrics addresses, and for the database server
 * when the store is on PostgreSQL.
 */
export function authorityPermissions(
  config: CheckedAuthorityConfig,
  options: { configFile?: string; serve?: boolean } = {},
): Permissions {
  return {
    net: [
      ...(options.serve
        ? [config.listen, ...(config.metrics === "off" ? [] : [config.metrics])]
        : []),
      ...(config.database ? [databaseHost(config.database)] : []),
    ],
    read: [
      config.state,
      ...(options.configFile ? [options.configFile] : []),
      ...(config["pin-file"] ? [config["pin-file"]] : []),
      config["hsm-module"],
    ],
    write: [config.state],
    ffi: [PKCS11_ADDON],
    env: [config["pin-env"], "SOFTHSM2_CONF", ...(config.database ? POSTGRES_ENV : [])],
  };
}
