/**
 * Runs `authority/main.ts` as real processes under the `authority`
 * permission set, against a fresh SoftHSM2 token, for cross-process tests.
 */
import { createSoftHsmToken, type SoftHsmToken } from "../../hsm/testing/softhsm.ts";
import { readBanner } from "./banner.ts";
import { AuthorityClient } from "../../src/authority_client/authority_client.ts";
import {
  createChannelIdentity,
  type RenewableChannelIdentity,
} from "../../src/channel/channel_identity.ts";
import type { TrustStore } from "../../src/credential/trust_store.ts";
import type { Identity } from "../../src/identity/identity.ts";
import { Node } from "../../src/routing/node.ts";
import { TcpTransport } from "../../src/transport/tcp_transport.ts";

const root = new URL("../../", import.meta.url).pathname;

/** A fresh token and a state directory under ./.state (inside the permission set). */
export interface AuthorityFixture {
  readonly token: SoftHsmToken;
  /** State directory relative to the project root. */
  readonly state: string;
  /** Runs a CLI command; returns exit code and output. */
  run(args: string[], options?: { pin?: string; env?: Record<string, string> }): Promise<
    { code: number; stdout: string; stderr: string }
  >;
  /** Starts `serve` on 127.0.0.1:0 and resolves with its port once it listens. */
  serve(
    extra?: string[],
  ): Promise<
    { pid: number; port: number; identifier: string; metrics: string; stop(): Promise<void> }
  >;
  /**
   * The arguments that make a relay listening on `127.0.0.1:port` a member
   * of this authority (at `authorityPort`): its own state directory under
   * the fixture's, a one-time ticket (role=relay, relay_addresses naming
   * that address) in a 0600 file, the trust anchor and the authority.
   * The same state directory is used again for the same port, so a
   * restarted relay keeps its identity and credential. `alsoAt` adds
   * addresses its credential names too (`host:port`): a proxy in front of
   * it that members dial instead.
   */
  relayArgs(port: number, authorityPort: number, alsoAt?: string[]): Promise<string[]>;
  remove(): Promise<void>;
}

/** Common arguments naming the token. */
function hsmArgs(token: SoftHsmToken): string[] {
  return [
    "--hsm-module",
    token.modulePath,
    "--hsm-token",
    token.tokenLabel,
    "--pin-env",
    "NEXUS_HSM_PIN",
  ];
}

export async function authorityFixture(): Promise<AuthorityFixture> {
  const token = await createSoftHsmToken();
  const state = `.state/test-authority-${crypto.randomUUID()}`;
  const command = (args: string[], pin: string, env: Record<string, string> = {}) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-q", "--no-prompt", "-P=authority", "authority/main.ts", ...args],
      cwd: root,
      env: { SOFTHSM2_CONF: token.conf, NEXUS_HSM_PIN: pin, ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    });
  return {
    token,
    state,
    async run(args, options = {}) {
      const out = await command(
        // The caller's arguments come last: with repeated flags the last wins.
        ["--state", state, ...hsmArgs(token), ...args],
        options.pin ?? token.pin,
        options.env,
      ).output();
      return {
        code: out.code,
        stdout: new TextDecoder().decode(out.stdout),
        stderr: new TextDecoder().decode(out.stderr),
      };
    },
    async serve(extra = []) {
      const child = command(
        [
          "serve",
          "--listen",
          "127.0.0.1:0",
          "--metrics",
          "127.0.0.1:0",
          "--state",
          state,
          ...hsmArgs(token),
          ...extra,
        ],
        token.pin,
      ).spawn();
      let banner;
      try {
        banner = await readBanner(child);
      } catch (error) {
        const err = await new Response(child.stderr).text();
        throw new Error(`authority exited before listening: ${err}`, { cause: error });
      }
      // Drain stderr so the process never blocks on a full pipe.
      const stderr = new Response(child.stderr).text();
      return {
        pid: child.pid,
        port: banner.port,
        identifier: banner.identifier ?? "",
        metrics: banner.metrics ?? "",
        async stop() {
          child.kill("SIGTERM");
          await child.status;
          await child.stdout.cancel().catch(() => {});
          await stderr;
        },
      };
    },
    async relayArgs(port, authorityPort, alsoAt = []) {
      const stateDir = `${state}/relay-${port}`;
      const ticketFile = `${stateDir}.ticket`;
      try {
        await Deno.stat(`${root}${stateDir}/relay.credential`);
      } catch {
        const out = await command(
          [
            "--state",
            state,
            ...hsmArgs(token),
            "ticket",
            "create",
            "--json",
            "--attr",
            "role=relay",
            "--attr",
            `relay_addresses=[${[`127.0.0.1:${port}`, ...alsoAt].join(",")}]`,
          ],
          token.pin,
        ).output();
        if (out.code !== 0) throw new Error(new TextDecoder().decode(out.stderr));
        const { ticket } = JSON.parse(new TextDecoder().decode(out.stdout));
        await Deno.writeTextFile(`${root}${ticketFile}`, ticket, { mode: 0o600 });
      }
      return [
        "--state",
        stateDir,
        "--ticket-file",
        ticketFile,
        "--listen",
        `127.0.0.1:${port}`,
        "--trust",
        `${state}/authority.identity.json`,
        "--authority",
        `127.0.0.1:${authorityPort}`,
      ];
    },
    async remove() {
      await Deno.remove(`${root}${state}`, { recursive: true }).catch(() => {});
      await token.remove().catch(() => {});
    },
  };
}

/** Absolute path of a file in the fixture's state directory. */
export function statePath(fixture: AuthorityFixture, name: string): string {
  return `${root}${fixture.state}/${name}`;
}

/** A member's client at an authority process, over a node and a connection of its own. */
export interface AuthorityClientAt {
  readonly client: AuthorityClient;
  /** The TCP connection under the client's channel. */
  readonly connection: { readonly closed: Promise<unknown> };
  /** Closes the client, then the connection. */
  close(): Promise<void>;
}

/**
 * Connects `identity` (presenting `local`, made fresh when not given) to the
 * authority on 127.0.0.1:`port`, trusting `trust`, as a member process would:
 * a node, a transport and a connection of its own.
 */
export async function authorityClientAt(
  port: number,
  trust: TrustStore,
  identity: Identity,
  local?: RenewableChannelIdentity,
): Promise<AuthorityClientAt> {
  const node = new Node({ name: "member" });
  const transport = new TcpTransport(node);
  try {
    const conn = await transport.connect({ hostname: "127.0.0.1", port });
    const client = await AuthorityClient.connect({
      node,
      route: [conn.address],
      local: local ?? await createChannelIdentity(identity),
      trust,
    });
    return {
      client,
      connection: conn.connection,
      async close() {
        await client.close().catch(() => {});
        await transport.close();
      },
    };
  } catch (error) {
    await transport.close();
    throw error;
  }
}
