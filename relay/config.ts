/**
 * The relay's configuration: a JSON file (deploy/relay.example.json) whose
 * keys are the long flag names, with the command line's flags laid over
 * it, checked in full against {@link RelayConfigSchema} before anything
 * starts.
 *
 * @module
 */
import { loadConfig } from "../src/config/loader.ts";
import type { Permissions } from "../src/config/permissions.ts";
import {
  authorityAddresses,
  countOrDigits,
  hostPort,
  hostPortOrOff,
  nonEmpty,
  object,
} from "../src/config/schema.ts";
import { z } from "zod";

/** Where the relay's operations endpoint listens unless configured otherwise. */
export const DEFAULT_RELAY_METRICS = "127.0.0.1:9420";

/** The relay's configuration (docs/operations.md, "Relays"). */
export const RelayConfigSchema = object({
  /** The relay's identity (relay.key 0600, relay.history) and last credential. */
  state: nonEmpty().default("/var/lib/nexus-relay"),
  /** A file holding a one-time enrollment ticket (role=relay, relay_addresses=[…]), first start. */
  "ticket-file": nonEmpty().optional(),
  /** Listen address. */
  listen: hostPort().default("0.0.0.0:4000"),
  /** Serve TLS with this certificate (PEM) and key; plain TCP otherwise. */
  "tls-cert": nonEmpty().optional(),
  "tls-key": nonEmpty().optional(),
  /** Authority identity files to trust (one or more). */
  trust: z.array(nonEmpty(), { error: "must list one authority identity file or more" })
    .min(1, { error: "must list one authority identity file or more" }),
  /** Follow this authority's revocation list: one endpoint, or several (replicas), comma-separated. */
  authority: z.preprocess(
    // A comma-separated list (as the --authority flag gives it) is a list.
    (value) =>
      typeof value === "string" && value.includes(",")
        ? value.split(",").map((a) => a.trim())
        : value,
    authorityAddresses(),
  ).optional(),
  /** /metrics, /healthz, /readyz, or "off". */
  metrics: hostPortOrOff().default(DEFAULT_RELAY_METRICS),
  "max-connections": countOrDigits("connections", 1).default(20_000),
  "max-per-identity": countOrDigits("connections", 1).default(64),
  "max-pending-per-source": countOrDigits("admissions", 1).default(32),
  rate: countOrDigits("bytes per second", 1).default(256 * 1024 * 1024),
  "idle-timeout": countOrDigits("seconds", 1).default(300),
  /** Lifetime of the relay's channel attestation (to the authority), seconds. */
  "attestation-ttl": countOrDigits("seconds", 3).optional(),
}).superRefine((config, ctx) => {
  if ((config["tls-cert"] === undefined) !== (config["tls-key"] === undefined)) {
    ctx.addIssue({
      code: "custom",
      path: [config["tls-cert"] === undefined ? "tls-cert" : "tls-key"],
      message: "goes with tls-key/tls-cert: give both or neither",
    });
  }
});

/** The relay's configuration as a file gives it. */
export type RelayConfig = z.input<typeof RelayConfigSchema>;
/** The checked configuration, defaults filled in. */
export type CheckedRelayConfig = z.output<typeof RelayConfigSchema>;

/**
 * Reads `file` (when given) with `overrides` from the flags laid over it,
 * and checks it.
 * @throws {ConfigError}
 */
export function loadRelayConfig(
  file: string | undefined,
  overrides: Record<string, unknown>,
): Promise<CheckedRelayConfig> {
  return loadConfig(RelayConfigSchema, { file, overrides });
}

/**
 * The Deno permissions this configuration needs and no more: net for its
 * listen and metrics addresses and the authority; read for the state
 * directory, the configuration, trust anchor, ticket and TLS files; write
 * for the state directory (its identity and credential).
 */
export function relayPermissions(config: CheckedRelayConfig, configFile?: string): Permissions {
  return {
    write: [config.state],
    net: [
      config.listen,
      ...(config.metrics === "off" ? [] : [config.metrics]),
      ...(config.authority ?? []),
    ],
    read: [
      config.state,
      ...(configFile ? [configFile] : []),
      ...(config["ticket-file"] ? [config["ticket-file"]] : []),
      ...config.trust,
      ...(config["tls-cert"] ? [config["tls-cert"]] : []),
      ...(config["tls-key"] ? [config["tls-key"]] : []),
    ],
  };
}
