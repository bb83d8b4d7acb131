/**
 * Fixtures for secure channel tests: an authority, members with
 * credentials, channel identities, and an in-memory link between two nodes
 * that behaves like a transport (it pops its own address and prefixes the
 * return route with the other side's).
 */
import { issueCredential } from "../credential/credential.ts";
import { TrustStore } from "../credential/trust_store.ts";
import { Identity } from "../identity/identity.ts";
import { SoftwareSigner } from "../identity/software_signer.ts";
import { Node } from "../routing/node.ts";
import type { Address } from "../routing/routed_message.ts";
import { type ChannelIdentity, createChannelIdentity } from "../channel/channel_identity.ts";

/** An authority and a trust store that trusts it. */
export async function authority(): Promise<{ identity: Identity; trust: TrustStore }> {
  const identity = await Identity.create(await SoftwareSigner.generate());
  return { identity, trust: new TrustStore([identity]) };
}

/** A member identity holding one credential from `issuer` with `attributes`. */
export async function member(
  issuer: Identity,
  attributes: Record<string, unknown>,
  options: { ttlSeconds?: number; now?: number } = {},
): Promise<ChannelIdentity> {
  const identity = await Identity.create(await SoftwareSigner.generate());
  const credential = await issueCredential(issuer, {
    subject: identity.identifier,
    attributes,
    ttlSeconds: options.ttlSeconds,
    now: options.now,
  });
  return await createChannelIdentity(identity, { credentials: () => [credential.encoded] });
}

/**
 * Joins two nodes: returns the address on `a` that leads to `b` and the
 * one on `b` that leads to `a`.
 */
export function link(a: Node, b: Node): { toB: Address; toA: Address } {
  const toB = `link.${b.name}`;
  const toA = `link.${a.name}`;
  a.register(
    toB,
    (m) =>
      b.route({ onward: m.onward.slice(1), return: [toA, ...m.return], payload: m.payload }).then(
        () => {},
      ),
  );
  b.register(
    toA,
    (m) =>
      a.route({ onward: m.onward.slice(1), return: [toB, ...m.return], payload: m.payload }).then(
        () => {},
      ),
  );
  return { toB, toA };
}

/** Resolves once `condition()` holds; fails after `timeoutMs`. */
export async function eventually(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
