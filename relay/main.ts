/**
 * `nexus-relay`: outbound-only rendezvous that never sees plaintext.
 *
 * Runs under the `relay` permission set: `deno run -P=relay relay/main.ts …`
 * (network, and read access to its configuration and trust anchor files).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { AuthorityClient } from "../src/authority_client/authority_client.ts";
import { createChannelIdentity } from "../src/channel/secure_channel.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { NexusError } from "../src/errors.ts";
import { importIdentity } from "../src/identity/identity_file.ts";
import { Identity } from "../src/identity/identity.ts";
import { SoftwareSigner } from "../src/identity/software_signer.ts";
import { createLogger, type Logger } from "../src/log.ts";
import { parseHostPort } from "../src/config/host_port.ts";
import { Node } from "../src/routing/node.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import { type Relay, startRelay } from "./relay.ts";

const HELP = `nexus-relay: rendezvous for edges and gateways; forwards encrypted frames only

Usage: nexus-relay [options]

Options:
  --config FILE              JSON file with any of the options below (flags win)
  --listen HOST:PORT         listen address (default 0.0.0.0:4000)
  --tls-cert FILE            serve TLS with this certificate (PEM) ...
  --tls-key FILE             ... and key; plain TCP otherwise (channels are end-to-end encrypted)
  --trust FILE               authority identity file to trust (repeatable; required)
  --authority HOST:PORT      follow the authority's revocation list (recommended)
  --metrics HOST:PORT        /metrics, /healthz, /readyz (default 127.0.0.1:9420; "off" to disable)
  --max-connections N        admitted connections at most (default 20000)
  --max-per-identity N       connections per identity at most (default 64)
  --rate BYTES_PER_SECOND    per-identity byte rate (default 268435456)
  --idle-timeout SECONDS     close silent connections (default 300)
  --log-json                 JSON log lines
  -h, --help                 this help

The relay admits a connection only after it proves an identity with a valid,
unrevoked credential from a trusted authority. An alias (a gateway's
rendezvous name) can be registered only by a member whose credential has the
attribute relay = <alias>, "*", or a list containing it.
`;

interface Config {
  listen?: string;
  "tls-cert"?: string;
  "tls-key"?: string;
  trust?: string[];
  authority?: string;
  metrics?: string;
  "max-connections"?: string;
  "max-per-identity"?: string;
  rate?: string;
  "idle-timeout"?: string;
}

function fail(message: string, code = 2): never {
  console.error(`nexus-relay: ${message}`);
  Deno.exit(code);
}

/** Subscribes to the authority's revocations, reconnecting with backoff. */
async function followAuthority(
  relay: Relay,
  address: { hostname: string; port: number },
  trust: TrustStore,
  logger: Logger,
  stopped: () => boolean,
): Promise<void> {
  // The relay talks to the authority under a throwaway identity: the
  // revocation list is public, and the relay keeps no state on disk.
  const identity = await Identity.create(await SoftwareSigner.generate());
  const local = await createChannelIdentity(identity);
  let delay = 500;
  while (!stopped()) {
    const node = new Node({ name: "relay-authority" });
    const transport = new TcpTransport(node);
    try {
      const conn = await transport.connect(address);
      const client = await AuthorityClient.connect({ node, route: [conn.address], local, trust });
      await client.subscribe(async (list) => {
        await relay.applyRevocations(list);
        logger.info("revocation list applied", { serial: list.serial });
      });
      delay = 500;
      await client.channel.closed;
    } catch (error) {
      logger.warn("authority unreachable; retrying", {
        error: error instanceof Error ? error.message : String(error),
        retry_ms: delay,
      });
    }
    await transport.close().catch(() => {});
    if (stopped()) return;
    // Backoff with jitter: never a tight loop against a down authority.
    await new Promise((resolve) => setTimeout(resolve, delay * (0.5 + Math.random())));
    delay = Math.min(delay * 2, 30_000);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      config: { type: "string" },
      listen: { type: "string" },
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
      trust: { type: "string", multiple: true },
      authority: { type: "string" },
      metrics: { type: "string" },
      "max-connections": { type: "string" },
      "max-per-identity": { type: "string" },
      rate: { type: "string" },
      "idle-timeout": { type: "string" },
      "log-json": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  let config: Config = {};
  if (values.config !== undefined) {
    try {
      config = JSON.parse(await Deno.readTextFile(values.config)) as Config;
    } catch (error) {
      fail(`cannot read config ${values.config}: ${(error as Error).message}`);
    }
  }
  const get = <K extends keyof Config>(key: K): Config[K] =>
    ((values as Record<string, unknown>)[key] as Config[K]) ?? config[key];
  const number = (key: keyof Config, fallback: number): number => {
    const text = get(key) as string | undefined;
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!Number.isFinite(value) || value <= 0) fail(`--${key} wants a positive number`);
    return value;
  };
  const logger = createLogger({ component: "relay", json: values["log-json"] });
  const trustFiles = (get("trust") ?? []) as string[];
  if (trustFiles.length === 0) fail("at least one --trust authority identity file is required");
  const trust = new TrustStore();
  for (const file of trustFiles) trust.add(await importIdentity(await Deno.readTextFile(file)));
  const certFile = get("tls-cert");
  const keyFile = get("tls-key");
  if ((certFile === undefined) !== (keyFile === undefined)) {
    fail("--tls-cert and --tls-key go together");
  }
  const listen = parseHostPort(get("listen") ?? "0.0.0.0:4000", "--listen");
  const metricsAt = get("metrics") ?? "127.0.0.1:9420";

  const relay = startRelay({
    ...listen,
    tls: certFile && keyFile
      ? { cert: await Deno.readTextFile(certFile), key: await Deno.readTextFile(keyFile) }
      : undefined,
    trust,
    maxConnections: number("max-connections", 20_000),
    maxConnectionsPerIdentity: number("max-per-identity", 64),
    bytesPerSecondPerIdentity: number("rate", 256 * 1024 * 1024),
    idleTimeoutMs: number("idle-timeout", 300) * 1000,
    ops: metricsAt === "off" ? undefined : parseHostPort(metricsAt, "--metrics"),
    logger,
  });
  console.log(
    `LISTENING ${relay.addr.hostname}:${relay.addr.port}` +
      (relay.opsAddr ? ` metrics=${relay.opsAddr.hostname}:${relay.opsAddr.port}` : ""),
  );
  let stopping = false;
  const authority = get("authority");
  const following = authority !== undefined
    ? followAuthority(relay, parseHostPort(authority, "--authority"), trust, logger, () => stopping)
    : Promise.resolve();
  const stop = Promise.withResolvers<void>();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => stop.resolve());
  }
  await stop.promise;
  stopping = true;
  logger.info("shutting down");
  await relay.close();
  await Promise.race([following, new Promise((r) => setTimeout(r, 1000))]);
  Deno.exit(0);
}

try {
  await main();
} catch (error) {
  if (error instanceof NexusError) fail(`${error.message} [${error.code}]`, 1);
  fail(error instanceof Error ? `${error.name}: ${error.message}` : String(error), 1);
}
