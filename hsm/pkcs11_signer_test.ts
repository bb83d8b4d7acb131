/**
 * The PKCS#11 signer against a fresh SoftHSM2 token: the same conformance
 * suite as the software signer, plus HSM properties and failures.
 */
import assert from "node:assert/strict";
import { HsmError } from "../src/errors.ts";
import { signerConformance } from "../src/identity/signer_conformance.ts";
import { HsmSession } from "./pkcs11_signer.ts";
import { createSoftHsmToken } from "./testing/softhsm.ts";

const token = await createSoftHsmToken();
Deno.env.set("SOFTHSM2_CONF", token.conf);
const session = HsmSession.open(token);
globalThis.addEventListener("unload", () => {
  session.close();
  Deno.removeSync(token.dir, { recursive: true });
});

let keys = 0;
signerConformance("Pkcs11Signer (SoftHSM2)", () => {
  keys++;
  return Promise.resolve(
    session.generateKey({ label: `conformance-${keys}`, id: keys.toString(16).padStart(2, "0") }),
  );
});

Deno.test("pkcs11: the generated key is sensitive, not extractable, and its value cannot be read", () => {
  const signer = session.generateKey({ label: "properties", id: "a0" });
  assert.equal(signer.extractable, false);
  assert.equal(signer.sensitive, true);
  assert.match(signer.description, /^pkcs11:token=nexus-authority;object=properties;id=a0$/);
  assert.equal(signer.valueReadable(), false);
});

Deno.test("pkcs11: generating over an existing label is refused", () => {
  session.generateKey({ label: "unique", id: "b0" });
  assert.throws(
    () => session.generateKey({ label: "unique", id: "b1" }),
    (e: unknown) => e instanceof HsmError && e.code === "key_exists",
  );
});

Deno.test("pkcs11: a missing key is key_missing", () => {
  assert.throws(
    () => session.findKey({ label: "nothing-here" }),
    (e: unknown) => e instanceof HsmError && e.code === "key_missing",
  );
});
