/**
 * The conformance suite every {@link Signer} must pass: the in-process
 * `SoftwareSigner` and the PKCS#11 signer run the same cases.
 *
 * ```ts ignore
 * import { signerConformance } from "../src/identity/signer_conformance.ts";
 * signerConformance("Pkcs11Signer", () => openTestSigner());
 * ```
 *
 * Each case calls `makeSigner` once, so a case never depends on the state
 * another one left behind.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519.js";
import { issueCredential, verifyCredential } from "../credential/credential.ts";
import { TrustStore } from "../credential/trust_store.ts";
import { verifyEd25519 } from "../crypto/ed25519.ts";
import { DOMAIN, signedMessage } from "../encoding/domain.ts";
import { toHex } from "../encoding/hex.ts";
import { flipBit, NOW } from "../testdata/test_helpers.ts";
import { createAttestation, verifyAttestation } from "./attestation.ts";
import { verifyChangeHistory } from "./change_history.ts";
import { Identity } from "./identity.ts";
import type { Signer } from "./signer.ts";
import { SoftwareSigner } from "./software_signer.ts";

const encoder = new TextEncoder();

/** True when both verifiers accept, false when both refuse; fails the test if they disagree. */
async function verifies(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  const noble = ed25519.verify(signature, message, publicKey);
  const strict = ed25519.verify(signature, message, publicKey, { zip215: false });
  const native = await verifyEd25519(publicKey, message, signature);
  assert.equal(noble, native, "@noble and WebCrypto disagree");
  assert.equal(strict, native, "strict RFC 8032 and WebCrypto disagree");
  return native;
}

/** Registers the cases any {@link Signer} implementation must pass. */
export function signerConformance(name: string, makeSigner: () => Promise<Signer>): void {
  function test(what: string, fn: (signer: Signer) => Promise<void>): void {
    Deno.test(`${name}: ${what}`, async () => await fn(await makeSigner()));
  }

  test("the public key is 32 bytes, a valid point, and stable", async (signer) => {
    assert.ok(signer.publicKey instanceof Uint8Array);
    assert.equal(signer.publicKey.length, 32);
    assert.ok(ed25519.utils.isValidPublicKey(signer.publicKey, false), "not a curve point");
    assert.equal(toHex(signer.publicKey), toHex(signer.publicKey));
    const before = toHex(signer.publicKey);
    await signer.sign(encoder.encode("anything"));
    assert.equal(toHex(signer.publicKey), before);
    assert.equal(typeof signer.description, "string");
    assert.ok(signer.description.length > 0, "description is empty");
  });

  test("signatures are 64 bytes and verify with @noble and WebCrypto", async (signer) => {
    const message = encoder.encode("nexus signer conformance");
    const signature = await signer.sign(message);
    assert.ok(signature instanceof Uint8Array);
    assert.equal(signature.length, 64);
    assert.ok(ed25519.verify(signature, message, signer.publicKey), "@noble refuses it");
    assert.ok(await verifyEd25519(signer.publicKey, message, signature), "WebCrypto refuses it");
    assert.ok(await verifies(signer.publicKey, message, signature));
  });

  test("signatures are deterministic (RFC 8032)", async (signer) => {
    const message = encoder.encode("the same message");
    const first = toHex(await signer.sign(message));
    assert.equal(toHex(await signer.sign(message)), first);
    assert.equal(toHex(await signer.sign(message.slice())), first);
    const other = toHex(await signer.sign(encoder.encode("another message")));
    assert.notEqual(other, first);
    // The nonce depends on the message: R (the first half) differs too.
    assert.notEqual(other.slice(0, 64), first.slice(0, 64));
  });

  test("the empty message (signed, or refused with a RangeError) and a 64 KiB message", async (signer) => {
    // Every message the protocol signs starts with its domain label, so a
    // signer may refuse the empty message (PKCS#11 tokens do); it must not
    // sign it wrongly, nor fail in any other way.
    const empty = new Uint8Array(0);
    let emptySignature: Uint8Array | null = null;
    try {
      emptySignature = await signer.sign(empty);
    } catch (error) {
      assert.ok(error instanceof RangeError, `empty message: ${error}`);
    }
    if (emptySignature !== null) {
      assert.equal(emptySignature.length, 64);
      assert.ok(await verifies(signer.publicKey, empty, emptySignature));
    }
    const large = new Uint8Array(64 * 1024);
    for (let i = 0; i < large.length; i++) large[i] = (i * 31 + 7) & 0xff;
    const largeSignature = await signer.sign(large);
    assert.equal(largeSignature.length, 64);
    assert.ok(await verifies(signer.publicKey, large, largeSignature));
    const changed = large.slice();
    changed[large.length - 1] ^= 1;
    assert.equal(await verifies(signer.publicKey, changed, largeSignature), false);
  });

  test("a signature does not verify another message, key or signature", async (signer) => {
    const message = encoder.encode("pay 10 to alice");
    const signature = await signer.sign(message);
    assert.equal(
      await verifies(signer.publicKey, encoder.encode("pay 10 to mallory"), signature),
      false,
    );
    assert.equal(await verifies(signer.publicKey, message.subarray(1), signature), false);
    for (const bit of [0, 7, 100, 255, 256, 300, 511]) {
      const flipped = flipBit(signature, bit);
      assert.equal(await verifies(signer.publicKey, message, flipped), false, `bit ${bit}`);
    }
    const stranger = await SoftwareSigner.generate();
    assert.equal(await verifies(stranger.publicKey, message, signature), false);
  });

  test("sign leaves its input alone and returns a fresh array", async (signer) => {
    const message = encoder.encode("do not touch");
    const copy = message.slice();
    const first = await signer.sign(message);
    assert.deepEqual(message, copy);
    const expected = toHex(first);
    first.fill(0);
    assert.equal(toHex(await signer.sign(message)), expected);
  });

  test("concurrent signatures all verify", async (signer) => {
    const messages = Array.from({ length: 16 }, (_, i) => encoder.encode(`message ${i}`));
    const signatures = await Promise.all(messages.map((m) => signer.sign(m)));
    for (let i = 0; i < messages.length; i++) {
      assert.ok(await verifies(signer.publicKey, messages[i], signatures[i]), `message ${i}`);
      assert.equal(toHex(signatures[i]), toHex(await signer.sign(messages[i])));
    }
  });

  test("can create an identity, attest a key and issue a credential", async (signer) => {
    const authority = await Identity.create(signer, { now: NOW });
    const verified = await verifyChangeHistory(authority.history.encoded);
    assert.equal(verified.identifier, authority.identifier);
    assert.equal(toHex(verified.primaryKey), toHex(signer.publicKey));

    const key = new Uint8Array(32).fill(0x04);
    const attestation = await createAttestation(authority, key, { now: NOW });
    await verifyAttestation(attestation.encoded, verified, { now: NOW, expectedKey: key });

    const member = await Identity.create(await SoftwareSigner.generate(), { now: NOW });
    const credential = await issueCredential(authority, {
      subject: member.identifier,
      subjectKey: member.primaryKey,
      attributes: { role: "edge", capabilities: ["search"], rate_limit_rpm: 2000 },
      now: NOW,
    });
    const accepted = await verifyCredential(credential.encoded, {
      trust: new TrustStore([verified]),
      subject: member.identifier,
      subjectKey: member.primaryKey,
      now: NOW + 1,
    });
    assert.equal(accepted.issuer, authority.identifier);
    assert.equal(accepted.attributes.role, "edge");
    const message = signedMessage(DOMAIN.credential, credential.data);
    assert.ok(await verifies(signer.publicKey, message, credential.signature));
  });

  test("can take part in key rotations, as old and as new key", async (signer) => {
    // Rotating to this signer: it signs the change as the new key.
    const software = await SoftwareSigner.generate();
    const before = await Identity.create(software, { now: NOW });
    const to = await before.rotate(signer, { now: NOW + 1 });
    const verifiedTo = await verifyChangeHistory(to.history.encoded);
    assert.equal(verifiedTo.identifier, before.identifier);
    assert.equal(toHex(verifiedTo.primaryKey), toHex(signer.publicKey));
    // Rotating away from it: it signs the change as the previous key.
    const from = await to.rotate(await SoftwareSigner.generate(), { now: NOW + 2 });
    const verifiedFrom = await verifyChangeHistory(from.history.encoded);
    assert.equal(verifiedFrom.history.changes.length, 3);
    assert.equal(verifiedFrom.identifier, before.identifier);
  });
}
