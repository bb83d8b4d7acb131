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
import type { Address, RoutedMessage } from "../routing/routed_message.ts";
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
    subjectKey: identity.primaryKey,
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

/** What a {@link hostileLink} hook may do with one frame (a routed message) in flight. */
export interface LinkFrame {
  /** The message as the link received it. */
  readonly message: RoutedMessage;
  /** Which way: from a to b, or from b to a. */
  readonly direction: "toB" | "toA";
  /** Delivers `message` (or another) now on this direction; resolves when the far node is done. */
  deliver(message?: RoutedMessage): Promise<void>;
}

/**
 * Like {@link link}, but every message goes through `hook`, which decides
 * what happens to it: deliver it (now or later, once or twice, changed or
 * not) or drop it. A hostile relay, in memory. Payloads are copied first,
 * so a hook may keep a message as long as it likes.
 */
export function hostileLink(
  a: Node,
  b: Node,
  hook: (frame: LinkFrame) => void | Promise<void>,
): { toB: Address; toA: Address } {
  const toB = `link.${b.name}`;
  const toA = `link.${a.name}`;
  const side = (from: Address, to: Node, direction: "toB" | "toA") => (m: RoutedMessage) => {
    const message: RoutedMessage = {
      onward: m.onward.slice(1),
      return: [from, ...m.return],
      payload: m.payload.slice(),
    };
    return Promise.resolve(hook({
      message,
      direction,
      deliver: (other = message) =>
        to.route({ onward: other.onward, return: other.return, payload: other.payload })
          .then(() => {}),
    }));
  };
  a.register(toB, side(toA, b, "toB"));
  b.register(toA, side(toB, a, "toA"));
  return { toB, toA };
}

/** The record counter of a channel record payload (0x04 + 8-byte counter …), or null. */
export function recordCounter(payload: Uint8Array): number | null {
  if (payload.length < 9 || payload[0] !== 0x04) return null;
  const view = new DataView(payload.buffer, payload.byteOffset + 1, 8);
  return view.getUint32(0) * 2 ** 32 + view.getUint32(4);
}
