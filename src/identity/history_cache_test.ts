/**
 * The verified-history cache (./history_cache.ts): what it returns again,
 * and that no other bytes, short or long, share a verified history's entry.
 */
import assert from "node:assert/strict";
import { IdentityError } from "../errors.ts";
import {
  assertRejectsWithCode,
  flipBit,
  identityFromByte,
  NOW,
  signerFromByte,
} from "../testdata/test_helpers.ts";
import { verifyHistoryCached } from "./history_cache.ts";
import type { Identity } from "./identity.ts";

/** `identity` rotated `times` times. */
async function rotated(identity: Identity, times: number): Promise<Identity> {
  for (let i = 0; i < times; i++) {
    identity = await identity.rotate(await signerFromByte(40 + i), { now: NOW + i });
  }
  return identity;
}

for (const [what, rotations] of [["a short history", 0], ["a history over 1 KiB", 6]] as const) {
  Deno.test(`verifyHistoryCached: ${what} verifies once; no other bytes share its entry`, async () => {
    const identity = await rotated(await identityFromByte(30 + rotations), rotations);
    const encoded = identity.history.encoded;
    assert.equal(encoded.length > 1024, rotations > 0);
    const first = await verifyHistoryCached(encoded);
    assert.equal(first.identifier, identity.identifier);
    assert.equal(await verifyHistoryCached(encoded.slice()), first);
    // The last byte is in the newest change's signature.
    for (const bit of [0, 7]) {
      const forged = flipBit(encoded, (encoded.length - 1) * 8 + bit);
      for (let attempt = 0; attempt < 2; attempt++) {
        // Refused every time: a failure is not kept either.
        await assertRejectsWithCode(verifyHistoryCached(forged), IdentityError, "bad_signature");
      }
    }
    assert.equal(await verifyHistoryCached(encoded), first);
  });
}
