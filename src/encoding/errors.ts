/**
 * Errors for malformed input, following the house rule: built-in TypeError
 * for wrong encoding or shape, RangeError for sizes and numbers out of range.
 * Both carry a `code` so callers and tests can tell the cases apart.
 *
 * @module
 */

/** Why bytes were refused before or while decoding them. */
export type MalformedCode =
  | "not_well_formed"
  | "truncated"
  | "trailing_bytes"
  | "indefinite_length"
  | "non_minimal"
  | "unsupported_type"
  | "invalid_utf8"
  | "duplicate_key"
  | "non_canonical_order"
  | "too_deep"
  | "wrong_shape"
  | "unknown_version";

/** The input is not the encoding or the shape it must be. */
export class MalformedError extends TypeError {
  /** Machine-readable reason. */
  readonly code: MalformedCode;
  /** An error with `code`; `options.cause` as for Error. */
  constructor(code: MalformedCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = "MalformedError";
  }
}

/** Why a size or number was refused. */
export type LimitCode = "too_large" | "integer_out_of_range";

/** The input, or a value in it, exceeds a hard limit. */
export class LimitError extends RangeError {
  /** Machine-readable reason. */
  readonly code: LimitCode;
  /** An error with `code`; `options.cause` as for Error. */
  constructor(code: LimitCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = "LimitError";
  }
}
