/**
 * Lowercase hexadecimal, for identifiers, ids and operator-facing files.
 *
 * @module
 */

const alphabet = "0123456789abcdef";
const table: string[] = Array.from({ length: 256 }, (_, i) => alphabet[i >> 4] + alphabet[i & 15]);

/** Lowercase hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += table[bytes[i]];
  return out;
}

/**
 * Parses lowercase or uppercase hex.
 * @throws {TypeError} on odd length or a non-hex character.
 */
export function fromHex(text: string): Uint8Array {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) {
    throw new TypeError("not a hex string of whole bytes");
  }
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}
