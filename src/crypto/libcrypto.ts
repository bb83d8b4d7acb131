/**
 * Loading OpenSSL's libcrypto through FFI, in one place: the record
 * cipher (`aes_gcm.ts`) and the handshake's primitives
 * (`src/channel/noise/openssl.ts`) each bind their own symbols, and both
 * go through the same permission check, `dlopen` and known-answer test.
 *
 * @module
 */
import { CipherBackendError } from "../errors.ts";

/**
 * Binds `symbols` of the library at `path`, builds the caller's wrapper
 * with `bind` and runs `selfTest` on it; the library is closed again when
 * either throws.
 * @throws {CipherBackendError} `no_permission` without `--allow-ffi` for
 *   `path`, `not_found` when it cannot be loaded, `unusable` when the
 *   wrapper fails its known answers (`what` says which).
 *
 * @example
 * ```ts ignore
 * const sha = loadLibcrypto("/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
 *   { EVP_sha256: { parameters: [], result: "pointer" } },
 *   (lib) => lib.symbols, () => {}, "SHA-256");
 * ```
 */
export function loadLibcrypto<S extends Deno.ForeignLibraryInterface, T>(
  path: string,
  symbols: S,
  bind: (lib: Deno.DynamicLibrary<S>) => T,
  selfTest: (bound: T) => void,
  what: string,
): T {
  if (Deno.permissions.querySync({ name: "ffi", path }).state !== "granted") {
    throw new CipherBackendError(
      "no_permission",
      `OpenSSL: no --allow-ffi for ${path} (the permission set must name it)`,
    );
  }
  let lib: Deno.DynamicLibrary<S>;
  try {
    lib = Deno.dlopen(path, symbols);
  } catch (cause) {
    throw new CipherBackendError(
      "not_found",
      `OpenSSL: cannot load ${path}: ${(cause as Error).message}`,
      { cause },
    );
  }
  try {
    const bound = bind(lib);
    selfTest(bound);
    return bound;
  } catch (cause) {
    lib.close();
    throw new CipherBackendError("unusable", `OpenSSL at ${path} failed its ${what}`, { cause });
  }
}
