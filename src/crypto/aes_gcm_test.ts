/**
 * The conformance suite of the AES-256-GCM backends: every backend runs
 * the same cases (known answers, agreement with WebCrypto at every size
 * the channel uses, forgeries refused, lengths refused before native code
 * sees them).
 */
import assert from "node:assert/strict";
import {
  type AesGcm,
  CipherBackendError,
  DEFAULT_LIBCRYPTO,
  nodeAesGcm,
  openSslAesGcm,
} from "./aes_gcm.ts";

/** Random bytes of any length (getRandomValues gives at most 64 KiB a call). */
function random(length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let at = 0; at < length; at += 65_536) {
    crypto.getRandomValues(out.subarray(at, Math.min(length, at + 65_536)));
  }
  return out;
}

const hex = (text: string) =>
  Uint8Array.from(text.match(/../g) ?? [], (byte) => parseInt(byte, 16));

/** McGrew and Viega, "The Galois/Counter Mode of Operation", test cases 13–16 (AES-256). */
const VECTORS = [
  {
    name: "case 13: empty plaintext",
    key: "00".repeat(32),
    nonce: "00".repeat(12),
    plaintext: "",
    sealed: "530f8afbc74536b9a963b4f1c4cb738b",
  },
  {
    name: "case 14: one zero block",
    key: "00".repeat(32),
    nonce: "00".repeat(12),
    plaintext: "00".repeat(16),
    sealed: "cea7403d4d606b6e074ec5d3baf39d18" + "d0d1c8a799996bf0265b98b5d48ab919",
  },
  {
    name: "case 15: four blocks",
    key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
    nonce: "cafebabefacedbaddecaf888",
    plaintext: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72" +
      "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
    sealed: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa" +
      "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad" +
      "b094dac5d93471bdec1a502270e3cc6c",
  },
];

async function webCryptoSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array) {
  const imported = await crypto.subtle.importKey(
    "raw",
    key as Uint8Array<ArrayBuffer>,
    "AES-GCM",
    false,
    ["encrypt"],
  );
  return new Uint8Array(
    await crypto.subtle.encrypt(
      { name: "AES-GCM", iv: nonce as Uint8Array<ArrayBuffer> },
      imported,
      plaintext as Uint8Array<ArrayBuffer>,
    ),
  );
}

function conformance(name: string, backend: () => AesGcm): void {
  Deno.test(`AES-256-GCM ${name}: known answers (GCM test cases 13–15)`, () => {
    const aes = backend();
    for (const vector of VECTORS) {
      const key = aes.key(hex(vector.key));
      const plaintext = hex(vector.plaintext);
      const sealed = new Uint8Array(plaintext.length + 16);
      key.seal(hex(vector.nonce), plaintext, sealed);
      assert.deepEqual(sealed, hex(vector.sealed), vector.name);
      const opened = new Uint8Array(plaintext.length);
      assert.ok(key.open(hex(vector.nonce), sealed, opened), vector.name);
      assert.deepEqual(opened, plaintext, vector.name);
      key.dispose();
    }
  });

  Deno.test(`AES-256-GCM ${name}: agrees with WebCrypto at every record size, in subarrays`, async () => {
    const aes = backend();
    const raw = crypto.getRandomValues(new Uint8Array(32));
    const key = aes.key(raw);
    for (const size of [0, 1, 15, 16, 17, 100, 2048, 2049, 16 * 1024, 65_536 + 7, 192 * 1024]) {
      const nonce = crypto.getRandomValues(new Uint8Array(12));
      // The plaintext and the output at odd offsets of larger buffers, as
      // the channel passes them (headroom before, other data after).
      const plainBuffer = random(size + 13);
      const plaintext = plainBuffer.subarray(5, 5 + size);
      const outBuffer = new Uint8Array(size + 16 + 9).fill(0xaa);
      const out = outBuffer.subarray(3, 3 + size + 16);
      key.seal(nonce, plaintext, out);
      assert.deepEqual(out, await webCryptoSeal(raw, nonce, plaintext), `size ${size}`);
      assert.deepEqual(outBuffer.subarray(0, 3), new Uint8Array(3).fill(0xaa), "before out");
      assert.deepEqual(outBuffer.subarray(3 + size + 16), new Uint8Array(6).fill(0xaa), "after");
      const openedBuffer = new Uint8Array(size + 4).fill(0x55);
      assert.ok(key.open(nonce, out, openedBuffer.subarray(2, 2 + size)), `open ${size}`);
      assert.deepEqual(openedBuffer.subarray(2, 2 + size), plaintext);
      assert.deepEqual(openedBuffer.subarray(2 + size), Uint8Array.of(0x55, 0x55));
    }
    key.dispose();
  });

  Deno.test(`AES-256-GCM ${name}: a prefix seals as if it were copied before the plaintext`, async () => {
    const aes = backend();
    const raw = crypto.getRandomValues(new Uint8Array(32));
    const key = aes.key(raw);
    for (const [p, size] of [[1, 0], [5, 100], [15, 16], [16, 16], [17, 65_536], [300, 1]]) {
      const nonce = crypto.getRandomValues(new Uint8Array(12));
      const prefix = random(p);
      const plaintext = random(size);
      const out = new Uint8Array(p + size + 16);
      key.seal(nonce, plaintext, out, prefix);
      const whole = new Uint8Array(p + size);
      whole.set(prefix);
      whole.set(plaintext, p);
      assert.deepEqual(out, await webCryptoSeal(raw, nonce, whole), `prefix ${p}, ${size} bytes`);
      const opened = new Uint8Array(p + size);
      assert.ok(key.open(nonce, out, opened));
      assert.deepEqual(opened, whole);
    }
    assert.throws(
      () => key.seal(new Uint8Array(12), new Uint8Array(4), new Uint8Array(20), new Uint8Array(1)),
      RangeError,
    );
    key.dispose();
  });

  Deno.test(`AES-256-GCM ${name}: a flipped bit anywhere, another nonce or key is refused`, () => {
    const aes = backend();
    const raw = crypto.getRandomValues(new Uint8Array(32));
    const key = aes.key(raw);
    const nonce = crypto.getRandomValues(new Uint8Array(12));
    const plaintext = crypto.getRandomValues(new Uint8Array(300));
    const sealed = new Uint8Array(316);
    key.seal(nonce, plaintext, sealed);
    const out = new Uint8Array(300);
    for (const at of [0, 150, 299, 300, 315]) {
      sealed[at] ^= 0x01;
      assert.equal(key.open(nonce, sealed, out), false, `bit flipped at ${at}`);
      sealed[at] ^= 0x01;
    }
    const otherNonce = nonce.slice();
    otherNonce[11] ^= 1;
    assert.equal(key.open(otherNonce, sealed, out), false, "another nonce");
    const otherRaw = raw.slice();
    otherRaw[0] ^= 1;
    assert.equal(aes.key(otherRaw).open(nonce, sealed, out), false, "another key");
    assert.ok(key.open(nonce, sealed, out), "the genuine record still opens");
    // The key was copied: wiping the caller's bytes changes nothing.
    raw.fill(0);
    assert.ok(key.open(nonce, sealed, out));
    key.dispose();
    assert.throws(() => key.seal(nonce, plaintext, sealed), /disposed/);
  });

  Deno.test(`AES-256-GCM ${name}: wrong lengths are refused before any native call`, () => {
    const aes = backend();
    assert.throws(() => aes.key(new Uint8Array(16)), RangeError);
    const key = aes.key(new Uint8Array(32));
    const nonce = new Uint8Array(12);
    assert.throws(
      () => key.seal(new Uint8Array(8), new Uint8Array(4), new Uint8Array(20)),
      RangeError,
    );
    assert.throws(() => key.seal(nonce, new Uint8Array(4), new Uint8Array(19)), RangeError);
    assert.throws(() => key.seal(nonce, new Uint8Array(4), new Uint8Array(21)), RangeError);
    assert.throws(() => key.open(nonce, new Uint8Array(15), new Uint8Array(0)), RangeError);
    assert.throws(() => key.open(nonce, new Uint8Array(20), new Uint8Array(5)), RangeError);
    key.dispose();
  });
}

conformance("by node:crypto", () => nodeAesGcm);
conformance("by OpenSSL (FFI)", () => openSslAesGcm());

Deno.test("OpenSSL backend: a library that is not there is a typed error naming it", () => {
  assert.throws(
    () => openSslAesGcm("/nonexistent/libcrypto.so.3"),
    (error: unknown) =>
      error instanceof CipherBackendError && error.code === "not_found" &&
      error.message.includes("/nonexistent/libcrypto.so.3"),
  );
  assert.equal(openSslAesGcm(DEFAULT_LIBCRYPTO), openSslAesGcm(), "loaded once per path");
});

Deno.test("OpenSSL backend: without --allow-ffi for the library, no_permission", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/probe.ts`;
    await Deno.writeTextFile(
      script,
      `import { openSslAesGcm } from ${
        JSON.stringify(new URL("./aes_gcm.ts", import.meta.url).href)
      };
try { openSslAesGcm(); } catch (e) { console.log(e.code); }`,
    );
    const { stdout } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--no-config", `--allow-read=${dir}`, script],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    assert.equal(new TextDecoder().decode(stdout).trim(), "no_permission");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
