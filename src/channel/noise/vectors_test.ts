/**
 * Published test vectors for Noise_XX_25519_AESGCM_SHA256 (cacophony
 * format), from `../shared/vectors/noise/noise_xx_cacophony.json` or the
 * file named by the environment variable NOISE_VECTORS. Entries for other
 * protocols are skipped.
 *
 * For each entry: the three handshake messages must be byte-identical to the
 * vector and carry its payloads, the handshake hash must match when given,
 * and the transport messages after it (responder to initiator first, then
 * alternating) must encrypt and decrypt to the vector's bytes with the keys
 * of Split() and nonces 0, 1, 2, ...
 *
 * Every entry runs on both sets of primitives (./openssl.ts): OpenSSL's
 * libcrypto, when this process may load it, and the portable ones.
 */
import assert from "node:assert/strict";
import { fromHex, toHex } from "../../encoding/hex.ts";
import { CipherState } from "./cipher_state.ts";
import { PROTOCOL_NAME, XXHandshake } from "./handshake_state.ts";
import { setNoiseBackend } from "./openssl.ts";
import { dhKeyPairFromPrivate, generateDhKeyPair } from "./x25519.ts";

interface Vector {
  protocol_name: string;
  init_prologue: string;
  init_static: string;
  init_ephemeral: string;
  resp_prologue: string;
  resp_static: string;
  resp_ephemeral: string;
  handshake_hash?: string;
  messages: { payload: string; ciphertext: string }[];
}

const defaultPath = new URL(
  "../../../../shared/vectors/noise/noise_xx_cacophony.json",
  import.meta.url,
);
const path = Deno.env.get("NOISE_VECTORS") ?? defaultPath;
const file = JSON.parse(await Deno.readTextFile(path)) as { vectors: Vector[] } | Vector[];
const all = Array.isArray(file) ? file : file.vectors;
const vectors = all.filter((v) => v.protocol_name === PROTOCOL_NAME);

Deno.test("noise vectors: the file holds entries for this protocol", () => {
  assert.ok(vectors.length > 0, `no ${PROTOCOL_NAME} entries in ${path}`);
});

const backends = (["openssl", "portable"] as const).filter((backend) => {
  try {
    return setNoiseBackend(backend) === backend;
  } catch {
    return false;
  } finally {
    setNoiseBackend("auto");
  }
});

Deno.test("noise vectors: OpenSSL's primitives are among those tested (ffi granted)", () => {
  assert.deepEqual(backends, ["openssl", "portable"]);
});

for (const backend of backends) {
  for (const [index, vector] of vectors.entries()) {
    Deno.test(`noise vectors: ${PROTOCOL_NAME} entry ${index} (${backend})`, async () => {
      setNoiseBackend(backend);
      try {
        await runVector(vector);
      } finally {
        setNoiseBackend("auto");
      }
    });
  }
}

async function runVector(vector: Vector): Promise<void> {
  const initiator = new XXHandshake({
    initiator: true,
    prologue: fromHex(vector.init_prologue),
    staticKeyPair: await dhKeyPairFromPrivate(fromHex(vector.init_static)),
    ephemeralKeyPair: await dhKeyPairFromPrivate(fromHex(vector.init_ephemeral)),
  });
  const responder = new XXHandshake({
    initiator: false,
    prologue: fromHex(vector.resp_prologue),
    staticKeyPair: await dhKeyPairFromPrivate(fromHex(vector.resp_static)),
    ephemeralKeyPair: await dhKeyPairFromPrivate(fromHex(vector.resp_ephemeral)),
  });

  // Handshake: messages 0 and 2 from the initiator, 1 from the responder.
  for (let i = 0; i < 3; i++) {
    const { payload, ciphertext } = vector.messages[i];
    const [writer, reader] = i % 2 === 0 ? [initiator, responder] : [responder, initiator];
    const message = await writer.writeMessage(fromHex(payload));
    assert.equal(toHex(message), ciphertext, `handshake message ${i}`);
    assert.equal(toHex(await reader.readMessage(message)), payload, `payload ${i}`);
  }
  assert.ok(initiator.complete && responder.complete);
  if (vector.handshake_hash !== undefined) {
    assert.equal(toHex(initiator.handshakeHash), vector.handshake_hash);
    assert.equal(toHex(responder.handshakeHash), vector.handshake_hash);
  }

  const i = initiator.split();
  const r = responder.split();
  assert.deepEqual(i, r);
  const ciphers = (key: Uint8Array) => {
    const cipher = new CipherState();
    cipher.initializeKey(key);
    return cipher;
  };
  const initiatorSend = ciphers(i.initiatorToResponder);
  const responderReceive = ciphers(r.initiatorToResponder);
  const responderSend = ciphers(r.responderToInitiator);
  const initiatorReceive = ciphers(i.responderToInitiator);
  const empty = new Uint8Array(0);
  for (let m = 3; m < vector.messages.length; m++) {
    const { payload, ciphertext } = vector.messages[m];
    const fromResponder = (m - 3) % 2 === 0;
    const [send, receive] = fromResponder
      ? [responderSend, initiatorReceive]
      : [initiatorSend, responderReceive];
    const sealed = send.encryptWithAd(empty, fromHex(payload));
    assert.equal(toHex(sealed), ciphertext, `transport message ${m}`);
    assert.equal(toHex(receive.decryptWithAd(empty, sealed)), payload);
  }
}

Deno.test("noise: Split() gives the transport keys once; a second call is refused", async () => {
  const prologue = new Uint8Array(0);
  const initiator = new XXHandshake({
    initiator: true,
    prologue,
    staticKeyPair: generateDhKeyPair(),
  });
  const responder = new XXHandshake({
    initiator: false,
    prologue,
    staticKeyPair: generateDhKeyPair(),
  });
  await responder.readMessage(await initiator.writeMessage(new Uint8Array(0)));
  await initiator.readMessage(await responder.writeMessage(new Uint8Array(0)));
  await responder.readMessage(await initiator.writeMessage(new Uint8Array(0)));
  const first = initiator.split();
  assert.equal(first.initiatorToResponder.length, 32);
  // The chaining key is wiped after Split(): a second call would derive
  // keys from zeros, the same for every handshake.
  assert.throws(() => initiator.split(), /Split\(\) was called already/);
});
