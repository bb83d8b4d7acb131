/**
 * A license's public id: the lowercase hex SHA-256 of the license key's
 * UTF-8, exactly as the authority names the license in its store, its
 * audit log (`license.create`, `enroll`) and `revoke`
 * (authority/store/_util.ts, `hashId`; docs/protocol.md §18.6).
 *
 * Why it may go where the key may not (an HTTP inlet's header, a backend's
 * request log): the key is an enrollment secret (anyone holding it enrolls
 * edges as that customer), the id is not. A license key is 192 random bits,
 * so the key cannot be found from its id by search, and the authority
 * accepts only the key for enrollment.
 *
 * @module
 */
import { sha256 } from "../crypto/hash.ts";
import { toHex } from "../encoding/hex.ts";

const encoder = new TextEncoder();

/**
 * The public id of the license whose key is `key`: 64 lowercase hex digits.
 *
 * @example
 * ```ts
 * import { licenseId } from "./license_id.ts";
 * licenseId("nxl_" + "a".repeat(32)).length; // 64
 * ```
 */
export function licenseId(key: string): string {
  return toHex(sha256(encoder.encode(key)));
}
