/**
 * Ed25519 keys in an HSM through PKCS#11 (graphene-pk11 over the pkcs11js
 * addon), behind the same {@link Signer} interface as the software signer.
 * This is the only module that loads native code; only the authority's
 * permission set holds `--allow-ffi`.
 *
 * Keys are generated on the token (CKM_EC_EDWARDS_KEY_PAIR_GEN, 0x1055)
 * as token objects, sensitive and not extractable, and sign with CKM_EDDSA
 * (0x1057): the private key never leaves the HSM. graphene has no names
 * for these mechanisms, so they are passed by number (PKCS#11 v3.0 §2.3.6).
 *
 * A login failure is reported at once and never retried: a retry loop
 * would lock the token after its PIN attempt limit.
 *
 * @module
 */
import * as graphene from "graphene-pk11";
import { HsmError } from "../src/errors.ts";
import type { Signer } from "../src/identity/signer.ts";

/** CKM_EC_EDWARDS_KEY_PAIR_GEN */
export const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
/** CKM_EDDSA */
export const CKM_EDDSA = 0x1057;
/** CKK_EC_EDWARDS */
export const CKK_EC_EDWARDS = 0x40;
/** DER of the Ed25519 OID 1.3.101.112 (RFC 8410), as CKA_EC_PARAMS. */
const ED25519_PARAMS = Uint8Array.of(0x06, 0x03, 0x2b, 0x65, 0x70);

/** Where the token is. */
export interface HsmOptions {
  /** Path of the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so. */
  modulePath: string;
  /** The token's label. */
  tokenLabel: string;
  /** The user PIN (read by `readPin`, never from a command-line argument). */
  pin: string;
}

/** How to find a key: by label, by id (hex), or both. */
export interface KeySelector {
  /** The key's CKA_LABEL, e.g. `nexus-authority-1`. */
  label?: string;
  /** The key's CKA_ID in hex, e.g. `01`. */
  id?: string;
}

function pkcs11Code(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.match(/CKR_[A-Z_]+/)?.[0] ?? "";
}

function hexToBuffer(hex: string): Buffer {
  if (!/^([0-9a-fA-F]{2})+$/.test(hex)) throw new TypeError("a key id is hex bytes");
  return Buffer.from(hex, "hex");
}

/** The 32-byte public key from CKA_EC_POINT: a DER OCTET STRING, or raw on some tokens. */
function publicKeyFromPoint(point: Uint8Array): Uint8Array {
  if (point.length === 32) return point.slice();
  if (point.length === 34 && point[0] === 0x04 && point[1] === 0x20) return point.slice(2);
  throw new HsmError("hsm_failure", "the token returned an Ed25519 public key of unknown form");
}

/**
 * An Ed25519 key held in the HSM. Made by {@link HsmSession.findKey} or
 * {@link HsmSession.generateKey}; usable while its session is open.
 */
export class Pkcs11Signer implements Signer {
  /** The 32-byte Ed25519 public key, read from the public key object's CKA_EC_POINT. */
  readonly publicKey: Uint8Array;
  /** `pkcs11:token=…;object=…;id=…`: where the key lives, for operators. */
  readonly description: string;
  /** The key's CKA_LABEL. */
  readonly label: string;
  /** The key's CKA_ID, in hex. */
  readonly id: string;
  #session: graphene.Session;
  #key: graphene.PrivateKey;

  /** @internal */
  constructor(
    session: graphene.Session,
    key: graphene.PrivateKey,
    publicKey: Uint8Array,
    token: string,
  ) {
    this.#session = session;
    this.#key = key;
    this.publicKey = publicKey;
    this.label = key.label;
    this.id = Buffer.from(key.id).toString("hex");
    this.description = `pkcs11:token=${token};object=${this.label};id=${this.id}`;
  }

  /**
   * A 64-byte Ed25519 signature of `message`, made on the token with
   * CKM_EDDSA (pure Ed25519). Rejects with a RangeError for an empty
   * message (tokens refuse C_Sign over zero bytes) and with an
   * {@link HsmError} `hsm_failure` when the token fails.
   */
  sign(message: Uint8Array): Promise<Uint8Array> {
    // Tokens refuse C_Sign over zero bytes (SoftHSM: CKR_ARGUMENTS_BAD) and
    // may leave the operation active; the protocol never signs an empty
    // message (each starts with its domain label), so refuse it here.
    if (message.length === 0) {
      return Promise.reject(new RangeError("an HSM signer does not sign an empty message"));
    }
    try {
      const signature = this.#session
        .createSign(CKM_EDDSA as unknown as graphene.MechanismType, this.#key)
        .once(Buffer.from(message.buffer, message.byteOffset, message.byteLength));
      return Promise.resolve(new Uint8Array(signature));
    } catch (cause) {
      return Promise.reject(
        new HsmError("hsm_failure", `HSM signing failed (${pkcs11Code(cause) || "error"})`, {
          cause,
        }),
      );
    }
  }

  /** CKA_EXTRACTABLE of the private key (false for keys this module makes). */
  get extractable(): boolean {
    return this.#key.getAttribute({ extractable: null }).extractable === true;
  }

  /** CKA_SENSITIVE of the private key. */
  get sensitive(): boolean {
    return this.#key.getAttribute({ sensitive: null }).sensitive === true;
  }

  /**
   * Asks the token for the private key's value (CKA_VALUE) and reports
   * whether it answered. For operators and tests: a key this module made
   * must say false (the token refuses with CKR_ATTRIBUTE_SENSITIVE).
   */
  valueReadable(): boolean {
    try {
      const value = this.#key.getAttribute({ value: null }).value as Buffer | undefined;
      return value !== undefined && value.length > 0;
    } catch {
      return false;
    }
  }

  /** What `JSON.stringify` shows: the description only. */
  toJSON(): { description: string } {
    return { description: this.description };
  }
}

/** A logged-in session on one token. */
export class HsmSession {
  /** The label of the token this session is logged in to. */
  readonly tokenLabel: string;
  #module: graphene.Module;
  #session: graphene.Session;

  private constructor(module: graphene.Module, session: graphene.Session, tokenLabel: string) {
    this.#module = module;
    this.#session = session;
    this.tokenLabel = tokenLabel;
  }

  /**
   * Loads the module, finds the token by label, opens a read-write session
   * and logs in once.
   *
   * @example
   * ```ts ignore
   * import { HsmSession } from "./pkcs11_signer.ts";
   * import { readPin } from "./pin.ts";
   *
   * const session = HsmSession.open({
   *   modulePath: "/usr/lib/softhsm/libsofthsm2.so",
   *   tokenLabel: "nexus-authority",
   *   pin: await readPin({ file: "/etc/nexus/hsm.pin" }),
   * });
   * try {
   *   const signer = session.findKey({ label: "nexus-authority-1" });
   *   signer.description; // "pkcs11:token=nexus-authority;object=nexus-authority-1;id=01"
   *   const signature = await signer.sign(message); // 64 bytes; the key never leaves the HSM
   * } finally {
   *   session.close();
   * }
   * ```
   *
   * @throws {HsmError} `module_missing`, `token_missing`, `wrong_pin`,
   *   `pin_locked`, `mechanism_unsupported`, `hsm_failure`.
   */
  static open(options: HsmOptions): HsmSession {
    let module: graphene.Module;
    try {
      Deno.statSync(options.modulePath);
      module = graphene.Module.load(options.modulePath);
      module.initialize();
    } catch (cause) {
      throw new HsmError(
        "module_missing",
        `cannot load the PKCS#11 module ${options.modulePath}`,
        { cause },
      );
    }
    try {
      const slots = module.getSlots(true);
      let slot: graphene.Slot | null = null;
      for (let i = 0; i < slots.length; i++) {
        const candidate = slots.items(i);
        if (candidate.getToken().label.trim() === options.tokenLabel) {
          slot = candidate;
          break;
        }
      }
      if (slot === null) {
        throw new HsmError("token_missing", `no token labelled "${options.tokenLabel}"`);
      }
      const mechanisms = slot.getMechanisms();
      const supported = new Set<number>();
      for (let i = 0; i < mechanisms.length; i++) supported.add(mechanisms.items(i).type);
      if (!supported.has(CKM_EDDSA) || !supported.has(CKM_EC_EDWARDS_KEY_PAIR_GEN)) {
        throw new HsmError(
          "mechanism_unsupported",
          `token "${options.tokenLabel}" does not offer Ed25519 (CKM_EDDSA, CKM_EC_EDWARDS_KEY_PAIR_GEN)`,
        );
      }
      const session = slot.open(
        graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION,
      );
      try {
        session.login(options.pin, graphene.UserType.USER);
      } catch (cause) {
        session.close();
        const code = pkcs11Code(cause);
        if (code === "CKR_PIN_LOCKED") {
          throw new HsmError("pin_locked", `the PIN of token "${options.tokenLabel}" is locked`, {
            cause,
          });
        }
        if (code === "CKR_PIN_INCORRECT" || code === "CKR_PIN_LEN_RANGE") {
          throw new HsmError(
            "wrong_pin",
            `wrong PIN for token "${options.tokenLabel}" (not retried)`,
            {
              cause,
            },
          );
        }
        throw new HsmError(
          "hsm_failure",
          `login to token "${options.tokenLabel}" failed (${code})`,
          {
            cause,
          },
        );
      }
      return new HsmSession(module, session, options.tokenLabel);
    } catch (error) {
      try {
        module.finalize();
      } catch { /* already failing */ }
      if (error instanceof HsmError) throw error;
      throw new HsmError("hsm_failure", `PKCS#11 failure (${pkcs11Code(error) || "error"})`, {
        cause: error,
      });
    }
  }

  #find(selector: KeySelector, objectClass: graphene.ObjectClass): graphene.SessionObject[] {
    const template: graphene.ITemplate = { class: objectClass, keyType: CKK_EC_EDWARDS };
    if (selector.label !== undefined) template.label = selector.label;
    if (selector.id !== undefined) template.id = hexToBuffer(selector.id);
    const found = this.#session.find(template);
    const out: graphene.SessionObject[] = [];
    for (let i = 0; i < found.length; i++) out.push(found.items(i));
    return out;
  }

  /**
   * The Ed25519 key matching `selector` (made by this module or by another
   * tool such as OpenSC's pkcs11-tool).
   * @throws {HsmError} `key_missing`, or `hsm_failure` when several match.
   */
  findKey(selector: KeySelector): Pkcs11Signer {
    if (selector.label === undefined && selector.id === undefined) {
      throw new TypeError("a key is selected by label, id or both");
    }
    const privates = this.#find(selector, graphene.ObjectClass.PRIVATE_KEY);
    const what = `label=${selector.label ?? "*"} id=${selector.id ?? "*"}`;
    if (privates.length === 0) throw new HsmError("key_missing", `no Ed25519 private key ${what}`);
    if (privates.length > 1) {
      throw new HsmError("hsm_failure", `${privates.length} Ed25519 private keys match ${what}`);
    }
    const key = privates[0].toType<graphene.PrivateKey>();
    // The public half is found by the private key's own id (and label).
    const publics = this.#find(
      { id: Buffer.from(key.id).toString("hex"), label: key.label },
      graphene.ObjectClass.PUBLIC_KEY,
    );
    if (publics.length === 0) {
      throw new HsmError("key_missing", `no public key beside the private key ${what}`);
    }
    const point = publics[0].getAttribute({ pointEC: null }).pointEC as Buffer;
    return new Pkcs11Signer(
      this.#session,
      key,
      publicKeyFromPoint(new Uint8Array(point)),
      this.tokenLabel,
    );
  }

  /** True when a key matches `selector`. */
  hasKey(selector: KeySelector): boolean {
    return this.#find(selector, graphene.ObjectClass.PRIVATE_KEY).length > 0;
  }

  /**
   * Generates an Ed25519 key pair on the token: token objects, private key
   * sensitive and not extractable.
   * @throws {HsmError} `key_exists` when a key with this label or id exists.
   */
  generateKey(selector: Required<KeySelector>): Pkcs11Signer {
    if (this.hasKey({ label: selector.label }) || this.hasKey({ id: selector.id })) {
      throw new HsmError(
        "key_exists",
        `an Ed25519 key labelled "${selector.label}" or with id ${selector.id} exists`,
      );
    }
    const id = hexToBuffer(selector.id);
    try {
      this.#session.generateKeyPair(
        CKM_EC_EDWARDS_KEY_PAIR_GEN as unknown as graphene.MechanismType,
        {
          keyType: CKK_EC_EDWARDS,
          token: true,
          verify: true,
          label: selector.label,
          id,
          paramsEC: Buffer.from(ED25519_PARAMS),
        },
        {
          keyType: CKK_EC_EDWARDS,
          token: true,
          private: true,
          sign: true,
          sensitive: true,
          extractable: false,
          label: selector.label,
          id,
        },
      );
    } catch (cause) {
      throw new HsmError("hsm_failure", `key generation failed (${pkcs11Code(cause) || "error"})`, {
        cause,
      });
    }
    return this.findKey(selector);
  }

  /** Logs out and releases the module. */
  close(): void {
    try {
      this.#session.logout();
      this.#session.close();
    } finally {
      this.#module.finalize();
    }
  }
}
