/**
 * What a secure channel attaches to each message it delivers on its node
 * (`RoutedMessage.local.secureChannel`): the peer's verified identifier
 * and credential. Workers decide on it (portal sessions, outlets, the
 * authority's API); it never crosses the wire.
 *
 * @module
 */
import type { Credential } from "../credential/credential.ts";
import type { VerifiedIdentity } from "../identity/change_history.ts";

/** What a worker learns about the secure channel a message came through. */
export interface SecureChannelInfo {
  /** The channel's local address (the decryptor). */
  readonly address: string;
  /** The peer's verified identifier. */
  readonly peer: string;
  /** The peer's verified change history, as it presented it (its current key is `primaryKey`). */
  readonly identity: VerifiedIdentity;
  /** The peer's current verified credential (the newest refresh), or null. */
  readonly credential: () => Credential | null;
  /** Settles when the channel closes: work tied to it (portal sessions) ends then. */
  readonly closed: Promise<unknown>;
}
