/**
 * The edge agent's configuration: a JSON file (deploy/edge.example.json)
 * plus command-line flags, checked in full against {@link EdgeConfigSchema}
 * before anything starts, so a mistake stops the start with the field that
 * is wrong.
 *
 * @module
 */
import { ConfigError } from "../src/errors.ts";
import { checkConfig, loadConfig } from "../src/config/loader.ts";
import { cipherLibraries, permissionFlags, type Permissions } from "../src/config/permissions.ts";
import { readSecretLine } from "../src/config/secret_file.ts";
import {
  authorityAddresses,
  cipherBlock,
  flag,
  hostPort,
  hostPortOrOff,
  identifier,
  name,
  nonEmpty,
  object,
  secret,
  wholeNumber,
} from "../src/config/schema.ts";
import { DEFAULT_LIBCRYPTO } from "../src/crypto/aes_gcm.ts";
import { z } from "zod";

/**
 * Header added by HTTP inlets unless the config names another. Its value is
 * the license's public id (hex SHA-256 of the key, as the authority names
 * the license: src/authority_client/license_id.ts), never the key itself.
 */
export const DEFAULT_LICENSE_HEADER = "X-License-Id";
/** Where the operations endpoint listens unless the config says otherwise. */
export const DEFAULT_OPS = "127.0.0.1:9431";
/** The default inlet: the context service. */
export const DEFAULT_INLETS: readonly InletConfig[] = [{
  listen: "127.0.0.1:8151",
  outlet: "context",
  mode: "tcp",
}];

/** Fields whose values are secrets: never quoted in an error. */
const SECRETS = ["ticket", "license"] as const;

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * One inlet: a local TCP listener whose connections become portal
 * sessions, to an outlet at the gateway, or (end to end) to an outlet at a
 * service's agent, through an inner channel the gateway cannot open.
 */
export interface InletConfig {
  /** "host:port" to listen on (loopback unless the site's apps run elsewhere). */
  listen: string;
  /**
   * The outlet's name: at the gateway (`outlet.<name>` there), or with
   * `service`, at the service's agent (default: the service's name).
   */
  outlet?: string;
  /**
   * End to end: the service whose agent serves the outlet (the gateway
   * routes to it as `service.<name>`; the agent must hold a credential with
   * role service, this customer and this service's name).
   */
  service?: string;
  /** "tcp" (default): bytes as they come. "http": each request gets the license id header. */
  mode?: "tcp" | "http";
  /**
   * HTTP mode only: let CONNECT and protocol upgrades (WebSocket) through,
   * raw after their request. Off by default: the edge cannot tell whether
   * the server accepted the upgrade, and a declined one would let the
   * client's next requests pass without the license header.
   */
  tunnels?: boolean;
}

/** The edge's configuration as a file (with the flags applied) gives it (docs/operations.md §6.2). */
export interface EdgeConfig {
  /** Identity key, history and the last credential are kept here. */
  stateDir: string;
  /** The authority: its identity file (the trust anchor) and service address (or several: replicas). */
  authority: { identityFile: string; address: string | string[] };
  /** Relays ("host:port"), tried in order; the edge fails over between them. */
  relays: string[];
  /** The gateway: its alias at the relays, its customer, and optionally its identifier (pinned). */
  gateway: { alias: string; customerId: string; identifier?: string };
  /** One-time enrollment ticket (first start only). */
  ticket?: string;
  /**
   * License key: enrollment when no ticket is given. HTTP inlets send its
   * public id ({@link DEFAULT_LICENSE_HEADER}), never the key.
   */
  license?: string;
  /** A file holding the ticket instead (first line), so the config holds no secret. */
  ticketFile?: string;
  /** A file holding the license key instead (first line; not readable by others). */
  licenseFile?: string;
  /** Header name HTTP inlets add, the license's id its value ({@link DEFAULT_LICENSE_HEADER}). */
  licenseHeader?: string;
  /** Inlets (default {@link DEFAULT_INLETS}: 127.0.0.1:8151 to the `context` outlet). */
  inlets?: InletConfig[];
  /** "host:port" of /metrics, /healthz, /readyz and /status, or "off" (default {@link DEFAULT_OPS}). */
  ops?: string;
  /** Milliseconds a new inlet connection may wait for a path to the gateway (default 10,000). */
  connectWaitMs?: number;
  /** Milliseconds without a record from the gateway before the channel counts as lost (default 30,000). */
  idleTimeoutMs?: number;
  /** Lifetime of the edge's channel attestations, seconds (default 30 days; renewed at two thirds). */
  attestationTtlSeconds?: number;
  /** Which AES-GCM seals the channel records (docs/operations.md §2.3; default `auto`). */
  cipher?: { backend?: "auto" | "openssl" | "webcrypto"; library?: string };
}

/** The checked configuration: defaults filled in. */
export interface CheckedEdgeConfig extends Omit<EdgeConfig, "authority"> {
  /** The authority: its identity file and its endpoints (one or more, tried in order). */
  authority: { identityFile: string; address: string[] };
  /** Header name HTTP inlets add ({@link DEFAULT_LICENSE_HEADER} when not given). */
  licenseHeader: string;
  /** The inlets, each with its mode and outlet filled in ({@link DEFAULT_INLETS} when not given). */
  inlets: (InletConfig & { mode: "tcp" | "http"; outlet: string })[];
  /** "host:port" of the operations endpoint, or "off" ({@link DEFAULT_OPS} when not given). */
  ops: string;
  /** Milliseconds a new inlet connection may wait for a path (10,000 when not given). */
  connectWaitMs: number;
  /** Milliseconds without a record from the gateway before the channel is lost (30,000 when not given). */
  idleTimeoutMs: number;
  /** The record cipher: `auto` and OpenSSL's Debian path when not given. */
  cipher: { backend: "auto" | "openssl" | "webcrypto"; library: string };
}

const InletSchema = object({
  listen: hostPort(),
  outlet: name().optional(),
  service: name().optional(),
  mode: z.enum(["tcp", "http"], { error: 'must be "tcp" or "http"' }).default("tcp"),
  tunnels: flag().optional(),
}).superRefine((inlet, ctx) => {
  if (inlet.outlet === undefined && inlet.service === undefined) {
    ctx.addIssue({ code: "custom", path: ["outlet"], message: 'is needed (or "service")' });
  }
}).transform((inlet) => ({ ...inlet, outlet: (inlet.outlet ?? inlet.service)! }));

/** The schema of {@link EdgeConfig}; checked against the interfaces by the type checker. */
export const EdgeConfigSchema: z.ZodType<CheckedEdgeConfig, EdgeConfig> = object({
  stateDir: nonEmpty(),
  authority: object({ identityFile: nonEmpty(), address: authorityAddresses() }),
  relays: z.array(hostPort(), { error: "must list one relay or more" })
    .min(1, { error: "must list one relay or more" }),
  gateway: object({
    alias: nonEmpty(),
    customerId: nonEmpty(),
    identifier: identifier().optional(),
  }),
  ticket: secret().optional(),
  license: secret().optional(),
  ticketFile: nonEmpty().optional(),
  licenseFile: nonEmpty().optional(),
  licenseHeader: nonEmpty("must be an HTTP header name")
    .regex(HEADER_NAME, { error: "must be an HTTP header name" })
    .default(DEFAULT_LICENSE_HEADER),
  inlets: z.array(InletSchema, { error: "must be a list" })
    .default(() =>
      DEFAULT_INLETS.map((inlet) => ({
        ...inlet,
        mode: inlet.mode ?? "tcp",
        outlet: (inlet.outlet ?? inlet.service)!,
      }))
    ),
  ops: hostPortOrOff().default(DEFAULT_OPS),
  connectWaitMs: wholeNumber("milliseconds", 100).default(10_000),
  idleTimeoutMs: wholeNumber("milliseconds", 100).default(30_000),
  attestationTtlSeconds: wholeNumber("seconds", 3).optional(),
  cipher: cipherBlock(DEFAULT_LIBCRYPTO),
}).superRefine((config, ctx) => {
  const issue = (path: (string | number)[], message: string) =>
    ctx.addIssue({ code: "custom", path, message });
  if (config.ticket !== undefined && config.ticketFile !== undefined) {
    issue(["ticketFile"], "and ticket both given");
  }
  if (config.license !== undefined && config.licenseFile !== undefined) {
    issue(["licenseFile"], "and license both given");
  }
  const listens = new Set<string>();
  config.inlets.forEach((inlet, i) => {
    if (
      inlet.mode === "http" && config.license === undefined && config.licenseFile === undefined
    ) {
      issue(["inlets", i, "mode"], 'is "http", which adds the license header: "license" is needed');
    }
    if (inlet.tunnels === true && inlet.mode !== "http") {
      issue(["inlets", i, "tunnels"], 'applies to "http" inlets only');
    }
    if (listens.has(inlet.listen)) issue(["inlets", i, "listen"], `repeats ${inlet.listen}`);
    listens.add(inlet.listen);
  });
});

/**
 * Checks a parsed config (from JSON, with flags applied) and fills in the
 * defaults. Secrets (ticket, license) are never quoted in errors.
 * @throws {ConfigError} naming the first field that is wrong.
 */
export function checkEdgeConfig(input: unknown, file?: string): CheckedEdgeConfig {
  return checkConfig(EdgeConfigSchema, input, { file, secrets: SECRETS });
}

/**
 * Reads `file` (when given) with `overrides` from the flags laid over it,
 * and checks it.
 * @throws {ConfigError}
 */
export function loadEdgeConfig(
  file: string | undefined,
  overrides: Record<string, unknown>,
): Promise<CheckedEdgeConfig> {
  return loadConfig(EdgeConfigSchema, { file, overrides, secrets: SECRETS });
}

/**
 * Parses `--inlet` flag values: `LISTEN=OUTLET` or `LISTEN=OUTLET/http`
 * (the gateway's outlet), `LISTEN=SERVICE:OUTLET[/http]` (end to end, that
 * service agent's outlet), e.g. `127.0.0.1:8152=orchestrator:orchestrator/http`.
 * @throws {ConfigError} `usage` for any other shape.
 */
export function parseInletFlag(text: string): InletConfig {
  const match = text.match(/^(.+)=(?:([A-Za-z0-9_.-]+):)?([A-Za-z0-9_.-]+)(?:\/(tcp|http))?$/);
  if (!match) {
    throw new ConfigError("usage", `--inlet: expected LISTEN=[SERVICE:]OUTLET[/http], got ${text}`);
  }
  return {
    listen: match[1],
    ...(match[2] === undefined ? {} : { service: match[2] }),
    outlet: match[3],
    mode: (match[4] ?? "tcp") as "tcp" | "http",
  };
}

/**
 * The Deno permissions this config needs and no more: net for the relays,
 * the authority, the inlets' listen addresses and the operations endpoint;
 * ffi for OpenSSL's libcrypto unless the cipher is `webcrypto`;
 * read for the state directory, the trust anchor, the config file and the
 * secret files; write for the state directory.
 */
export function edgePermissions(
  config: CheckedEdgeConfig,
  configFile?: string,
): { net: string[]; read: string[]; write: string[]; ffi: string[] } & Permissions {
  const net = [
    ...config.relays,
    ...config.authority.address,
    ...config.inlets.map((i) => i.listen),
    ...(config.ops === "off" ? [] : [config.ops]),
  ];
  const read = [
    config.stateDir,
    config.authority.identityFile,
    ...(configFile ? [configFile] : []),
    ...(config.ticketFile ? [config.ticketFile] : []),
    ...(config.licenseFile ? [config.licenseFile] : []),
  ];
  return {
    net: [...new Set(net)],
    read: [...new Set(read)],
    write: [config.stateDir],
    ffi: cipherLibraries(config.cipher),
  };
}

/** {@link edgePermissions} as `deno run` flags. */
export function edgePermissionFlags(config: CheckedEdgeConfig, configFile?: string): string[] {
  return permissionFlags(edgePermissions(config, configFile));
}

/**
 * Reads `ticketFile` and `licenseFile` into `ticket` and `license` (the
 * first line, trimmed; src/config/secret_file.ts). A license file others may
 * read is refused: the key lets anyone enroll as this customer.
 * @throws {ConfigError} naming the file, never its content.
 */
export async function readEdgeSecrets(config: CheckedEdgeConfig): Promise<CheckedEdgeConfig> {
  return {
    ...config,
    ticket: config.ticketFile
      ? await readSecretLine(config.ticketFile, "ticketFile", { refuse: 0o077 })
      : config.ticket,
    license: config.licenseFile
      ? await readSecretLine(config.licenseFile, "licenseFile", {
        refuse: 0o004,
        refusal: () => "which others may read: chmod o-r it",
      })
      : config.license,
  };
}
