/**
 * The relay's side of admission (src/relay_client/admission.ts, version
 * 2): read the member's hello, answer with the relay's own proof (its
 * identity, its credential and a signature over both nonces), then check
 * the member's proof, cheap checks first (src/relay_client/proof.ts), and
 * give the verdict. Nothing of a connection is forwarded before.
 *
 * What an unadmitted peer can make the relay do is bounded: one frame
 * each way of at most {@link MAX_ADMISSION_BYTES} (the transport's limit
 * before admission), one signature of the relay's, at most one
 * credential check and one signature check of a peer that is no member
 * (the history's own signatures come after, once per distinct history),
 * within `timeoutMs`; and the relay counts how many admissions each
 * source has in progress (relay.ts).
 *
 * @module
 */
import type { Credential } from "../src/credential/credential.ts";
import type { RevocationRegistry } from "../src/credential/revocation.ts";
import type { TrustStore } from "../src/credential/trust_store.ts";
import type { VerifiedIdentity } from "../src/identity/change_history.ts";
import type { Identity } from "../src/identity/identity.ts";
import {
  admissionMessage,
  decodeAdmit,
  decodeHello,
  encodeChallenge,
  encodeVerdict,
  MAX_ADMISSION_BYTES,
} from "../src/relay_client/admission.ts";
import { type ProofRefusal, verifyProof } from "../src/relay_client/proof.ts";
import type { FramedConnection } from "../src/transport/connection.ts";

export { MAX_ADMISSION_BYTES };

/** Why an admission was refused: the proof's codes, and the relay's own. */
export type AdmissionRefusal =
  | ProofRefusal
  | "timeout"
  | "too_many_connections"
  | "too_many_pending"
  | "relay_not_ready";

/** What the relay admitted. */
export interface Admitted {
  readonly identity: VerifiedIdentity;
  /** The credential it was admitted with: it decides the connection's alias rights. */
  readonly credential: Credential;
  /** This connection's relay nonce: what the member's refreshes are bound to. */
  readonly relayNonce: Uint8Array;
}

/** What {@link admit} needs of the relay. */
export interface AdmissionContext {
  /** The relay's own identity. */
  readonly identity: Identity;
  /** The relay's current credential (null before it has one: it admits no one then). */
  readonly credential: () => Credential | null;
  readonly trust: TrustStore;
  readonly revocations: RevocationRegistry;
  /** Time allowed for the whole exchange, ms. */
  readonly timeoutMs: number;
}

/**
 * Runs admission on `conn`. Resolves with what was admitted, or with the
 * refusal's code (the member has been told; the caller counts, logs and
 * closes).
 */
export async function admit(
  conn: FramedConnection,
  context: AdmissionContext,
): Promise<Admitted | AdmissionRefusal> {
  const frames = conn.frames();
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    conn.close("admission timeout");
  }, context.timeoutMs);
  /** The next frame, copied (frames are views of the read buffer), or null when the connection ended. */
  const next = async (): Promise<Uint8Array | null> => {
    const result = await frames.next();
    return result.done ? null : result.value.slice();
  };
  const refuse = async (code: AdmissionRefusal): Promise<AdmissionRefusal> => {
    await conn.send(encodeVerdict({ admitted: false, code })).catch(() => {});
    return code;
  };
  try {
    const hello = await next();
    if (hello === null) return expired ? "timeout" : "malformed";
    let memberNonce: Uint8Array;
    try {
      memberNonce = decodeHello(hello);
    } catch {
      return await refuse("malformed");
    }
    const mine = context.credential();
    if (mine === null) return await refuse("relay_not_ready");
    const relayNonce = crypto.getRandomValues(new Uint8Array(32));
    await conn.send(
      await encodeChallenge(context.identity, mine.encoded, memberNonce, relayNonce),
    );
    const answer = await next();
    if (answer === null) return expired ? "timeout" : "malformed";
    let proof;
    try {
      proof = decodeAdmit(answer);
    } catch {
      return await refuse("malformed");
    }
    const verdict = await verifyProof(
      proof,
      admissionMessage(context.identity.identifier, relayNonce, memberNonce),
      { trust: context.trust, revocations: context.revocations },
    );
    if (!verdict.ok) return await refuse(verdict.code);
    if (expired) return "timeout";
    return { identity: verdict.identity, credential: verdict.credential, relayNonce };
  } finally {
    clearTimeout(timer);
    await frames.return?.(undefined);
  }
}

/** Tells an admitted member so. */
export function sendAdmitted(conn: FramedConnection, identifier: string): Promise<void> {
  return conn.send(encodeVerdict({ admitted: true, identifier }));
}

/** Refuses a member the relay will not take after all (a limit), telling it why. */
export async function sendRefused(conn: FramedConnection, code: AdmissionRefusal): Promise<void> {
  await conn.send(encodeVerdict({ admitted: false, code })).catch(() => {});
}
