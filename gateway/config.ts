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
import { cipherLibraries, type Permissions } from "../src/config/permissions.ts";
import { readSecretLine } from "../src/config/secret_file.ts";
import { z } from "zod";
import {
  authorityAddresses,
  cipherBlock,
  hostPort,
  identifier,
  name,
  nonEmpty,
  object,
  positiveNumber,
  secret,
  wholeNumber,
} from "../src/config/schema.ts";
import { DEFAULT_LIBCRYPTO } from "../src/crypto/aes_gcm.ts";

/** Fields whose values are secrets: never quoted in an error. */
const SECRETS = ["ticket"] as const;

/** The gateway's configuration (docs/operations.md; example in deploy/). */
export const GatewayConfigSchema = object({
  /** Identity key and history are kept here (created on first start). */
  stateDir: nonEmpty(),
  /** The authority: its identity file (the trust anchor) and service address (or several: replicas). */
  authority: object({ identityFile: nonEmpty(), address: authorityAddresses() }),
  /** Relays ("host:port"); the alias is registered at all of them. */
  relays: z.array(hostPort(), { error: "must list one relay or more" })
    .min(1, { error: "must list one relay or more" }),
  /** The gateway's rendezvous name at the relays. */
  alias: nonEmpty(),
  /** The one customer this gateway serves. */
  customerId: nonEmpty(),
  /** Enrollment ticket for the first start (when not yet a member). */
  ticket: secret().optional(),
  /**
   * A file holding the ticket instead (first line; group and others must
   * have no access), read at start by {@link readGatewaySecrets}: neither
   * the command line nor the configuration then holds the secret.
   */
  ticketFile: nonEmpty().optional(),
  /** The backends this gateway connects to itself (Phase 2: it sees their plaintext), each behind its policy. */
  outlets: z.array(object({ name: name(), backend: hostPort(), policy: nonEmpty() }), {
    error: "must be a list",
  }).default([]),
  /**
   * End-to-end services (docs/architecture.md §5.10): the gateway routes
   * its edges' inner channels to each service's agent, reached through the
   * relays at `alias`, and sees ciphertext only. `policy` decides which
   * edges may reach the service (with the customer, as for an outlet);
   * the agent must hold role service, this customer and this name, and
   * `identifier` pins it.
   */
  services: z.array(
    object({
      name: name(),
      alias: nonEmpty(),
      policy: nonEmpty(),
      identifier: identifier().optional(),
    }),
    { error: "must be a list" },
  ).default([]),
  /** New end-to-end channels one edge may open per second, and at once. */
  serviceHandshakes: object({
    perSecond: positiveNumber(),
    burst: wholeNumber("handshakes", 1),
  }).default({ perSecond: 5, burst: 20 }),
  /** "host:port" for /metrics, /healthz, /readyz (none when absent). */
  ops: hostPort().optional(),
  /** How long close() lets open sessions finish, ms. */
  shutdownGraceMs: wholeNumber("milliseconds", 0).default(10_000),
  /** Lifetime of the gateway's channel attestations, seconds (renewed at two thirds). */
  attestationTtlSeconds: wholeNumber("seconds", 3).optional(),
  /** Which AES-GCM seals the channel records (docs/operations.md §2.3). */
  cipher: cipherBlock(DEFAULT_LIBCRYPTO),
}).superRefine((config, ctx) => {
  if (config.ticket !== undefined && config.ticketFile !== undefined) {
    ctx.addIssue({ code: "custom", path: ["ticketFile"], message: "and ticket both given" });
  }
  const services = new Set<string>();
  config.services.forEach((service, i) => {
    if (services.has(service.name)) {
      ctx.addIssue({
        code: "custom",
        path: ["services", i, "name"],
        message: `repeats ${service.name}`,
      });
    }
    services.add(service.name);
  });
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
 * authority, the relays, the backends and the operations endpoint; ffi
 * for OpenSSL's libcrypto unless the cipher is `webcrypto`; read for the
 * state directory, the trust anchor, the configuration file and the
 * ticket file; write for the state directory.
 */
export function gatewayPermissions(
  config: CheckedGatewayConfig,
  configFile?: string,
): Permissions {
  return {
    net: [
      ...config.authority.address,
      ...config.relays,
      ...config.outlets.map((outlet) => outlet.backend),
      ...(config.ops === undefined ? [] : [config.ops]),
    ],
    read: [
      config.stateDir,
      config.authority.identityFile,
      ...(configFile ? [configFile] : []),
      ...(config.ticketFile ? [config.ticketFile] : []),
    ],
    write: [config.stateDir],
    ffi: cipherLibraries(config.cipher),
  };
}

/**
 * Reads `ticketFile` into `ticket` (its first line, trimmed) and drops
 * `ticketFile`, so the result checks again as it is. A file that group or
 * others may access is refused before it is read: the ticket enrolls a
 * gateway of this customer, with its alias, for whoever redeems it first.
 * @throws {ConfigError} naming the file, never its content.
 */
export async function readGatewaySecrets(
  config: CheckedGatewayConfig,
): Promise<CheckedGatewayConfig> {
  const { ticketFile, ...rest } = config;
  if (ticketFile === undefined) return config;
  return { ...rest, ticket: await readSecretLine(ticketFile, "ticketFile", { refuse: 0o077 }) };
}
