/**
 * Credential verification throughput. `deno bench` prints each case's ratio
 * against the group's baseline, measured in the same run:
 *
 * - `verify` group, baseline: one bare Ed25519 verification (node:crypto, key
 *   already imported) of a message the size of a credential's signed bytes:
 *   the floor for any verifier. Compared with the full `verifyCredential`
 *   (strict decode, trust lookup, signature, subject, window, revocation)
 *   and with the pure-JS @noble verification the project keeps as reference.
 * - `decode` group: strict decode against cbor-x's plain decode of the same
 *   bytes, i.e. what the strict gate costs.
 *
 * @module
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import { Decoder } from "cbor-x/decode";
import { verifyEd25519 } from "../crypto/ed25519.ts";
import { DOMAIN, signedMessage } from "../encoding/domain.ts";
import { Identity } from "../identity/identity.ts";
import { SoftwareSigner } from "../identity/software_signer.ts";
import { decodeCredential, issueCredential, verifyCredential } from "./credential.ts";
import { RevocationRegistry } from "./revocation.ts";
import { createRevocationList } from "./revocation.ts";
import { TrustStore } from "./trust_store.ts";

const authority = await Identity.create(await SoftwareSigner.fromSeed(new Uint8Array(32).fill(1)));
const member = await Identity.create(await SoftwareSigner.fromSeed(new Uint8Array(32).fill(2)));
const credential = await issueCredential(authority, {
  subject: member.identifier,
  subjectKey: member.primaryKey,
  attributes: {
    customer_id: "cust_001",
    role: "edge",
    tier: "professional",
    capabilities: ["search", "ingest", "query", "mcp"],
    rate_limit_rpm: 2000,
  },
});
const trust = new TrustStore([authority]);
const revocations = new RevocationRegistry();
// A realistic list: a thousand revoked ids, none of them this credential's.
await revocations.apply(
  await createRevocationList(authority, {
    serial: 1,
    credentialIds: Array.from(
      { length: 1000 },
      (_, i) => i.toString(16).padStart(32, "0"),
    ),
  }),
  trust,
);
const message = signedMessage(DOMAIN.credential, credential.data);
const options = { trust, subject: member.identifier, revocations };
const plain = new Decoder({ mapsAsObjects: false, useRecords: false });

Deno.bench(
  "Ed25519 verify, node:crypto (baseline)",
  { group: "verify", baseline: true },
  async () => {
    if (
      !await verifyEd25519(authority.primaryKey, message, credential.signature)
    ) throw new Error();
  },
);
Deno.bench("verifyCredential (decode + all checks)", { group: "verify" }, async () => {
  await verifyCredential(credential.encoded, options);
});
Deno.bench("verifyCredential (already decoded)", { group: "verify" }, async () => {
  await verifyCredential(credential, options);
});
Deno.bench("Ed25519 verify, @noble (reference)", { group: "verify" }, () => {
  if (!ed25519.verify(credential.signature, message, authority.primaryKey)) throw new Error();
});

Deno.bench("cbor-x plain decode (baseline)", { group: "decode", baseline: true }, () => {
  plain.decode(credential.encoded);
  plain.decode(credential.data);
});
Deno.bench("decodeCredential (strict gate + shape)", { group: "decode" }, () => {
  decodeCredential(credential.encoded);
});
