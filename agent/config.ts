/**
 * The service agent's configuration (docs/operations.md §6a; example in
 * deploy/agent.example.json): checked with the shared schema blocks, the
 * Deno permissions one configuration needs, and the ticket file read at
 * start.
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
  secret,
  wholeNumber,
} from "../src/config/schema.ts";
import { DEFAULT_LIBCRYPTO } from "../src/crypto/aes_gcm.ts";

/** Fields whose values are secrets: never quoted in an error. */
const SECRETS = ["ticket"] as const;

/** The agent's configuration. */
export const AgentConfigSchema = object({
  /** Identity key and history are kept here (created on first start). */
  stateDir: nonEmpty(),
  /** The authority: its identity file (the trust anchor) and service address (or several: replicas). */
  authority: object({ identityFile: nonEmpty(), address: authorityAddresses() }),
  /** Relays ("host:port"); the agent's alias is registered at all of them. */
  relays: z.array(hostPort(), { error: "must list one relay or more" })
    .min(1, { error: "must list one relay or more" }),
  /** The agent's rendezvous name at the relays (its credential's `relay` attribute allows it). */
  alias: nonEmpty(),
  /** The customer the agent serves: its gateways and edges must be of it. */
  customerId: nonEmpty(),
  /** The service's name: the agent's credential must say `service` = this. */
  service: name(),
  /** Gateways the agent takes channels from: any of its customer, or only these identifiers. */
  gateways: z.array(identifier(), { error: "must be a list of identifiers" }).optional(),
  /** Enrollment ticket for the first start (when not yet a member). */
  ticket: secret().optional(),
  /** A file holding the ticket instead (first line; group and others must have no access). */
  ticketFile: nonEmpty().optional(),
  /** The local backends, each behind its policy (evaluated here, over the edge's credential). */
  outlets: z.array(object({ name: name(), backend: hostPort(), policy: nonEmpty() }), {
    error: "must list one outlet or more",
  }).min(1, { error: "must list one outlet or more" }),
  /** "host:port" for /metrics, /healthz, /readyz (none when absent). */
  ops: hostPort().optional(),
  /** How long close() lets open sessions finish, ms. */
  shutdownGraceMs: wholeNumber("milliseconds", 0).default(10_000),
  /** Lifetime of the agent's channel attestations, seconds (renewed at two thirds). */
  attestationTtlSeconds: wholeNumber("seconds", 3).optional(),
  /** Which AES-GCM seals the channel records (docs/operations.md §2.3). */
  cipher: cipherBlock(DEFAULT_LIBCRYPTO),
}).superRefine((config, ctx) => {
  if (config.ticket !== undefined && config.ticketFile !== undefined) {
    ctx.addIssue({ code: "custom", path: ["ticketFile"], message: "and ticket both given" });
  }
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

/** The agent's configuration as a file gives it (defaults may be left out). */
export type AgentConfig = z.input<typeof AgentConfigSchema>;
/** The checked configuration, defaults filled in. */
export type CheckedAgentConfig = z.output<typeof AgentConfigSchema>;

/**
 * Checks a parsed configuration and fills in the defaults.
 * @throws {ConfigError} naming the first field that is wrong.
 */
export function checkAgentConfig(input: unknown, file?: string): CheckedAgentConfig {
  return checkConfig(AgentConfigSchema, input, { file, secrets: SECRETS });
}

/**
 * Reads `file` with `overrides` from the flags laid over it, and checks it.
 * @throws {ConfigError}
 */
export function loadAgentConfig(
  file: string | undefined,
  overrides: Record<string, unknown>,
): Promise<CheckedAgentConfig> {
  return loadConfig(AgentConfigSchema, { file, overrides, secrets: SECRETS });
}

/**
 * The Deno permissions this configuration needs and no more: net for the
 * authority, the relays, the backends and the operations endpoint; ffi
 * for OpenSSL's libcrypto unless the cipher is `webcrypto`; read for the
 * state directory, the trust anchor, the configuration file and the
 * ticket file; write for the state directory.
 */
export function agentPermissions(config: CheckedAgentConfig, configFile?: string): Permissions {
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
 * Reads `ticketFile` into `ticket` (its first line) and drops
 * `ticketFile`. A file that group or others may access is refused before
 * it is read: the ticket enrolls an agent of this customer's service.
 * @throws {ConfigError} naming the file, never its content.
 */
export async function readAgentSecrets(config: CheckedAgentConfig): Promise<CheckedAgentConfig> {
  const { ticketFile, ...rest } = config;
  if (ticketFile === undefined) return config;
  return { ...rest, ticket: await readSecretLine(ticketFile, "ticketFile", { refuse: 0o077 }) };
}
