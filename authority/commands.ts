/**
 * The authority's operator commands as library functions (`init`,
 * `rotate`, `show`, `ticket create`, `license create`, `revoke`,
 * `audit verify`, `members`) and `run` (the service until a signal). Each
 * command returns what it prints, as text and as data (`--json`); the CLI
 * in `main.ts` only parses and prints.
 *
 * @module
 */
import type { HsmOptions } from "../hsm/pkcs11_signer.ts";
import { readPin } from "../hsm/pin.ts";
import { formatHostPort, parseHostPort } from "../src/config/host_port.ts";
import type { AttributeValue } from "../src/credential/attributes.ts";
import { ConfigError } from "../src/errors.ts";
import { type Logger, silentLogger } from "../src/log.ts";
import { describeAuthority, initAuthority, rotateAuthority, statePaths } from "./ceremony.ts";
import { AuthorityConfigSchema, type CheckedAuthorityConfig } from "./config.ts";
import { whenAborted } from "../src/member/backoff.ts";
import { startAuthority } from "./service.ts";
import { AuthorityStore, isPostgresUrl } from "./store.ts";

/** What a command prints: text for a terminal, data for `--json`, and its exit status. */
export interface CommandOutput {
  readonly text: string;
  readonly data: unknown;
  /** Non-zero when the command found a problem (a broken audit chain). */
  readonly failed?: boolean;
}

/** The HSM options of a configuration, with the PIN read from its file, variable or prompt. */
export async function hsmOptions(config: CheckedAuthorityConfig): Promise<HsmOptions> {
  return {
    modulePath: config["hsm-module"],
    tokenLabel: config["hsm-token"],
    pin: await readPin({ file: config["pin-file"], env: config["pin-env"], prompt: true }),
  };
}

/** Where a configuration's store is: its PostgreSQL URL, or the state directory's SQLite file. */
export function storeLocation(config: CheckedAuthorityConfig): string {
  return config.database ?? statePaths(config.state).db;
}

async function withStore<T>(
  config: CheckedAuthorityConfig,
  fn: (store: AuthorityStore) => Promise<T>,
): Promise<T> {
  const store = await AuthorityStore.open(storeLocation(config));
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/**
 * Parses an `--attr NAME=VALUE`: integers and true/false are typed,
 * `[a,b]` is a list of text.
 * @throws {ConfigError} `usage` for any other shape.
 */
export function parseAttribute(text: string): [string, AttributeValue] {
  const at = text.indexOf("=");
  if (at <= 0) throw new ConfigError("usage", `--attr wants NAME=VALUE, got ${text}`);
  const name = text.slice(0, at);
  const value = text.slice(at + 1);
  if (/^-?\d+$/.test(value)) return [name, Number(value)];
  if (value === "true" || value === "false") return [name, value === "true"];
  if (value.startsWith("[") && value.endsWith("]")) {
    return [name, value.slice(1, -1).split(",").map((v) => v.trim()).filter((v) => v !== "")];
  }
  return [name, value];
}

/** `init`: the key generated in the HSM (or an existing one), the identity made. */
export async function initCommand(
  config: CheckedAuthorityConfig,
  options: { keyLabel?: string; existingKey?: string },
): Promise<CommandOutput> {
  const result = await initAuthority({
    stateDir: config.state,
    hsm: await hsmOptions(config),
    keyLabel: options.keyLabel,
    existingKey: options.existingKey !== undefined ? { label: options.existingKey } : undefined,
  });
  result.session.close();
  await withStore(config, (store) =>
    store.appendAudit("authority.init", {
      identifier: result.identity.identifier,
      key: result.key.label,
    }));
  return {
    text:
      `authority created\n  identifier   ${result.identity.identifier}\n  fingerprint  ${result.fingerprint}\n  HSM key      ${result.key.label} (id ${result.key.id})\n  identity     ${
        statePaths(config.state).identity
      } (give this file to gateways, relays and edges)`,
    data: {
      identifier: result.identity.identifier,
      fingerprint: result.fingerprint,
      key: result.key,
    },
  };
}

/** `rotate`: a new HSM key; the history gains a change signed by both keys. */
export async function rotateCommand(config: CheckedAuthorityConfig): Promise<CommandOutput> {
  const result = await rotateAuthority({ stateDir: config.state, hsm: await hsmOptions(config) });
  result.session.close();
  await withStore(config, (store) =>
    store.appendAudit("authority.rotate", {
      identifier: result.identity.identifier,
      key: result.key.label,
      changes: result.identity.history.changes.length,
    }));
  return {
    text:
      `authority key rotated\n  identifier   ${result.identity.identifier}\n  new HSM key  ${result.key.label} (id ${result.key.id})\n  changes      ${result.identity.history.changes.length}\n  restart the service; verifiers accept the new key once they receive the new history`,
    data: { identifier: result.identity.identifier, key: result.key },
  };
}

/** `show`: the identity, its keys, their HSM labels and properties. */
export async function showCommand(config: CheckedAuthorityConfig): Promise<CommandOutput> {
  const description = await describeAuthority({
    stateDir: config.state,
    hsm: await hsmOptions(config),
  });
  const lines = [
    `identifier   ${description.identifier}`,
    `fingerprint  ${description.fingerprint}`,
    `changes      ${description.changes}`,
    ...description.keys.map((key) =>
      `key          ${key.label} id=${key.id} ${key.current ? "(current)" : "(previous)"} ${
        key.inHsm
          ? `extractable=${key.extractable} sensitive=${key.sensitive} value-readable=${key.valueReadable}`
          : "NOT IN HSM"
      } public=${key.publicKey}`
    ),
  ];
  return { text: lines.join("\n"), data: description };
}

/** `ticket create`: a one-time enrollment ticket, printed once. */
export async function ticketCommand(
  config: CheckedAuthorityConfig,
  options: { attributes: Record<string, AttributeValue>; ttlSeconds: number },
): Promise<CommandOutput> {
  const { secret, ticket } = await withStore(config, (store) => store.createTicket(options));
  return {
    text: `${secret}\n(one-time enrollment ticket, valid until ${
      new Date(ticket.expiresAt * 1000).toISOString()
    }; attributes ${JSON.stringify(ticket.attributes)})`,
    data: { ticket: secret, expiresAt: ticket.expiresAt, attributes: ticket.attributes },
  };
}

/** `license create`: a license key mapped to a customer and tier, printed once. */
export async function licenseCommand(
  config: CheckedAuthorityConfig,
  options: { customerId: string; tier: string; attributes: Record<string, AttributeValue> },
): Promise<CommandOutput> {
  const { key } = await withStore(config, (store) => store.createLicense(options));
  return {
    text: `${key}\n(license key for ${options.customerId}, tier ${options.tier})`,
    data: { license: key },
  };
}

/** `revoke`: a member identifier or a credential id, into the store; the service signs it. */
export async function revokeCommand(
  config: CheckedAuthorityConfig,
  target: string,
): Promise<CommandOutput> {
  const state = await withStore(config, (store) => store.revoke(target));
  return {
    text:
      `revoked ${target}; revocation list serial ${state.serial} (the service signs and pushes it within a second)`,
    data: { revoked: target, serial: state.serial },
  };
}

/** `audit verify`: the hash chain checked end to end. */
export async function auditVerifyCommand(config: CheckedAuthorityConfig): Promise<CommandOutput> {
  const result = await withStore(config, (store) => store.verifyAudit());
  if (result.ok) {
    return {
      text: `audit log verified: ${result.entries} entries, head ${result.head}`,
      data: result,
    };
  }
  return {
    text: `audit log BROKEN at entry ${result.seq}: ${result.reason}`,
    data: result,
    failed: true,
  };
}

/** `members`: every member, active or revoked, with its attributes. */
export async function membersCommand(config: CheckedAuthorityConfig): Promise<CommandOutput> {
  const members = await withStore(config, (store) => store.listMembers());
  return {
    text:
      members.map((m) =>
        `${m.identifier} ${m.revokedAt === null ? "active " : "REVOKED"} ${
          JSON.stringify(m.attributes)
        }`
      ).join("\n") || "(no members)",
    data: members,
  };
}

/**
 * `store move --to URL`: the state directory's SQLite store copied into an
 * empty PostgreSQL database, its audit chain verified before and after
 * (`store/store_move.ts`). The SQLite file is left as it was.
 */
export async function storeMoveCommand(
  config: CheckedAuthorityConfig,
  to: string,
): Promise<CommandOutput> {
  if (!isPostgresUrl(to)) throw new ConfigError("usage", "store move --to wants postgres://…");
  const checked = AuthorityConfigSchema.shape.database.safeParse(to);
  if (!checked.success) {
    throw new ConfigError("usage", `--to: ${checked.error.issues[0]?.message ?? "invalid"}`);
  }
  const { SqliteCore } = await import("./store/sqlite_core.ts");
  const { PgCore } = await import("./store/pg_core.ts");
  const { moveStore } = await import("./store/store_move.ts");
  const source = await SqliteCore.open(statePaths(config.state).db);
  try {
    const target = await PgCore.open(to);
    try {
      const report = await moveStore(
        source,
        target,
        (table, rows) => console.error(`store move: ${table}: ${rows} rows`),
      );
      return {
        text: `store moved to ${new URL(to).host}${new URL(to).pathname}: ${
          Object.entries(report.rows).map(([t, n]) => `${t} ${n}`).join(", ")
        }\n  audit chain verified: ${report.head.seq} entries, head ${report.head.hash}\n  then entry ${report.movedHead.seq} (store.moved); serve the replicas with --database ${to}`,
        data: report,
      };
    } finally {
      await target.close();
    }
  } finally {
    await source.close();
  }
}

/** Options of {@link run}. */
export interface RunOptions {
  /** Stops the service when it aborts. */
  signal: AbortSignal;
  logger?: Logger;
  /** Called once with the LISTENING line, when the service listens. */
  announce?: (line: string) => void;
}

/**
 * `serve`: runs the authority service until `signal` aborts, announcing
 * `LISTENING host:port <identifier> [metrics=host:port]` once it listens.
 * Fails closed (does not start) on any HSM or state problem.
 */
export async function run(config: CheckedAuthorityConfig, options: RunOptions): Promise<void> {
  const logger = options.logger ?? silentLogger;
  const listen = parseHostPort(config.listen, "listen");
  const running = await startAuthority({
    stateDir: config.state,
    database: config.database,
    hsm: await hsmOptions(config),
    hostname: listen.hostname,
    port: listen.port,
    ops: config.metrics === "off" ? undefined : parseHostPort(config.metrics, "metrics"),
    ttlSeconds: { edge: config["edge-ttl"], default: config["default-ttl"] },
    attestationTtlSeconds: config["attestation-ttl"],
    maxConnections: config["max-connections"],
    maxConnectionsPerSource: config["max-per-source"],
    guard: {
      handshakeMs: config["handshake-timeout"] * 1000,
      strangerIdleMs: config["handshake-timeout"] * 3000,
    },
    logger,
  });
  options.announce?.(
    `LISTENING ${formatHostPort(running.addr)} ${running.identity.identifier}` +
      (running.opsAddr ? ` metrics=${formatHostPort(running.opsAddr)}` : ""),
  );
  await whenAborted(options.signal);
  logger.info("shutting down");
  await running.close();
}
