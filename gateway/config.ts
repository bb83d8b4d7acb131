/**
 * The gateway's configuration: a JSON file (deploy/gateway.example.json)
 * plus command-line flags, checked in full against
 * {@link GatewayConfigSchema} before anything starts. Outlet policies are
 * parsed when the gateway starts (`outletRule`), so that their errors
 * point into the operator's own text and name the outlet.
 *
 * @module
 */
import { checkConfig, loadConfig } from "../src/config/loader.ts";
import type { Permissions } from "../src/config/permissions.ts";
import { z } from "zod";
import { hostPort, name, nonEmpty, object, secret, wholeNumber } from "../src/config/schema.ts";

/** Fields whose values are secrets: never quoted in an error. */
const SECRETS = ["ticket"] as const;

/** The gateway's configuration (docs/operations.md; example in deploy/). */
export const GatewayConfigSchema = object({
  /** Identity key and history are kept here (created on first start). */
  stateDir: nonEmpty(),
  /** The authority: its identity file (the trust anchor) and service address. */
  authority: object({ identityFile: nonEmpty(), address: hostPort() }),
  /** Relays ("host:port"); the alias is registered at all of them. */
  relays: z.array(hostPort(), { error: "must list one relay or more" })
    .min(1, { error: "must list one relay or more" }),
  /** The gateway's rendezvous name at the relays. */
  alias: nonEmpty(),
  /** The one customer this gateway serves. */
  customerId: nonEmpty(),
  /** Enrollment ticket for the first start (when not yet a member). */
  ticket: secret().optional(),
  /** The backends, each behind its policy. */
  outlets: z.array(object({ name: name(), backend: hostPort(), policy: nonEmpty() }), {
    error: "must be a list",
  }),
  /** "host:port" for /metrics, /healthz, /readyz (none when absent). */
  ops: hostPort().optional(),
  /** How long close() lets open sessions finish, ms. */
  shutdownGraceMs: wholeNumber("milliseconds", 0).default(10_000),
  /** Lifetime of the gateway's channel attestations, seconds (renewed at two thirds). */
  attestationTtlSeconds: wholeNumber("seconds", 3).optional(),
}).superRefine((config, ctx) => {
  const names = new Set<string>();
  config.outlets.forEach((outlet, i) => {
    if (names.has(outlet.name)) {
      ctx.addIssue({
        code: "custom",
        path: ["outlets", i, "name"],
        message: `repeats ${outlet.name}`,
      });
    }
    names.add(outlet.name);
  });
});

/** The gateway's configuration as a file gives it (defaults may be left out). */
export type GatewayConfig = z.input<typeof GatewayConfigSchema>;
/** The checked configuration, defaults filled in. */
export type CheckedGatewayConfig = z.output<typeof GatewayConfigSchema>;

/**
 * Checks a parsed configuration and fills in the defaults.
 * @throws {ConfigError} naming the first field that is wrong.
 */
export function checkGatewayConfig(input: unknown, file?: string): CheckedGatewayConfig {
  return checkConfig(GatewayConfigSchema, input, { file, secrets: SECRETS });
}

/**
 * Reads `file` with `overrides` from the flags laid over it, and checks it.
 * @throws {ConfigError}
 */
export function loadGatewayConfig(
  file: string | undefined,
  overrides: Record<string, unknown>,
): Promise<CheckedGatewayConfig> {
  return loadConfig(GatewayConfigSchema, { file, overrides, secrets: SECRETS });
}

/**
 * The Deno permissions this configuration needs and no more: net for the
 * authority, the relays, the backends and the operations endpoint; read
 * for the state directory, the trust anchor and the configuration file;
 * write for the state directory.
 */
export function gatewayPermissions(
  config: CheckedGatewayConfig,
  configFile?: string,
): Permissions {
  return {
    net: [
      config.authority.address,
      ...config.relays,
      ...config.outlets.map((outlet) => outlet.backend),
      ...(config.ops === undefined ? [] : [config.ops]),
    ],
    read: [config.stateDir, config.authority.identityFile, ...(configFile ? [configFile] : [])],
    write: [config.stateDir],
  };
}
