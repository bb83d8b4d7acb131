import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { AuthorityStore } from "../../authority/store.ts";
import { licenseId } from "./license_id.ts";

Deno.test("licenseId: the id the authority gives the license, never the key", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nexus-license-id-" });
  const store = await AuthorityStore.open(`${dir}/authority.db`);
  try {
    const { key, id } = await store.createLicense({ customerId: "cust_001", tier: "professional" });
    assert.equal(licenseId(key), id);
    assert.match(licenseId(key), /^[0-9a-f]{64}$/);
    assert.ok(!licenseId(key).includes(key.slice(4)));
    // The same definition, computed independently: hex SHA-256 of the key's UTF-8.
    assert.equal(licenseId(key), createHash("sha256").update(key, "utf8").digest("hex"));
    // The store knows the license by that id where it takes one (revoke); not by another.
    await store.revokeLicense(licenseId(key));
    await assert.rejects(store.revokeLicense(licenseId(`${key}x`)), /no such license/);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
