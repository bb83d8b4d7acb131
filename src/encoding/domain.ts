/**
 * Domain separation for every signature (docs/design.md §2).
 *
 * A signature covers `label || 0x00 || data`, where `label` names the
 * structure and its version. Labels are ASCII without NUL, so the NUL makes
 * the label prefix-free: no (label, data) pair can produce the bytes of
 * another label's message, and a signature made for one kind of structure is
 * never accepted as another.
 *
 * @module
 */

/** The labels in use. Changing one is a protocol version change. */
export const DOMAIN = {
  change: "nexus.identity.change.v1",
  attestation: "nexus.identity.purpose_key.v1",
  credential: "nexus.credential.v1",
  revocation: "nexus.revocation_list.v1",
  /** The relay's proof, over the member's nonce and its own (relay admission, v2). */
  relayChallenge: "nexus.relay.challenge.v2",
  /** The member's admission, bound to the relay's identifier and both nonces. */
  admission: "nexus.relay.admission.v2",
  /** A fresher credential on an admitted connection, bound the same way. */
  relayRefresh: "nexus.relay.refresh.v2",
} as const;

/** One of {@link DOMAIN}'s labels. */
export type DomainLabel = typeof DOMAIN[keyof typeof DOMAIN];

const encoder = new TextEncoder();
const prefixes = new Map<string, Uint8Array>(
  Object.values(DOMAIN).map((label) => [label, encoder.encode(label + "\0")]),
);

/** The exact bytes a signature over `data` in domain `label` covers. */
export function signedMessage(label: DomainLabel, data: Uint8Array): Uint8Array {
  const prefix = prefixes.get(label)!;
  const out = new Uint8Array(prefix.length + data.length);
  out.set(prefix, 0);
  out.set(data, prefix.length);
  return out;
}
