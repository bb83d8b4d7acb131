/**
 * A test client that acts like an edge, in-process: its own identity,
 * enrolled at the real authority with a ticket (over a secure channel),
 * admitted at the real relay with that credential, a secure channel to a
 * gateway through the relay (requiring the gateway's credential to say
 * role=gateway and the expected customer), and inlets on 127.0.0.1:0 for
 * named outlets.
 *
 * It is deliberately not `edge/`: the cross-process gateway tests need an
 * edge whose every step they control (a wrong customer, a missing
 * capability, a revoked member), and one that keeps going where a real edge
 * would stop.
 */
import { AuthorityClient } from "../../src/authority_client/authority_client.ts";
import { type SecureChannel } from "../../src/channel/secure_channel.ts";
import { type ChannelIdentity, createChannelIdentity } from "../../src/channel/channel_identity.ts";
import { connectSecureChannel } from "../../src/channel/handshake.ts";
import type { AttributeValue } from "../../src/credential/attributes.ts";
import type { Credential } from "../../src/credential/credential.ts";
import { TrustStore } from "../../src/credential/trust_store.ts";
import { readIdentityFile } from "../../src/identity/identity_file.ts";
import { Identity } from "../../src/identity/identity.ts";
import { SoftwareSigner } from "../../src/identity/software_signer.ts";
import { createLogger, type Logger } from "../../src/log.ts";
import { createInlet, type Inlet } from "../../src/portal/portal.ts";
import { connectRelay, type RelayConnection } from "../../src/relay_client/relay_client.ts";
import { Node } from "../../src/routing/node.ts";
import { TcpTransport } from "../../src/transport/tcp_transport.ts";

/** Options of {@link startTestEdge}. */
export interface TestEdgeOptions {
  /** For log lines. */
  name: string;
  /** The authority's identity file (the trust anchor). */
  authorityIdentityFile: string;
  /** The authority service's port on 127.0.0.1. */
  authorityPort: number;
  /** The relay's port on 127.0.0.1. */
  relayPort: number;
  /** A one-time enrollment ticket from `authority ticket create`... */
  ticket?: string;
  /** ...or a license key from `authority license create`. */
  license?: string;
}

/** Options of {@link TestEdge.connectGateway}. */
export interface GatewayChannelOptions {
  /** The gateway's alias at the relay. */
  alias: string;
  /**
   * Attributes the gateway's credential must carry exactly, e.g.
   * `{ role: "gateway", customer_id: "cust_001" }`.
   */
  requiredAttributes: Record<string, AttributeValue>;
  /** When given, the gateway's identifier must be this one. */
  pinned?: string;
  handshakeTimeoutMs?: number;
}

/** A running test edge. */
export interface TestEdge {
  readonly identity: Identity;
  readonly identifier: string;
  readonly credential: Credential;
  readonly local: ChannelIdentity;
  readonly node: Node;
  readonly relay: RelayConnection;
  /** Everything the edge's components logged (debug and up), one line each. */
  readonly logs: string[];
  readonly logger: Logger;
  /** The channel opened by the last successful {@link connectGateway}. */
  readonly channel: SecureChannel | null;
  /**
   * Opens a secure channel to the gateway behind `alias` at the relay:
   * route `[relay connection, "forward.<alias>", "api"]`.
   * @throws {HandshakeError} when either end refuses the other.
   */
  connectGateway(options: GatewayChannelOptions): Promise<SecureChannel>;
  /**
   * An inlet on 127.0.0.1:0 whose sessions go to `outlet.<name>` through
   * the current channel (read at each new connection).
   */
  openInlet(outlet: string): Inlet;
  close(): Promise<void>;
}

/** Enrolls, joins the relay, and returns the edge (no channel yet). */
export async function startTestEdge(options: TestEdgeOptions): Promise<TestEdge> {
  const logs: string[] = [];
  const logger = createLogger({
    component: options.name,
    level: "debug",
    write: (line) => void logs.push(line),
  });
  const trust = new TrustStore([await readIdentityFile(options.authorityIdentityFile)]);
  const identity = await Identity.create(await SoftwareSigner.generate());
  const node = new Node({ name: options.name, logger: logger.child("node") });
  const transport = new TcpTransport(node);
  const inlets: Inlet[] = [];
  let channel: SecureChannel | null = null;
  try {
    // Enrollment: a secure channel to the authority, the ticket redeemed.
    const toAuthority = await transport.connect({
      hostname: "127.0.0.1",
      port: options.authorityPort,
    });
    const client = await AuthorityClient.connect({
      node,
      route: [toAuthority.address],
      local: await createChannelIdentity(identity),
      trust,
      logger: logger.child("authority"),
    });
    let credential: Credential;
    try {
      credential = await client.enroll(
        options.license !== undefined ? { license: options.license } : { ticket: options.ticket! },
      );
    } finally {
      await client.close().catch(() => {});
      toAuthority.connection.close("enrolled");
    }
    const local = await createChannelIdentity(identity, {
      credentials: () => [credential.encoded],
    });
    const relay = await connectRelay({
      transport,
      hostname: "127.0.0.1",
      port: options.relayPort,
      identity,
      credential: credential.encoded,
      trust,
    });
    return {
      identity,
      identifier: identity.identifier,
      credential,
      local,
      node,
      relay,
      logs,
      logger,
      get channel() {
        return channel;
      },
      async connectGateway(gateway) {
        const opened = await connectSecureChannel({
          node,
          route: [relay.address, `forward.${gateway.alias}`, "api"],
          local,
          policy: {
            trust,
            requiredAttributes: gateway.requiredAttributes,
            pinned: gateway.pinned === undefined ? undefined : [gateway.pinned],
          },
          handshakeTimeoutMs: gateway.handshakeTimeoutMs,
          logger: logger.child("channel"),
        });
        channel = opened;
        return opened;
      },
      openInlet(outlet) {
        const inlet = createInlet({
          node,
          listen: { hostname: "127.0.0.1", port: 0 },
          route: () => {
            if (channel === null) throw new Error("no channel to the gateway");
            return [channel.address, `outlet.${outlet}`];
          },
          logger: logger.child(`inlet.${outlet}`),
        });
        inlets.push(inlet);
        return inlet;
      },
      async close() {
        for (const inlet of inlets) inlet.close();
        await channel?.close("edge closing").catch(() => {});
        await transport.close();
      },
    };
  } catch (error) {
    await transport.close();
    throw error;
  }
}
