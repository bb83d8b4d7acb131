/**
 * The handshake's primitives by OpenSSL's libcrypto through Deno's FFI:
 * X25519, SHA-256, HMAC-SHA256, HKDF and AES-256-GCM for small messages. The
 * same library as the record cipher (src/crypto/aes_gcm.ts); the process
 * needs `--allow-ffi` for it (the gateway's, edge's and agent's permission
 * sets name it). Without that permission, or when the library cannot be
 * loaded or fails its known answers, the handshake runs on the portable
 * primitives (node:crypto and @noble/hashes) and computes the same bytes.
 *
 * Measured here (Deno 2.9, OpenSSL 3.0, one core): an X25519 derivation
 * takes 44 µs with the private key's context kept (node:crypto: 113 µs,
 * most of it outside the curve arithmetic), a key pair 56 µs, an
 * HMAC-SHA256 of 32 bytes 1.4 µs (@noble/hashes: 12 µs), a MixKey's HKDF
 * 4 µs (three HMACs: 12 µs), sealing a handshake field 2 µs (node:crypto:
 * 11 µs). Every call is synchronous.
 *
 * Private keys stay in native memory (an `EVP_PKEY`, freed, and so
 * cleansed by OpenSSL, on dispose or when the key is collected). AES keys
 * are the handshake's transient `temp_k`; the two shared cipher contexts
 * are rekeyed with zeros after each message, and the HKDF context's salt
 * and key (the chaining key, a DH output) are overwritten with zeros after
 * each derivation, so nothing of a finished handshake stays in them.
 *
 * @module
 */
import { CipherBackendError } from "../../errors.ts";

import { DEFAULT_LIBCRYPTO } from "../../crypto/aes_gcm.ts";
import { loadLibcrypto } from "../../crypto/libcrypto.ts";

export { DEFAULT_LIBCRYPTO };

/** EVP_PKEY_X25519 (NID_X25519). */
const EVP_PKEY_X25519 = 1034;
/** EVP_PKEY_HKDF (NID_hkdf). */
const EVP_PKEY_HKDF = 1036;
const EVP_CTRL_GCM_GET_TAG = 0x10;
const EVP_CTRL_GCM_SET_TAG = 0x11;

// An EVP_PKEY is passed as an integer ("usize", the same register as a
// pointer): EVP_PKEY_new_raw_private_key returns it as one, and turning it
// into a pointer object would need unrestricted --allow-ffi.
const SYMBOLS = {
  EVP_PKEY_CTX_new_id: { parameters: ["i32", "pointer"], result: "pointer" },
  EVP_PKEY_CTX_new: { parameters: ["usize", "pointer"], result: "pointer" },
  EVP_PKEY_CTX_free: { parameters: ["pointer"], result: "void" },
  // (type, engine, key, keylen)
  EVP_PKEY_new_raw_private_key: {
    parameters: ["i32", "pointer", "buffer", "usize"],
    result: "usize",
  },
  EVP_PKEY_new_raw_public_key: {
    parameters: ["i32", "pointer", "buffer", "usize"],
    result: "usize",
  },
  // (pkey, out, size_t *len)
  EVP_PKEY_get_raw_public_key: { parameters: ["usize", "buffer", "buffer"], result: "i32" },
  EVP_PKEY_free: { parameters: ["usize"], result: "void" },
  EVP_PKEY_derive_init: { parameters: ["pointer"], result: "i32" },
  // (ctx, peer, validate_peer): OpenSSL's check of an X25519 peer key only
  // asks that it have a public key; the derivation refuses low-order points.
  EVP_PKEY_derive_set_peer_ex: { parameters: ["pointer", "usize", "i32"], result: "i32" },
  // (ctx, out, size_t *len)
  EVP_PKEY_derive: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  // (libctx, name, properties)
  EVP_MD_fetch: { parameters: ["pointer", "buffer", "pointer"], result: "pointer" },
  // (data, count, md, unsigned int *size, type, engine)
  EVP_Digest: {
    parameters: ["buffer", "usize", "buffer", "buffer", "pointer", "pointer"],
    result: "i32",
  },
  EVP_PKEY_CTX_set_hkdf_md: { parameters: ["pointer", "pointer"], result: "i32" },
  EVP_PKEY_CTX_set1_hkdf_salt: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  EVP_PKEY_CTX_set1_hkdf_key: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  EVP_CIPHER_CTX_new: { parameters: [], result: "pointer" },
  EVP_aes_256_gcm: { parameters: [], result: "pointer" },
  // (ctx, cipher, engine, key, iv, enc): enc 1 seals, 0 opens, -1 keeps.
  EVP_CipherInit_ex: {
    parameters: ["pointer", "pointer", "pointer", "buffer", "buffer", "i32"],
    result: "i32",
  },
  // (ctx, out, outl, in, inl): out null for additional data.
  EVP_CipherUpdate: { parameters: ["pointer", "buffer", "buffer", "buffer", "i32"], result: "i32" },
  EVP_CipherFinal_ex: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  EVP_CIPHER_CTX_ctrl: { parameters: ["pointer", "i32", "i32", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

type Library = Deno.DynamicLibrary<typeof SYMBOLS>;

/** An X25519 private key inside native code (OpenSSL here; node:crypto in ./x25519.ts). */
export interface DhPrivateKey {
  /** Which implementation holds the key. */
  readonly backend: "openssl" | "node";
  /**
   * X25519(this key, peer): the shared secret, or null when the
   * implementation refuses the peer's key (a low-order point, whose
   * shared secret is all zeros).
   * @throws {Error} when the key was disposed.
   */
  derive(peer: Uint8Array): Uint8Array | null;
  /** Frees the key now (it is freed when collected otherwise); unusable after. */
  dispose(): void;
}

/** The primitives of one loaded library. */
export interface NoiseNative {
  /** The library's path. */
  readonly library: string;
  /** A fresh X25519 key pair. */
  generate(): { publicKey: Uint8Array; privateKey: DhPrivateKey };
  /** The key pair of 32 private bytes (not kept: the caller wipes them). */
  fromPrivate(privateKey: Uint8Array): { publicKey: Uint8Array; privateKey: DhPrivateKey };
  /** SHA-256(a || b). */
  sha256(a: Uint8Array, b: Uint8Array): Uint8Array;
  /** HMAC-SHA256(key, data), key at most 64 bytes. */
  hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array;
  /**
   * RFC 5869 HKDF-SHA256 with `salt`, a non-empty `ikm`, no info, `length`
   * bytes: Noise's HKDF(salt, ikm, length / 32) (§4.3) in one call.
   */
  hkdf(salt: Uint8Array, ikm: Uint8Array, length: number): Uint8Array;
  /** AES-256-GCM: `ciphertext || tag` of `plaintext` under `key`, `iv` and `ad`. */
  seal(key: Uint8Array, iv: Uint8Array, ad: Uint8Array, plaintext: Uint8Array): Uint8Array;
  /** AES-256-GCM: the plaintext, or null when the tag does not authenticate. */
  open(key: Uint8Array, iv: Uint8Array, ad: Uint8Array, sealed: Uint8Array): Uint8Array | null;
}

const ZERO_KEY = new Uint8Array(32);

/** OpenSSL takes these lengths as a C int: refused beyond, before any native call. */
function checkLengths(ad: Uint8Array, data: Uint8Array): void {
  if (ad.length > 0x7fff_ffff || data.length > 0x7fff_ffff) {
    throw new RangeError("AES-GCM input over 2 GiB");
  }
}
const NONE = new Uint8Array(0);

/** State of one native private key: what the finalizer frees. */
interface Held {
  /** The EVP_PKEY's address; 0 once freed. */
  pkey: bigint;
  /** The derivation context, made on first use and kept with the key. */
  ctx: Deno.PointerObject | null;
}

function bind(library: string, lib: Library): NoiseNative {
  const s = lib.symbols;
  const free = (held: Held) => {
    if (held.ctx !== null) s.EVP_PKEY_CTX_free(held.ctx);
    if (held.pkey !== 0n) s.EVP_PKEY_free(held.pkey);
    held.ctx = null;
    held.pkey = 0n;
  };
  const keys = new FinalizationRegistry<Held>(free);
  const size = new BigUint64Array(1);

  const sha256 = s.EVP_MD_fetch(null, new TextEncoder().encode("SHA256\0"), null);
  if (sha256 === null) throw new Error("no SHA-256");
  const gcm = s.EVP_aes_256_gcm();
  const sealer = s.EVP_CIPHER_CTX_new();
  const opener = s.EVP_CIPHER_CTX_new();
  if (
    sealer === null || opener === null ||
    s.EVP_CipherInit_ex(sealer, gcm, null, ZERO_KEY, null, 1) !== 1 ||
    s.EVP_CipherInit_ex(opener, gcm, null, ZERO_KEY, null, 0) !== 1
  ) {
    throw new Error("EVP_CipherInit_ex failed");
  }
  const outl = new Int32Array(1);
  const kdf = s.EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, null);
  if (
    kdf === null || s.EVP_PKEY_derive_init(kdf) !== 1 ||
    s.EVP_PKEY_CTX_set_hkdf_md(kdf, sha256) !== 1
  ) {
    throw new Error("no HKDF");
  }

  // The last peer key imported: a responder derives with the initiator's
  // `re` twice (ee with its ephemeral key, es with its static one).
  const lastPeer = new Uint8Array(32);
  let lastPeerKey = 0n;
  const peerKeyOf = (peer: Uint8Array): bigint => {
    if (lastPeerKey !== 0n && peer.every((byte, i) => byte === lastPeer[i])) return lastPeerKey;
    if (lastPeerKey !== 0n) s.EVP_PKEY_free(lastPeerKey);
    lastPeerKey = s.EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, null, peer, 32n);
    if (lastPeerKey !== 0n) lastPeer.set(peer);
    return lastPeerKey;
  };

  const derive = (held: Held, peer: Uint8Array): Uint8Array | null => {
    if (held.pkey === 0n) throw new Error("the key was disposed");
    if (peer.length !== 32) return null;
    if (held.ctx === null) {
      const ctx = s.EVP_PKEY_CTX_new(held.pkey, null);
      if (ctx === null) throw new Error("EVP_PKEY_CTX_new failed");
      if (s.EVP_PKEY_derive_init(ctx) !== 1) {
        s.EVP_PKEY_CTX_free(ctx);
        throw new Error("EVP_PKEY_derive_init failed");
      }
      held.ctx = ctx;
    }
    const peerKey = peerKeyOf(peer);
    if (peerKey === 0n) return null;
    // The context keeps its own reference to the peer until the next one.
    if (s.EVP_PKEY_derive_set_peer_ex(held.ctx, peerKey, 0) !== 1) return null;
    const secret = new Uint8Array(32);
    size[0] = 32n;
    // OpenSSL refuses (0) a low-order point, whose shared secret is all zeros.
    if (s.EVP_PKEY_derive(held.ctx, secret, size) !== 1 || size[0] !== 32n) return null;
    return secret;
  };

  const wrap = (pkey: bigint) => {
    const held: Held = { pkey, ctx: null };
    const publicKey = new Uint8Array(32);
    size[0] = 32n;
    if (s.EVP_PKEY_get_raw_public_key(pkey, publicKey, size) !== 1 || size[0] !== 32n) {
      free(held);
      throw new Error("EVP_PKEY_get_raw_public_key failed");
    }
    const privateKey: DhPrivateKey = {
      backend: "openssl",
      derive: (peer) => derive(held, peer),
      dispose() {
        keys.unregister(privateKey);
        free(held);
      },
    };
    keys.register(privateKey, held, privateKey);
    return { publicKey, privateKey };
  };

  // Digests are one EVP_Digest call over a scratch buffer the parts are
  // copied into (a handshake hashes at most a message, under 64 KiB): one
  // FFI call instead of four. Wiped after each HMAC (it holds key pads).
  let scratch = new Uint8Array(4096);
  const digest = (length: number): Uint8Array => {
    const result = new Uint8Array(32);
    if (s.EVP_Digest(scratch, BigInt(length), result, null, sha256, null) !== 1) {
      throw new Error("EVP_Digest failed");
    }
    return result;
  };
  const room = (length: number) => {
    if (scratch.length < length) scratch = new Uint8Array(Math.max(length, scratch.length * 2));
  };

  return {
    library,
    generate() {
      // 32 bytes from the CSPRNG taken as the private key (X25519 clamps
      // it, RFC 7748 §5), as EVP_PKEY_keygen does with OpenSSL's own DRBG:
      // a quarter cheaper here, since keygen goes through the provider's
      // key generation context (about 59 µs against 44 µs on this machine).
      const raw = crypto.getRandomValues(new Uint8Array(32));
      try {
        const pkey = s.EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, null, raw, 32n);
        if (pkey === 0n) throw new Error("EVP_PKEY_new_raw_private_key failed");
        return wrap(pkey);
      } finally {
        raw.fill(0);
      }
    },
    fromPrivate(privateKey) {
      if (privateKey.length !== 32) throw new RangeError("an X25519 private key is 32 bytes");
      const pkey = s.EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, null, privateKey, 32n);
      if (pkey === 0n) throw new Error("EVP_PKEY_new_raw_private_key failed");
      return wrap(pkey);
    },
    sha256(a, b) {
      room(a.length + b.length);
      scratch.set(a, 0);
      scratch.set(b, a.length);
      return digest(a.length + b.length);
    },
    hmacSha256(key, data) {
      // RFC 2104: H((K ^ opad) || H((K ^ ipad) || data)), K zero-padded to the block.
      if (key.length > 64) throw new RangeError("HMAC keys here are at most 64 bytes");
      room(64 + Math.max(data.length, 32));
      scratch.fill(0x36, 0, 64);
      for (let i = 0; i < key.length; i++) scratch[i] ^= key[i];
      scratch.set(data, 64);
      const inner = digest(64 + data.length);
      scratch.fill(0x5c, 0, 64);
      for (let i = 0; i < key.length; i++) scratch[i] ^= key[i];
      scratch.set(inner, 64);
      const mac = digest(64 + 32);
      scratch.fill(0, 0, 64 + Math.max(data.length, 32));
      return mac;
    },
    hkdf(salt, ikm, length) {
      if (ikm.length === 0 || salt.length !== 32) throw new RangeError("HKDF: a salt and an ikm");
      const okm = new Uint8Array(length);
      size[0] = BigInt(length);
      try {
        if (
          s.EVP_PKEY_CTX_set1_hkdf_salt(kdf, salt, salt.length) !== 1 ||
          s.EVP_PKEY_CTX_set1_hkdf_key(kdf, ikm, ikm.length) !== 1 ||
          s.EVP_PKEY_derive(kdf, okm, size) !== 1 || size[0] !== BigInt(length)
        ) {
          throw new Error("HKDF failed");
        }
        return okm;
      } finally {
        // The chaining key and the DH output do not stay in the context.
        s.EVP_PKEY_CTX_set1_hkdf_salt(kdf, ZERO_KEY, 32);
        s.EVP_PKEY_CTX_set1_hkdf_key(kdf, ZERO_KEY, 32);
      }
    },
    seal(key, iv, ad, plaintext) {
      if (key.length !== 32 || iv.length !== 12) throw new RangeError("AES-256-GCM key or IV");
      checkLengths(ad, plaintext);
      const sealed = new Uint8Array(plaintext.length + 16);
      const tag = sealed.subarray(plaintext.length);
      try {
        if (
          s.EVP_CipherInit_ex(sealer, null, null, key, iv, -1) !== 1 ||
          (ad.length > 0 && s.EVP_CipherUpdate(sealer, null, outl, ad, ad.length) !== 1) ||
          (plaintext.length > 0 &&
            s.EVP_CipherUpdate(sealer, sealed, outl, plaintext, plaintext.length) !== 1) ||
          s.EVP_CipherFinal_ex(sealer, tag, outl) !== 1 ||
          s.EVP_CIPHER_CTX_ctrl(sealer, EVP_CTRL_GCM_GET_TAG, 16, tag) !== 1
        ) {
          throw new Error("OpenSSL failed to seal");
        }
        return sealed;
      } finally {
        s.EVP_CipherInit_ex(sealer, null, null, ZERO_KEY, null, -1);
      }
    },
    open(key, iv, ad, sealed) {
      if (key.length !== 32 || iv.length !== 12) throw new RangeError("AES-256-GCM key or IV");
      checkLengths(ad, sealed);
      if (sealed.length < 16) return null;
      const n = sealed.length - 16;
      const plaintext = new Uint8Array(n);
      try {
        // OpenSSL compares the expected tag, read from our memory, in constant time at Final.
        const ok = s.EVP_CipherInit_ex(opener, null, null, key, iv, -1) === 1 &&
          s.EVP_CIPHER_CTX_ctrl(opener, EVP_CTRL_GCM_SET_TAG, 16, sealed.subarray(n)) === 1 &&
          (ad.length === 0 || s.EVP_CipherUpdate(opener, null, outl, ad, ad.length) === 1) &&
          (n === 0 ||
            s.EVP_CipherUpdate(opener, plaintext, outl, sealed.subarray(0, n), n) === 1) &&
          s.EVP_CipherFinal_ex(opener, NONE, outl) === 1;
        if (!ok) {
          plaintext.fill(0);
          return null;
        }
        return plaintext;
      } finally {
        s.EVP_CipherInit_ex(opener, null, null, ZERO_KEY, null, -1);
      }
    },
  };
}

// ---------------------------------------------------------------------------
// Known answers, checked once when the library is loaded.

function hex(text: string): Uint8Array {
  return Uint8Array.from(text.match(/../g)!.map((byte) => parseInt(byte, 16)));
}

function same(a: Uint8Array | null, b: Uint8Array): boolean {
  return a !== null && a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function selfTest(native: NoiseNative): void {
  // RFC 7748 §6.1.
  const alice = native.fromPrivate(
    hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"),
  );
  const bobPublic = hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  try {
    if (
      !same(
        alice.publicKey,
        hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"),
      )
    ) {
      throw new Error("X25519 public key");
    }
    const shared = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    if (!same(alice.privateKey.derive(bobPublic), shared)) throw new Error("X25519");
    if (alice.privateKey.derive(new Uint8Array(32)) !== null) {
      throw new Error("X25519 accepted a low-order point");
    }
  } finally {
    alice.privateKey.dispose();
  }
  const abc = new TextEncoder().encode("abc");
  const abcHash = hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  if (!same(native.sha256(abc.subarray(0, 1), abc.subarray(1)), abcHash)) {
    throw new Error("SHA-256");
  }
  // RFC 4231, test case 2.
  const mac = native.hmacSha256(
    new TextEncoder().encode("Jefe"),
    new TextEncoder().encode("what do ya want for nothing?"),
  );
  if (!same(mac, hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"))) {
    throw new Error("HMAC-SHA256");
  }
  // HKDF against its definition over the HMAC above (RFC 5869, empty info).
  const salt = abcHash;
  const ikm = mac;
  const prk = native.hmacSha256(salt, ikm);
  const t1 = native.hmacSha256(prk, Uint8Array.of(1));
  const t2 = native.hmacSha256(prk, Uint8Array.of(...t1, 2));
  if (!same(native.hkdf(salt, ikm, 64), Uint8Array.of(...t1, ...t2))) throw new Error("HKDF");
  // McGrew and Viega's GCM test case 14: zero key and nonce, 16 zero bytes.
  const iv = new Uint8Array(12);
  const sealed = native.seal(ZERO_KEY, iv, NONE, new Uint8Array(16));
  if (!same(sealed, hex("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"))) {
    throw new Error("AES-256-GCM");
  }
  if (!same(native.open(ZERO_KEY, iv, NONE, sealed), new Uint8Array(16))) {
    throw new Error("AES-256-GCM refused its own message");
  }
  sealed[31] ^= 1;
  if (native.open(ZERO_KEY, iv, NONE, sealed) !== null) {
    throw new Error("AES-256-GCM accepted a forged tag");
  }
}

// ---------------------------------------------------------------------------
// Which primitives the handshake uses.

const loaded = new Map<string, NoiseNative>();

/**
 * The primitives of OpenSSL's libcrypto at `library`, loaded once per
 * path and checked against known answers.
 * @throws {CipherBackendError} when the process may not load it, it
 *   cannot be loaded, or it fails a known answer.
 */
export function loadNoiseNative(library: string = DEFAULT_LIBCRYPTO): NoiseNative {
  const known = loaded.get(library);
  if (known !== undefined) return known;
  const native = loadLibcrypto(
    library,
    SYMBOLS,
    (lib) => bind(library, lib),
    selfTest,
    "handshake known answers",
  );
  loaded.set(library, native);
  return native;
}

/** `undefined` until the first handshake primitive asks. */
let current: NoiseNative | null | undefined;

/**
 * The primitives the handshake uses now: OpenSSL's, when this process may
 * load the default library (chosen once, at the first use, unless
 * {@link setNoiseBackend} chose), else null: the portable ones.
 */
export function noiseNative(): NoiseNative | null {
  if (current === undefined) {
    try {
      current = loadNoiseNative(DEFAULT_LIBCRYPTO);
    } catch {
      current = null;
    }
  }
  return current;
}

/**
 * Chooses the handshake's primitives: `auto` (OpenSSL at `library` when it
 * can be used, else portable), `openssl` (or an error), `portable`
 * (node:crypto and @noble/hashes). Keys made before keep working: each
 * key is used by the implementation that made it. Returns the name of
 * the one chosen.
 * @throws {CipherBackendError} for `openssl` when the library cannot be used.
 *
 * @example
 * ```ts
 * import { setNoiseBackend } from "./openssl.ts";
 * setNoiseBackend("portable"); // "portable"
 * setNoiseBackend("auto"); // "openssl" where the process may load libcrypto
 * ```
 */
export function setNoiseBackend(
  backend: "auto" | "openssl" | "portable",
  library: string = DEFAULT_LIBCRYPTO,
): "openssl" | "portable" {
  if (backend === "portable") {
    current = null;
  } else {
    try {
      current = loadNoiseNative(library);
    } catch (error) {
      if (backend === "openssl" || !(error instanceof CipherBackendError)) throw error;
      current = null;
    }
  }
  return current === null ? "portable" : "openssl";
}
