/**
 * The member runtime: what every process that belongs to a deployment
 * does to stay a member in good standing (docs/design.md §3, §8), written
 * once for the edge, the gateway, the relay and the backend service agent.
 *
 * - **A credential, kept valid.** It connects to the authority over a
 *   secure channel, fetches a credential (enrolling first with a ticket or
 *   a license key when it is not yet a member), and refreshes it at two
 *   thirds of its lifetime. Each new credential is announced
 *   ({@link Member.onCredential}) so that the process can present it inside
 *   its open channels and at its relays. A process may keep the credential
 *   in a file (`credentialFile`) so that a restart works while the
 *   authority is unreachable.
 * - **Revocations, followed.** It subscribes to the authority's signed
 *   revocation list, applies each list to its {@link RevocationRegistry}
 *   (a rollback is refused) and announces it ({@link Member.onRevocations})
 *   so the process can revalidate its channels.
 * - **Its own attestation, renewed.** The X25519 static key its channels
 *   present is attested by its identity with an expiry (30 days by
 *   default). At two thirds of that lifetime a fresh key and attestation
 *   replace them ({@link RenewableChannelIdentity.renew}), so a process
 *   that runs for months keeps accepting and opening handshakes.
 * - **One backoff.** A lost or refused link to the authority is retried
 *   with the shared backoff (src/member/backoff.ts), moving to the next
 *   authority endpoint each time; a revoked member asks again only rarely.
 *
 * @example
 * ```ts ignore
 * const member = await startMember({
 *   role: "gateway", identity, trust, node, transport,
 *   authorities: [{ hostname: "authority.internal", port: 4100 }],
 *   enrollment: () => ({ ticket }),
 * });
 * member.onCredential((c) => refreshEverywhere(c));
 * member.onRevocations(() => revalidateChannels());
 * await member.firstCredential;
 * ```
 *
 * @module
 */
import { AuthorityClient } from "../authority_client/authority_client.ts";
import {
  createChannelIdentity,
  type RenewableChannelIdentity,
} from "../channel/channel_identity.ts";
import type { HostPort } from "../config/host_port.ts";
import { type Credential, verifyCredential } from "../credential/credential.ts";
import { type RevocationList, RevocationRegistry } from "../credential/revocation.ts";
import type { TrustStore } from "../credential/trust_store.ts";
import { AuthorityError } from "../errors.ts";
import type { Identity } from "../identity/identity.ts";
import { type Logger, silentLogger } from "../log.ts";
import type { Metrics } from "../ops/metrics.ts";
import type { Node } from "../routing/node.ts";
import type { TcpTransport } from "../transport/tcp_transport.ts";
import { renewAttestations, untilTwoThirds } from "./attestation_renewal.ts";
import { backoffMs, sleep } from "./backoff.ts";

/**
 * Refusals that say nothing about this member: the replica that answered
 * cannot reach its database. Another replica may, so the member moves on
 * to the next endpoint with its backoff, even before its first credential.
 */
const RETRYABLE: ReadonlySet<string> = new Set(["store_unavailable"]);

/** How a member enrolls when the authority does not know it yet. */
export type Enrollment = { ticket: string } | { license: string };

/** Options of {@link startMember}. */
export interface MemberOptions {
  /** What this process is, for logs and errors: "edge", "gateway", "relay", "service". */
  role: string;
  /** This process's identity: what it enrolls as and presents in its channels. */
  identity: Identity;
  /** The authority's identity (the trust anchor); updated when it rotates its key. */
  trust: TrustStore;
  /** The node the authority channel runs on (the process's own). */
  node: Node;
  /** The TCP transport that connects to the authority endpoints. */
  transport: TcpTransport;
  /** Authority endpoints: one is used at a time, the next after a failure. */
  authorities: readonly HostPort[];
  /** The ticket or license key to enroll with when not yet a member. */
  enrollment?: () => Enrollment | undefined;
  /** What the error says to give when there is none (default "a ticket"). */
  enrollWith?: string;
  /** Keep the credential in this file (0600, written aside and renamed). */
  credentialFile?: string;
  /** Lifetime of this process's channel attestations, seconds (default 30 days). */
  attestationTtlSeconds?: number;
  /** Where enrollment, refreshes, revocation and retries are logged (default: silent). */
  logger?: Logger;
}

/** Where a member stands. */
export type MemberState = "enrolling" | "member" | "revoked" | "stopped";

/** What {@link Member.status} reports (for `status` commands and logs). */
export interface MemberStatus {
  /** Where the member stands now. */
  readonly state: MemberState;
  /** The current credential's id, expiry (Unix seconds) and attributes; null when none. */
  readonly credential: {
    readonly id: string;
    readonly expiresAt: number;
    readonly attributes: Readonly<Record<string, unknown>>;
  } | null;
  /** The link to the authority: whether it is open, to which endpoint, and the last error. */
  readonly authority: {
    readonly connected: boolean;
    readonly address: string | null;
    readonly lastError: string | null;
  };
  /** When this process's channel attestation expires, Unix seconds. */
  readonly attestationExpiresAt: number;
  /** The serial of the newest revocation list applied (0: none yet). */
  readonly revocationSerial: number;
}

/** A running member runtime. */
export interface Member {
  /** This process's identity. */
  readonly identity: Identity;
  /** The authority's trust anchor, as given in {@link MemberOptions.trust}. */
  readonly trust: TrustStore;
  /** The revocations this process honours, kept current from the authority. */
  readonly revocations: RevocationRegistry;
  /** What this process's channels present: its identity, attested key, credential. */
  readonly local: RenewableChannelIdentity;
  /** The current credential (null before the first). */
  readonly credential: Credential | null;
  /** Where the member stands now. */
  readonly state: MemberState;
  /**
   * Resolves with the first credential (at once when a stored one is
   * valid); rejects with the authority's refusal when there is none yet
   * and the authority refuses (a used ticket, a revoked member).
   */
  readonly firstCredential: Promise<Credential>;
  /** Called with each new credential (enrollment, refresh, reconnection). */
  onCredential(listener: (credential: Credential) => void | Promise<void>): void;
  /** Called after each new revocation list is applied. */
  onRevocations(listener: (list: RevocationList) => void | Promise<void>): void;
  /** Called once when the authority says this member is revoked. */
  onRevoked(listener: () => void | Promise<void>): void;
  /** A snapshot of where the member stands, its credential, authority link and serials. */
  status(): MemberStatus;
  /**
   * Registers `<prefix>_credential_expiry_seconds`,
   * `<prefix>_attestation_expiry_seconds`, `<prefix>_authority_connected`
   * and `<prefix>_revocation_serial`.
   */
  registerMetrics(metrics: Metrics, prefix: string): void;
  /** Stops the loops and closes the authority channel. */
  close(): Promise<void>;
}

const message = (error: unknown) => error instanceof Error ? error.message : String(error);

async function readStoredCredential(
  path: string,
  trust: TrustStore,
  identity: Identity,
): Promise<Credential | null> {
  try {
    return await verifyCredential(await Deno.readFile(path), {
      trust,
      subject: identity.identifier,
      subjectKey: identity.primaryKey,
    });
  } catch {
    return null; // absent, expired or from another authority: ask again
  }
}

/** Writes `bytes` to `path` aside and renames it, so a crash never leaves half a file. */
async function writeAtomically(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp`;
  await Deno.writeFile(tmp, bytes, { mode: 0o600 });
  await Deno.rename(tmp, path);
}

/** A member's authority loops, with the state they keep. */
class MemberRuntime implements Member {
  readonly identity: Identity;
  readonly trust: TrustStore;
  readonly revocations: RevocationRegistry = new RevocationRegistry();
  readonly local: RenewableChannelIdentity;
  readonly firstCredential: Promise<Credential>;
  #options: MemberOptions;
  #logger: Logger;
  #credential: Credential | null;
  #revoked = false;
  #stopping = new AbortController();
  #first = Promise.withResolvers<Credential>();
  #credentialListeners: ((credential: Credential) => void | Promise<void>)[] = [];
  #revocationListeners: ((list: RevocationList) => void | Promise<void>)[] = [];
  #revokedListeners: (() => void | Promise<void>)[] = [];
  #client: AuthorityClient | null = null;
  #authority = {
    connected: false,
    address: null as string | null,
    lastError: null as string | null,
  };
  #loops: Promise<void>[] = [];

  constructor(options: MemberOptions, local: RenewableChannelIdentity, stored: Credential | null) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.identity = options.identity;
    this.trust = options.trust;
    this.local = local;
    this.#credential = stored;
    this.firstCredential = this.#first.promise;
    this.#first.promise.catch(() => {});
    if (stored !== null) this.#first.resolve(stored);
    if (options.authorities.length === 0) throw new TypeError("a member needs an authority");
    this.#loops.push(
      this.#authorityLoop(),
      renewAttestations(local, { signal: this.#stopping.signal, logger: this.#logger }),
    );
  }

  get credential(): Credential | null {
    return this.#credential;
  }

  get state(): MemberState {
    if (this.#stopping.signal.aborted) return "stopped";
    if (this.#revoked) return "revoked";
    return this.#credential === null ? "enrolling" : "member";
  }

  onCredential(listener: (credential: Credential) => void | Promise<void>): void {
    this.#credentialListeners.push(listener);
  }

  onRevocations(listener: (list: RevocationList) => void | Promise<void>): void {
    this.#revocationListeners.push(listener);
  }

  onRevoked(listener: () => void | Promise<void>): void {
    this.#revokedListeners.push(listener);
  }

  status(): MemberStatus {
    const credential = this.#credential;
    return {
      state: this.state,
      credential: credential === null ? null : {
        id: credential.id,
        expiresAt: credential.expiresAt,
        attributes: credential.attributes,
      },
      authority: { ...this.#authority },
      attestationExpiresAt: this.local.attestationExpiresAt,
      revocationSerial: this.revocations.serial,
    };
  }

  registerMetrics(metrics: Metrics, prefix: string): void {
    metrics.register(
      `${prefix}_credential_expiry_seconds`,
      "gauge",
      "Expiry of this process's credential, Unix seconds (0: none).",
      () => this.#credential?.expiresAt ?? 0,
    );
    metrics.register(
      `${prefix}_attestation_expiry_seconds`,
      "gauge",
      "Expiry of this process's channel attestation, Unix seconds (renewed at two thirds).",
      () => this.local.attestationExpiresAt,
    );
    metrics.register(
      `${prefix}_authority_connected`,
      "gauge",
      "1 while the channel to the authority is open.",
      () => this.#authority.connected ? 1 : 0,
    );
    metrics.register(
      `${prefix}_revocation_serial`,
      "gauge",
      "Serial of the newest revocation list applied.",
      () => this.revocations.serial,
    );
  }

  async close(): Promise<void> {
    this.#stopping.abort();
    this.#first.reject(new Error(`the ${this.#options.role} stopped`));
    await this.#client?.close().catch(() => {});
    await Promise.race([Promise.allSettled(this.#loops), sleep(1000)]);
  }

  async #announce<T>(listeners: ((value: T) => void | Promise<void>)[], value: T): Promise<void> {
    for (const listener of listeners) {
      try {
        await listener(value);
      } catch (error) {
        this.#logger.warn("a member listener failed", { error: message(error) });
      }
    }
  }

  async #take(credential: Credential): Promise<void> {
    this.#credential = credential;
    this.#revoked = false;
    if (this.#options.credentialFile !== undefined) {
      await writeAtomically(this.#options.credentialFile, credential.encoded);
    }
    this.#first.resolve(credential);
    await this.#announce(this.#credentialListeners, credential);
  }

  /** A fresh credential, enrolling first when the authority does not know this identity. */
  async #fetch(client: AuthorityClient): Promise<Credential> {
    try {
      return await client.credential();
    } catch (error) {
      if (!(error instanceof AuthorityError && error.code === "not_member")) throw error;
    }
    const enrollment = this.#options.enrollment?.();
    if (enrollment === undefined) {
      throw new AuthorityError(
        "not_member",
        `this ${this.#options.role} is not a member: give it ${
          this.#options.enrollWith ?? "a ticket"
        } to enroll`,
      );
    }
    const credential = await client.enroll(enrollment);
    this.#logger.info("enrolled at the authority", { identifier: this.identity.identifier });
    return credential;
  }

  async #authorityLoop(): Promise<void> {
    const { node, transport, authorities, trust } = this.#options;
    const signal = this.#stopping.signal;
    let index = 0;
    for (let attempt = 0; !signal.aborted; attempt++) {
      const target = authorities[index % authorities.length];
      const address = `${target.hostname}:${target.port}`;
      let conn: Awaited<ReturnType<TcpTransport["connect"]>> | null = null;
      try {
        conn = await transport.connect(target);
        const client = this.#client = await AuthorityClient.connect({
          node,
          route: [conn.address],
          local: this.local,
          trust,
          logger: this.#logger.child("authority"),
        });
        // The connection gone (the replica killed, the network cut): the
        // requests waiting on it fail now, not at their 10 s timeout, and
        // the loop moves on to the next endpoint.
        conn.connection.closed.then(() => client.close().catch(() => {}));
        if (signal.aborted) break;
        this.#authority.connected = true;
        this.#authority.address = address;
        await this.#take(await this.#fetch(client));
        this.#authority.lastError = null;
        attempt = 0;
        await client.subscribe(async (list) => {
          if (await this.revocations.apply(list, trust).catch(() => false)) {
            await this.#announce(this.#revocationListeners, list);
          }
        });
        // Refresh at two thirds of the lifetime, for as long as the channel lasts.
        const closed = Promise.race([client.channel.closed, conn.connection.closed]);
        while (!signal.aborted && !client.channel.isClosed) {
          const wait = Math.max(
            1000,
            untilTwoThirds(this.#credential!.createdAt, this.#credential!.expiresAt),
          );
          await sleep(wait, { signal, wake: closed });
          if (signal.aborted || client.channel.isClosed) break;
          await this.#take(await client.credential());
          this.#logger.info("credential refreshed", { expires_at: this.#credential!.expiresAt });
        }
      } catch (error) {
        if (signal.aborted) break;
        this.#authority.lastError = message(error);
        if (error instanceof AuthorityError && error.code === "member_revoked") {
          if (!this.#revoked) {
            this.#revoked = true;
            this.#logger.error(`this ${this.#options.role} has been revoked at the authority`);
            await this.#announce(this.#revokedListeners, undefined);
          }
        } else if (
          this.#credential === null && error instanceof AuthorityError &&
          !RETRYABLE.has(error.code)
        ) {
          // A refusal before there is any credential stops the start.
          this.#first.reject(error);
          return;
        } else {
          this.#logger.warn("authority unreachable; retrying", {
            authority: address,
            error: message(error),
          });
          index++;
        }
      } finally {
        this.#authority.connected = false;
        await this.#client?.close().catch(() => {});
        this.#client = null;
        conn?.connection.close("authority session over");
      }
      // A revoked member asks again rarely: an operator may re-admit it.
      await sleep(backoffMs(this.#revoked ? 6 : attempt), { signal });
    }
  }
}

/**
 * The member's first credential, or, when `signal` aborts first, the
 * member closed and a rejection: a process told to stop while it waits
 * for an unreachable authority stops at once instead of ignoring it.
 *
 * @example
 * ```ts ignore
 * const credential = await untilStartedOr(member, options.signal);
 * ```
 */
export async function untilStartedOr(member: Member, signal?: AbortSignal): Promise<Credential> {
  if (signal === undefined) return await member.firstCredential;
  const stop = () => void member.close();
  if (signal.aborted) stop();
  signal.addEventListener("abort", stop, { once: true });
  try {
    return await member.firstCredential;
  } finally {
    signal.removeEventListener("abort", stop);
  }
}

/**
 * Starts the member runtime: reads the stored credential (when
 * `credentialFile` is given), makes this process's channel identity, and
 * starts the authority and attestation loops. Await
 * {@link Member.firstCredential} before serving.
 */
export async function startMember(options: MemberOptions): Promise<Member> {
  const stored = options.credentialFile === undefined ? null : await readStoredCredential(
    options.credentialFile,
    options.trust,
    options.identity,
  );
  let runtime: MemberRuntime | null = null;
  const local = await createChannelIdentity(options.identity, {
    credentials: () => {
      const credential = runtime?.credential ?? null;
      return credential === null ? [] : [credential.encoded];
    },
    ttlSeconds: options.attestationTtlSeconds,
  });
  runtime = new MemberRuntime(options, local, stored);
  return runtime;
}
