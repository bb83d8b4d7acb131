/**
 * The one place a process picks the AES-GCM of its channel records, and
 * the handshake's primitives with it, from its configuration's `cipher`
 * block (docs/architecture.md §5.11).
 *
 * @module
 */
import { type AesGcm, CipherBackendError, openSslAesGcm } from "../crypto/aes_gcm.ts";
import type { Logger } from "../log.ts";
import { setRecordCipher } from "./transport_cipher.ts";
import { setNoiseBackend } from "./noise/openssl.ts";

/** What the configuration asks for. */
export interface CipherChoice {
  /** `auto`: OpenSSL when allowed, else WebCrypto; `openssl`: OpenSSL or no start; `webcrypto`. */
  readonly backend: "auto" | "openssl" | "webcrypto";
  /** OpenSSL's libcrypto: the file the permission set's `ffi` names. */
  readonly library: string;
}

/**
 * Picks the backend `choice` asks for, makes it the process's
 * ({@link setRecordCipher}) and logs which one it is, and why when `auto`
 * fell back. Returns the backend's name (`openssl` or `webcrypto`).
 * @throws {CipherBackendError} for `openssl` when the library cannot be used.
 *
 * @example
 * ```ts
 * import { chooseRecordCipher } from "./cipher_choice.ts";
 * import { silentLogger } from "../log.ts";
 * chooseRecordCipher({ backend: "webcrypto", library: "" }, silentLogger); // "webcrypto"
 * ```
 */
export function chooseRecordCipher(choice: CipherChoice, logger: Logger): string {
  let aead: AesGcm | null = null;
  let why: string | undefined;
  if (choice.backend !== "webcrypto") {
    try {
      aead = openSslAesGcm(choice.library);
    } catch (error) {
      if (choice.backend === "openssl" || !(error instanceof CipherBackendError)) throw error;
      why = error.message;
    }
  }
  setRecordCipher(aead);
  // The handshake's primitives (X25519, SHA-256, HKDF) from the same
  // library, or the portable ones where the records use WebCrypto.
  setNoiseBackend(aead === null ? "portable" : "openssl", choice.library);
  const name = aead?.name ?? "webcrypto";
  logger.info("record cipher", { backend: name, ...(why === undefined ? {} : { fallback: why }) });
  return name;
}
