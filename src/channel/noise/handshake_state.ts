/**
 * HandshakeState (Noise specification rev. 34, §5.3) for the XX pattern
 * (§7.5), and nothing else:
 *
 * ```
 * XX:
 *   -> e
 *   <- e, ee, s, es
 *   -> s, se
 * ```
 *
 * Sans-IO: the caller moves messages between peers; this class only turns
 * payloads into handshake messages and back. Static and ephemeral keys and
 * the prologue can be injected, so published test vectors drive it.
 *
 * @module
 */
import { HandshakeError } from "../../errors.ts";
import { dh, type DhKeyPair, generateDhKeyPair } from "./x25519.ts";
import { type SplitKeys, SymmetricState } from "./symmetric_state.ts";

/** The protocol this state machine implements. */
export const PROTOCOL_NAME = "Noise_XX_25519_AESGCM_SHA256";
/** DHLEN for 25519 (§12.1). */
export const DHLEN = 32;
/** Length of an AESGCM authentication tag. */
export const TAGLEN = 16;
/** Largest Noise message (§3). */
export const MAX_MESSAGE = 65535;

/** Options for {@link XXHandshake}. */
export interface XXHandshakeOptions {
  /** True for the side that writes the first message. */
  initiator: boolean;
  /** Bytes both sides must agree on; mixed into the handshake hash first. */
  prologue: Uint8Array;
  /** The local static key pair `s`. */
  staticKeyPair: DhKeyPair;
  /** The local ephemeral key pair `e`; generated when absent (test vectors inject one). */
  ephemeralKeyPair?: DhKeyPair;
}

/**
 * The XX handshake. Call {@link writeMessage} and {@link readMessage}
 * alternately, initiator first; after the third message {@link complete}
 * is true and {@link split} gives the transport keys.
 *
 * @example
 * ```ts
 * import { XXHandshake } from "./handshake_state.ts";
 * import { generateDhKeyPair } from "./x25519.ts";
 *
 * const prologue = new TextEncoder().encode("example.v1");
 * const initiator = new XXHandshake({
 *   initiator: true,
 *   prologue,
 *   staticKeyPair: generateDhKeyPair(),
 * });
 * const responder = new XXHandshake({
 *   initiator: false,
 *   prologue,
 *   staticKeyPair: generateDhKeyPair(),
 * });
 *
 * // -> e
 * await responder.readMessage(await initiator.writeMessage(new Uint8Array(0)));
 * // <- e, ee, s, es
 * const hello = new TextEncoder().encode("responder payload");
 * const received = await initiator.readMessage(await responder.writeMessage(hello));
 * console.log(new TextDecoder().decode(received)); // "responder payload"
 * // -> s, se
 * await responder.readMessage(await initiator.writeMessage(new Uint8Array(0)));
 *
 * const a = initiator.split();
 * const b = responder.split();
 * console.log(initiator.complete && responder.complete); // true
 * // Both sides derive the same keys: a.initiatorToResponder equals b.initiatorToResponder.
 * console.log(a.handshakeHash.every((byte, i) => byte === b.handshakeHash[i])); // true
 * ```
 */
export class XXHandshake {
  /** True for the side that writes the first message. */
  readonly initiator: boolean;
  #symmetric = new SymmetricState(PROTOCOL_NAME);
  #s: DhKeyPair;
  #e: DhKeyPair | null;
  /** True when `#e` was generated here, so this handshake frees it when it ends. */
  #ownsE = false;
  #rs: Uint8Array | null = null;
  #re: Uint8Array | null = null;
  /** Messages processed so far: 0, 1, 2 or 3. */
  #step = 0;
  #failed = false;

  /** A handshake before its first message; the prologue is mixed in at once. */
  constructor(options: XXHandshakeOptions) {
    this.initiator = options.initiator;
    this.#s = options.staticKeyPair;
    this.#e = options.ephemeralKeyPair ?? null;
    // Initialize(): no pre-messages in XX, so only the prologue is mixed.
    this.#symmetric.mixHash(options.prologue);
  }

  /** True after the third message. */
  get complete(): boolean {
    return this.#step === 3;
  }

  /** The peer's static public key, once received (message 2 or 3). */
  get remoteStaticKey(): Uint8Array | null {
    return this.#rs?.slice() ?? null;
  }

  /** h: the handshake hash so far. */
  get handshakeHash(): Uint8Array {
    return this.#symmetric.handshakeHash();
  }

  /** True when the next call must be {@link writeMessage}. */
  get mustWrite(): boolean {
    return (this.#step % 2 === 0) === this.initiator;
  }

  #begin(writing: boolean): void {
    if (this.#failed) throw new HandshakeError("out_of_order", "the handshake has failed");
    if (this.#step === 3) throw new HandshakeError("out_of_order", "the handshake is complete");
    if (writing !== this.mustWrite) {
      throw new HandshakeError(
        "out_of_order",
        writing ? "expected to read a message" : "expected to write a message",
      );
    }
  }

  /**
   * WriteMessage(payload, message_buffer): the next handshake message
   * carrying `payload`.
   */
  writeMessage(payload: Uint8Array): Promise<Uint8Array> {
    try {
      return Promise.resolve(this.#write(payload));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * ReadMessage(message, payload_buffer): the payload of the peer's next
   * handshake message.
   * @throws {HandshakeError} `malformed_message` (too short or too long),
   *   `decrypt_failed`, `bad_dh`; after any failure the state is dead.
   */
  readMessage(message: Uint8Array): Promise<Uint8Array> {
    try {
      return Promise.resolve(this.#read(message));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  // The work is synchronous (OpenSSL or node:crypto); the promise-returning surface
  // leaves room for an asynchronous DH (an HSM-held static key).
  #write(payload: Uint8Array): Uint8Array {
    this.#begin(true);
    try {
      const parts: Uint8Array[] = [];
      const sym = this.#symmetric;
      if (this.#step === 0) {
        // -> e
        parts.push(this.#writeE());
      } else if (this.#step === 1) {
        // <- e, ee, s, es (responder)
        parts.push(this.#writeE());
        this.#mixDh(this.#e!, this.#re!); // ee
        parts.push(sym.encryptAndHash(this.#s.publicKey)); // s
        this.#mixDh(this.#s, this.#re!); // es: DH(s, re) on the responder
      } else {
        // -> s, se (initiator)
        parts.push(sym.encryptAndHash(this.#s.publicKey)); // s
        this.#mixDh(this.#s, this.#re!); // se: DH(s, re) on the initiator
      }
      parts.push(sym.encryptAndHash(payload));
      this.#step++;
      const message = concat(parts);
      if (message.length > MAX_MESSAGE) {
        throw new HandshakeError("malformed_message", "handshake message over 65535 bytes");
      }
      if (this.#step === 3) this.#forgetEphemeral();
      return message;
    } catch (error) {
      this.#failed = true;
      this.#forgetEphemeral();
      throw error;
    }
  }

  #read(message: Uint8Array): Uint8Array {
    this.#begin(false);
    try {
      if (message.length > MAX_MESSAGE) {
        throw new HandshakeError("malformed_message", "handshake message over 65535 bytes");
      }
      const sym = this.#symmetric;
      let at = 0;
      const take = (n: number): Uint8Array => {
        if (message.length - at < n) {
          throw new HandshakeError(
            "malformed_message",
            `handshake message ${this.#step + 1} is too short`,
          );
        }
        const part = message.subarray(at, at + n);
        at += n;
        return part;
      };
      if (this.#step === 0) {
        // -> e (responder reads)
        this.#readE(take(DHLEN));
      } else if (this.#step === 1) {
        // <- e, ee, s, es (initiator reads)
        this.#readE(take(DHLEN));
        this.#mixDh(this.#e!, this.#re!); // ee
        this.#rs = sym.decryptAndHash(take(DHLEN + TAGLEN)); // s
        this.#mixDh(this.#e!, this.#rs); // es: DH(e, rs) on the initiator
      } else {
        // -> s, se (responder reads)
        this.#rs = sym.decryptAndHash(take(DHLEN + TAGLEN)); // s
        this.#mixDh(this.#e!, this.#rs); // se: DH(e, rs) on the responder
      }
      const rest = message.subarray(at);
      if (sym.hasKey() && rest.length < TAGLEN) {
        throw new HandshakeError(
          "malformed_message",
          `handshake message ${this.#step + 1} is too short`,
        );
      }
      const payload = sym.decryptAndHash(rest);
      this.#step++;
      if (this.#step === 3) this.#forgetEphemeral();
      return payload;
    } catch (error) {
      this.#failed = true;
      this.#forgetEphemeral();
      throw error;
    }
  }

  /** Split() after the last message: the transport keys and the handshake hash. */
  split(): SplitKeys {
    if (this.#step !== 3) throw new HandshakeError("out_of_order", "the handshake is not complete");
    return this.#symmetric.split();
  }

  /** MixKey(DH(pair, publicKey)); the shared secret is wiped once mixed. */
  #mixDh(pair: DhKeyPair, publicKey: Uint8Array): void {
    const secret = dh(pair, publicKey);
    this.#symmetric.mixKey(secret);
    secret.fill(0);
  }

  /** Frees the ephemeral key this handshake generated: after message 3 or a failure. */
  #forgetEphemeral(): void {
    if (this.#ownsE && this.#e !== null) this.#e.privateKey.dispose();
    this.#ownsE = false;
  }

  #writeE(): Uint8Array {
    if (this.#e === null) {
      this.#e = generateDhKeyPair();
      this.#ownsE = true;
    }
    this.#symmetric.mixHash(this.#e.publicKey);
    return this.#e.publicKey;
  }

  #readE(re: Uint8Array): void {
    this.#re = re.slice();
    this.#symmetric.mixHash(this.#re);
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
