/**
 * SoftwareSigner: the signer conformance suite, plus RFC 8032 vectors.
 */
import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519.js";
import { fromHex, toHex } from "../encoding/hex.ts";
import { seedFromByte, signerFromByte } from "../testdata/test_helpers.ts";
import { signerConformance } from "./signer_conformance.ts";
import { SoftwareSigner } from "./software_signer.ts";

signerConformance("SoftwareSigner.generate", () => SoftwareSigner.generate());
signerConformance("SoftwareSigner.fromSeed", () => signerFromByte(0x01));

/** RFC 8032 §7.1, tests 1 to 3: secret key (seed), public key, message, signature. */
const RFC8032: [string, string, string, string, string][] = [
  [
    "test 1 (empty message)",
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    "",
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
  ],
  [
    "test 2 (one byte)",
    "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
    "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    "72",
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
  ],
  [
    "test 3 (two bytes)",
    "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
    "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
    "af82",
    "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
  ],
];

Deno.test("SoftwareSigner.fromSeed: RFC 8032 test vectors", async () => {
  for (const [what, secret, publicKey, message, signature] of RFC8032) {
    const signer = await SoftwareSigner.fromSeed(fromHex(secret));
    assert.equal(toHex(signer.publicKey), publicKey, what);
    assert.equal(toHex(await signer.sign(fromHex(message))), signature, what);
  }
});

Deno.test("SoftwareSigner.fromSeed: the same signatures as @noble for the seed", async () => {
  const seed = Uint8Array.from({ length: 32 }, (_, i) => i * 7);
  const signer = await SoftwareSigner.fromSeed(seed);
  assert.equal(toHex(signer.publicKey), toHex(ed25519.getPublicKey(seed)));
  for (const length of [0, 1, 32, 1000, 70000]) {
    const message = Uint8Array.from({ length }, (_, i) => i & 0xff);
    assert.equal(
      toHex(await signer.sign(message)),
      toHex(ed25519.sign(message, seed)),
      `${length}`,
    );
  }
});

Deno.test("SoftwareSigner.fromSeed: refuses a seed that is not 32 bytes", async () => {
  for (const length of [0, 16, 31, 33, 64]) {
    await assert.rejects(SoftwareSigner.fromSeed(new Uint8Array(length)), RangeError);
  }
});

Deno.test("SoftwareSigner.fromSeed: keeps no reference to the caller's seed", async () => {
  const seed = seedFromByte(0x2a);
  const signer = await SoftwareSigner.fromSeed(seed);
  const message = new TextEncoder().encode("after wiping");
  const expected = toHex(ed25519.sign(message, seedFromByte(0x2a)));
  seed.fill(0);
  assert.equal(toHex(await signer.sign(message)), expected);
  assert.equal(toHex(signer.publicKey), toHex(ed25519.getPublicKey(seedFromByte(0x2a))));
});

Deno.test("SoftwareSigner.generate: a fresh key each time", async () => {
  const keys = new Set<string>();
  for (let i = 0; i < 8; i++) keys.add(toHex((await SoftwareSigner.generate()).publicKey));
  assert.equal(keys.size, 8);
});

Deno.test("SoftwareSigner: description and JSON name only public data", async () => {
  const signer = await signerFromByte(0x01);
  assert.equal(signer.description, "software");
  assert.deepEqual(JSON.parse(JSON.stringify(signer)), {
    description: "software",
    publicKey: toHex(signer.publicKey),
  });
  assert.equal(Deno.inspect(signer), `SoftwareSigner { publicKey: ${toHex(signer.publicKey)} }`);
});
