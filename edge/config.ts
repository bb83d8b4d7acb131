/**
 * The edge agent's configuration: a JSON file (deploy/edge.example.json)
 * plus command-line flags, checked in full before anything starts so a
 * mistake stops the start with the field that is wrong.
 *
 * @module
 */
import { parseHostPort } from "../src/config/host_port.ts";

/** One inlet: a local TCP listener whose connections go to a gateway outlet. */
export interface InletConfig {
  /** "host:port" to listen on (loopback unless the site's apps run elsewhere). */
  listen: string;
  /** The gateway outlet's name (`outlet.<name>` at the gateway). */
  outlet: string;
  /** "tcp" (default): bytes as they come. "http": the license header is added to every request. */
  mode?: "tcp" | "http";
  /**
   * HTTP mode only: let CONNECT and protocol upgrades (WebSocket) through,
   * raw after their request. Off by default: the edge cannot tell whether
   * the server accepted the upgrade, and a declined one would let the
   * client's next requests pass without the license header.
   */
  tunnels?: boolean;
}

/** The edge's configuration (docs/operations.md; example in deploy/edge.example.json). */
export interface EdgeConfig {
  /** Identity key, history and the last credential are kept here. */
  stateDir: string;
  /** The authority: its identity file (the trust anchor) and service address. */
  authority: { identityFile: string; address: string };
  /** Relays ("host:port"), tried in order; the edge fails over between them. */
  relays: string[];
  /** The gateway: its alias at the relays, its customer, and optionally its identifier (pinned). */
  gateway: { alias: string; customerId: string; identifier?: string };
  /** One-time enrollment ticket (first start only). */
  ticket?: string;
  /** License key: enrollment when no ticket is given, and the header value of HTTP inlets. */
  license?: string;
  /** A file holding the ticket instead (first line), so the config holds no secret. */
  ticketFile?: string;
  /** A file holding the license key instead (first line; not readable by others). */
  licenseFile?: string;
  /** Header name HTTP inlets add (default {@link DEFAULT_LICENSE_HEADER}). */
  licenseHeader?: string;
  /** Inlets (default: 127.0.0.1:8151 to the `context` outlet). */
  inlets?: InletConfig[];
  /** "host:port" of /metrics, /healthz, /readyz and /status, or "off" (default 127.0.0.1:9431). */
  ops?: string;
  /** Milliseconds a new inlet connection may wait for a path to the gateway (default 10,000). */
  connectWaitMs?: number;
  /** Milliseconds without a record from the gateway before the channel counts as lost (default 30,000). */
  idleTimeoutMs?: number;
}

/** Header added by HTTP inlets unless the config names another. */
export const DEFAULT_LICENSE_HEADER = "X-License-Key";
/** Where the operations endpoint listens unless the config says otherwise. */
export const DEFAULT_OPS = "127.0.0.1:9431";
/** The default inlet: the context service. */
export const DEFAULT_INLETS: readonly InletConfig[] = [{
  listen: "127.0.0.1:8151",
  outlet: "context",
}];

const IDENTIFIER = /^I[0-9a-f]{64}$/;
const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

function fail(field: string, what: string): never {
  throw new TypeError(`edge config: "${field}" ${what}`);
}

function string(value: unknown, field: string): string {
  if (typeof value !== "string" || value === "") fail(field, "must be a non-empty string");
  return value;
}

function hostPort(value: unknown, field: string): string {
  const text = string(value, field);
  try {
    parseHostPort(text, field);
  } catch {
    fail(field, `must be HOST:PORT, got ${JSON.stringify(text)}`);
  }
  return text;
}

/**
 * Checks a parsed config (from JSON, with flags applied) and fills in the
 * defaults. Secrets (ticket, license) are never quoted in errors.
 * @throws {TypeError} naming the first field that is wrong.
 */
export function checkEdgeConfig(input: unknown):
  & Required<
    Pick<EdgeConfig, "inlets" | "ops" | "licenseHeader" | "connectWaitMs" | "idleTimeoutMs">
  >
  & EdgeConfig {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new TypeError("edge config: expected a JSON object");
  }
  const c = input as Record<string, unknown>;
  const known = new Set([
    "stateDir",
    "authority",
    "relays",
    "gateway",
    "ticket",
    "license",
    "ticketFile",
    "licenseFile",
    "licenseHeader",
    "inlets",
    "ops",
    "connectWaitMs",
    "idleTimeoutMs",
  ]);
  for (const key of Object.keys(c)) if (!known.has(key)) fail(key, "is not a known setting");
  const stateDir = string(c.stateDir, "stateDir");
  const authority = c.authority as Record<string, unknown> | undefined;
  if (typeof authority !== "object" || authority === null) fail("authority", "is required");
  const identityFile = string(authority.identityFile, "authority.identityFile");
  const authorityAddress = hostPort(authority.address, "authority.address");
  if (!Array.isArray(c.relays) || c.relays.length === 0) {
    fail("relays", "must list one relay or more");
  }
  const relays = c.relays.map((r, i) => hostPort(r, `relays[${i}]`));
  const gateway = c.gateway as Record<string, unknown> | undefined;
  if (typeof gateway !== "object" || gateway === null) fail("gateway", "is required");
  const alias = string(gateway.alias, "gateway.alias");
  const customerId = string(gateway.customerId, "gateway.customerId");
  let pinned: string | undefined;
  if (gateway.identifier !== undefined) {
    pinned = string(gateway.identifier, "gateway.identifier");
    if (!IDENTIFIER.test(pinned)) fail("gateway.identifier", "must be I followed by 64 hex digits");
  }
  const ticket = c.ticket === undefined ? undefined : string(c.ticket, "ticket");
  const license = c.license === undefined ? undefined : string(c.license, "license");
  const ticketFile = c.ticketFile === undefined ? undefined : string(c.ticketFile, "ticketFile");
  const licenseFile = c.licenseFile === undefined
    ? undefined
    : string(c.licenseFile, "licenseFile");
  if (ticket !== undefined && ticketFile !== undefined) fail("ticketFile", "and ticket both given");
  if (license !== undefined && licenseFile !== undefined) {
    fail("licenseFile", "and license both given");
  }
  const licenseHeader = c.licenseHeader === undefined
    ? DEFAULT_LICENSE_HEADER
    : string(c.licenseHeader, "licenseHeader");
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(licenseHeader)) {
    fail("licenseHeader", "must be an HTTP header name");
  }
  let inlets: InletConfig[];
  if (c.inlets === undefined) inlets = DEFAULT_INLETS.map((i) => ({ ...i }));
  else {
    if (!Array.isArray(c.inlets)) fail("inlets", "must be a list");
    inlets = c.inlets.map((raw, i) => {
      const inlet = raw as Record<string, unknown>;
      if (typeof inlet !== "object" || inlet === null) fail(`inlets[${i}]`, "must be an object");
      const outlet = string(inlet.outlet, `inlets[${i}].outlet`);
      if (!NAME.test(outlet)) fail(`inlets[${i}].outlet`, "must be a name (letters, digits, _.-)");
      const mode = inlet.mode ?? "tcp";
      if (mode !== "tcp" && mode !== "http") fail(`inlets[${i}].mode`, 'must be "tcp" or "http"');
      if (mode === "http" && license === undefined && licenseFile === undefined) {
        fail(`inlets[${i}].mode`, 'is "http", which adds the license header: "license" is needed');
      }
      if (inlet.tunnels !== undefined && typeof inlet.tunnels !== "boolean") {
        fail(`inlets[${i}].tunnels`, "must be true or false");
      }
      if (inlet.tunnels === true && mode !== "http") {
        fail(`inlets[${i}].tunnels`, 'applies to "http" inlets only');
      }
      return {
        listen: hostPort(inlet.listen, `inlets[${i}].listen`),
        outlet,
        mode,
        ...(inlet.tunnels === true ? { tunnels: true } : {}),
      };
    });
  }
  const listens = new Set<string>();
  for (const [i, inlet] of inlets.entries()) {
    if (listens.has(inlet.listen)) fail(`inlets[${i}].listen`, `repeats ${inlet.listen}`);
    listens.add(inlet.listen);
  }
  const ops = c.ops === undefined ? DEFAULT_OPS : string(c.ops, "ops");
  if (ops !== "off") hostPort(ops, "ops");
  const number = (value: unknown, field: string, fallback: number) => {
    if (value === undefined) return fallback;
    if (typeof value !== "number" || !Number.isInteger(value) || value < 100) {
      fail(field, "must be a whole number of milliseconds, 100 or more");
    }
    return value;
  };
  return {
    stateDir,
    authority: { identityFile, address: authorityAddress },
    relays,
    gateway: { alias, customerId, identifier: pinned },
    ticket,
    license,
    ticketFile,
    licenseFile,
    licenseHeader,
    inlets,
    ops,
    connectWaitMs: number(c.connectWaitMs, "connectWaitMs", 10_000),
    idleTimeoutMs: number(c.idleTimeoutMs, "idleTimeoutMs", 30_000),
  };
}

/** The checked config, defaults filled in. */
export type CheckedEdgeConfig = ReturnType<typeof checkEdgeConfig>;

/**
 * Parses `--inlet` flag values: `LISTEN=OUTLET` or `LISTEN=OUTLET/http`,
 * e.g. `127.0.0.1:8152=orchestrator/http`.
 * @throws {TypeError} for any other shape.
 */
export function parseInletFlag(text: string): InletConfig {
  const match = text.match(/^(.+)=([A-Za-z0-9_.-]+)(?:\/(tcp|http))?$/);
  if (!match) throw new TypeError(`--inlet: expected LISTEN=OUTLET[/http], got ${text}`);
  return { listen: match[1], outlet: match[2], mode: (match[3] ?? "tcp") as "tcp" | "http" };
}

/**
 * The Deno permissions this config needs and no more: net for the relays,
 * the authority, the inlets' listen addresses and the operations endpoint;
 * read for the state directory, the trust anchor and the config file;
 * write for the state directory.
 */
export function edgePermissions(
  config: CheckedEdgeConfig,
  configFile?: string,
): { net: string[]; read: string[]; write: string[] } {
  const net = [
    ...config.relays,
    config.authority.address,
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
  return { net: [...new Set(net)], read: [...new Set(read)], write: [config.stateDir] };
}

/** {@link edgePermissions} as `deno run` flags. */
export function edgePermissionFlags(config: CheckedEdgeConfig, configFile?: string): string[] {
  const p = edgePermissions(config, configFile);
  return [
    `--allow-net=${p.net.join(",")}`,
    `--allow-read=${p.read.join(",")}`,
    `--allow-write=${p.write.join(",")}`,
  ];
}

/**
 * Reads `ticketFile` and `licenseFile` into `ticket` and `license` (the
 * first line, trimmed). A license file others may read is refused: the key
 * lets anyone enroll as this customer.
 * @throws {TypeError} naming the file, never its content.
 */
export async function readEdgeSecrets(config: CheckedEdgeConfig): Promise<CheckedEdgeConfig> {
  const read = async (path: string, field: string, private_: boolean) => {
    let text: string;
    try {
      if (private_ && ((await Deno.stat(path)).mode ?? 0) & 0o004) {
        fail(field, `names ${path}, which others may read: chmod o-r it`);
      }
      text = await Deno.readTextFile(path);
    } catch (error) {
      if (error instanceof TypeError) throw error;
      fail(field, `names ${path}, which cannot be read: ${(error as Error).name}`);
    }
    const first = text.split("\n")[0].trim();
    if (first === "") fail(field, `names ${path}, which is empty`);
    return first;
  };
  return {
    ...config,
    ticket: config.ticketFile ? await read(config.ticketFile, "ticketFile", false) : config.ticket,
    license: config.licenseFile
      ? await read(config.licenseFile, "licenseFile", true)
      : config.license,
  };
}
