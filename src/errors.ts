/**
 * Domain errors. Malformed input (wrong shape, bad encoding, size limits) is
 * reported with the built-in TypeError / RangeError subclasses in
 * `encoding/`; a well-formed input that fails a security check is reported
 * with one of these, each carrying a machine-readable `code`.
 *
 * Messages never contain key material: they name the structure and the
 * check, and at most an identifier or a credential id (both public).
 *
 * @module
 */

/** Base class of the project's domain errors. */
export class NexusError<C extends string = string> extends Error {
  /** Machine-readable reason, stable across releases. */
  readonly code: C;
  /** An error with `code`, named after its class (`HsmError`, ...); `options.cause` as for Error. */
  constructor(code: C, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Why an identity (change history, attestation, key file) was refused. */
export type IdentityErrorCode =
  | "bad_signature"
  | "missing_previous_signature"
  | "unexpected_previous_signature"
  | "broken_chain"
  | "bad_first_change"
  | "time_went_backwards"
  | "too_many_changes"
  | "identifier_mismatch"
  | "history_conflict"
  | "subject_mismatch"
  | "key_mismatch"
  | "wrong_purpose"
  | "expired"
  | "not_yet_valid"
  | "key_file_permissions"
  | "key_file_exists";

/** An identity, its history or one of its attestations failed verification. */
export class IdentityError extends NexusError<IdentityErrorCode> {}

/** Why a credential or revocation list was refused. */
export type CredentialErrorCode =
  | "untrusted_issuer"
  | "bad_signature"
  | "subject_mismatch"
  | "key_mismatch"
  | "expired"
  | "not_yet_valid"
  | "revoked"
  | "revocation_rollback"
  | "revocation_conflict"
  | "bad_attributes";

/** A credential or revocation list failed verification. */
export class CredentialError extends NexusError<CredentialErrorCode> {}

/** Why a Noise handshake or a secure channel failed. */
export type HandshakeErrorCode =
  | "malformed_message"
  | "decrypt_failed"
  | "out_of_order"
  | "bad_dh"
  | "nonce_exhausted"
  | "bad_payload"
  | "identity_rejected"
  | "attestation_mismatch"
  | "credential_rejected"
  | "missing_credential"
  | "missing_attribute"
  | "not_pinned"
  | "timeout"
  | "refused"
  | "closed";

/** A handshake or channel failed; the channel is not usable. */
export class HandshakeError extends NexusError<HandshakeErrorCode> {}

/** Why the transport refused an operation or failed to open a connection. */
export type TransportErrorCode =
  | "closed"
  | "reader_busy"
  | "decoder_not_drained"
  | "connect_failed"
  | "tls_failed"
  | "handshake_timeout"
  | "aborted";

/**
 * A framed connection could not be opened, or an operation on one was
 * refused (sending on a closed connection, a second concurrent reader).
 * Malformed bytes from a peer are a `FrameError` (a RangeError) instead.
 */
export class TransportError extends NexusError<TransportErrorCode> {}

/** Why the HSM (PKCS#11) refused or failed. */
export type HsmErrorCode =
  | "module_missing"
  | "token_missing"
  | "wrong_pin"
  | "pin_locked"
  | "pin_missing"
  | "pin_file_mode"
  | "key_missing"
  | "key_exists"
  | "mechanism_unsupported"
  | "hsm_failure";

/** The HSM could not be used; the authority does not start (fail closed). */
export class HsmError extends NexusError<HsmErrorCode> {}

/** Why the authority refused a request or an operator command. */
export type AuthorityErrorCode =
  | "ticket_unknown"
  | "ticket_used"
  | "ticket_expired"
  | "license_unknown"
  | "license_revoked"
  | "not_member"
  | "member_revoked"
  | "stale_identity"
  | "already_member"
  | "unknown_target"
  | "bad_request"
  | "state_exists"
  | "state_missing"
  | "store_corrupt"
  | "store_permissions"
  | "store_unavailable"
  | "store_version";

/** The authority refused a request or a command. */
export class AuthorityError extends NexusError<AuthorityErrorCode> {}

/** Why a relay refused a connection or an alias. */
export type RelayErrorCode =
  | "admission_refused"
  | "untrusted_relay"
  | "alias_refused"
  | "protocol"
  | "timeout"
  | "alias_absent";

/** A relay refused this end, or did not speak the protocol. */
export class RelayError extends NexusError<RelayErrorCode> {}

/** Why OpenSSL could not serve as the record cipher: not allowed, not there, or not OpenSSL 3. */
export type CipherBackendErrorCode = "no_permission" | "not_found" | "unusable";

/** The record cipher a configuration asks for cannot be used (src/crypto/aes_gcm.ts). */
export class CipherBackendError extends NexusError<CipherBackendErrorCode> {}

/** Why a policy's text was refused. */
export type PolicyErrorCode = "syntax" | "too_long" | "too_deep";

/**
 * A policy's text could not be parsed. `position` is the 0-based offset
 * (in UTF-16 code units, as JavaScript indexes strings) of the offending
 * character or token in the text, and the message shows the text with a
 * caret under it.
 */
export class PolicyError extends NexusError<PolicyErrorCode> {
  /** 0-based offset in the policy's text where the problem is. */
  readonly position: number;
  /** A parse error at `position` of the policy's text. */
  constructor(code: PolicyErrorCode, message: string, position: number, options?: ErrorOptions) {
    super(code, message, options);
    this.position = position;
  }
}

/** Why a configuration or a command line was refused. */
export type ConfigErrorCode = "unreadable" | "invalid" | "usage";

/**
 * A configuration file or a command line could not be used. Like other
 * malformed input it is a `TypeError` (module doc above), with a `code`.
 * The message names the file (when there is one), the field and what was
 * expected; it never quotes the value of a secret field (tickets, license
 * keys, PINs).
 */
export class ConfigError extends TypeError {
  /** Machine-readable reason. */
  readonly code: ConfigErrorCode;
  /** The configuration file, when the problem is in one. */
  readonly file: string | undefined;
  /** The field's path (`inlets[2].listen`), when one field is at fault. */
  readonly field: string | undefined;
  /** An error with `code`; `details` names the file and the field, when known. */
  constructor(
    code: ConfigErrorCode,
    message: string,
    details: { file?: string; field?: string } = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "ConfigError";
    this.code = code;
    this.file = details.file;
    this.field = details.field;
  }
}
