/**
 * Routed message layout, and the forwarding rewrite against decode/encode.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeRoutedMessage,
  encodeRoutedMessage,
  firstOnwardAddress,
  forwardRoutedMessage,
} from "./routed_message.ts";

const address = fc.stringMatching(/^[\x21-\x7e]{1,20}$/);

Deno.test("forwardRoutedMessage equals decode, pop, push, encode", () => {
  fc.assert(
    fc.property(
      fc.array(address, { minLength: 1, maxLength: 8 }),
      fc.array(address, { maxLength: 8 }),
      fc.uint8Array({ maxLength: 300 }),
      address,
      (onward, back, payload, via) => {
        const encoded = encodeRoutedMessage(onward, back, payload);
        assert.equal(firstOnwardAddress(encoded), onward[0]);
        const forwarded = forwardRoutedMessage(encoded, via)!;
        assert.deepEqual(forwarded, encodeRoutedMessage(onward.slice(1), [via, ...back], payload));
        const decoded = decodeRoutedMessage(forwarded);
        assert.deepEqual(decoded.onward, onward.slice(1));
        assert.deepEqual(decoded.return, [via, ...back]);
      },
    ),
    { numRuns: 2000 },
  );
});

Deno.test("forwardRoutedMessage refuses malformed headers and never throws", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const out = forwardRoutedMessage(bytes, "c.0123456789abcdef");
      if (out !== null && out.length > 0) decodeRoutedMessage(out); // a result is always well formed
    }),
    { numRuns: 10_000 },
  );
  assert.equal(forwardRoutedMessage(new Uint8Array([1, 0, 0]), "x"), null);
  // A later address its next hop would refuse is refused here already.
  const bad = encodeRoutedMessage(["forward.gw", "api"], ["me"], new Uint8Array(1));
  bad[bad.indexOf(0x61)] = 0x07; // "a" of "api" -> a control character
  assert.equal(forwardRoutedMessage(bad, "c.1"), null);
  assert.equal(firstOnwardAddress(new Uint8Array([2, 1, 1, 0x41])), null);
});
