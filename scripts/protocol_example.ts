/**
 * Regenerates the worked example in `docs/protocol.md`: the authority's
 * first change and a credential, built by the real code from fixed inputs
 * and annotated byte by byte. Ed25519 is deterministic, so the output is
 * the same on every run.
 *
 *   .tools/bin/deno run -q scripts/protocol_example.ts
 *
 * Needs no permissions. It checks that what it prints verifies before
 * printing it.
 *
 * @module
 */
import {
  DOMAIN,
  exportIdentity,
  Identity,
  issueCredential,
  sha256,
  signedMessage,
  SoftwareSigner,
  toHex,
  TrustStore,
  verifyChangeHistory,
  verifyCredential,
} from "../src/mod.ts";

/** The fixed inputs (the same as the golden vectors'). */
const NOW = 1767225600; // 2026-01-01T00:00:00Z
const AUTHORITY_SEED = new Uint8Array(32).fill(0x01);
const MEMBER_SEED = new Uint8Array(32).fill(0x02);
const CREDENTIAL_ID = Uint8Array.from({ length: 16 }, (_, i) => i);
const ATTRIBUTES = {
  customer_id: "cust_001",
  role: "edge",
  tier: "professional",
  capabilities: ["search", "ingest", "query", "mcp"],
  rate_limit_rpm: 2000,
};

/** Names for the items of a structure, so the dump can say what each is. */
interface Field {
  name: string;
  /** A byte string whose content is itself CBOR of this shape. */
  cbor?: Field;
  /** Names of an array's items, by position. */
  items?: Field[];
  /** Name of every item of an array (when `items` is not given). */
  each?: Field;
}

const changeData: Field = {
  name: "ChangeData",
  items: [
    { name: "version" },
    { name: "previous_hash" },
    { name: "primary_key" },
    { name: "created_at" },
  ],
};
const changeHistory: Field = {
  name: "ChangeHistory",
  each: {
    name: "Change",
    items: [
      { name: "data", cbor: changeData },
      { name: "signature" },
    ],
  },
};
const credentialData: Field = {
  name: "CredentialData",
  items: [
    { name: "version" },
    { name: "subject" },
    { name: "subject_key" },
    { name: "issuer" },
    { name: "attributes" },
    { name: "created_at" },
    { name: "expires_at" },
    { name: "id" },
  ],
};
const credential: Field = {
  name: "Credential",
  items: [
    { name: "data", cbor: credentialData },
    { name: "signature" },
  ],
};

function hex(bytes: Uint8Array): string {
  return [...bytes].map((x) => x.toString(16).padStart(2, "0")).join(" ");
}

/** Annotates CBOR, one line per head or per 16 bytes of content. */
class Dump {
  readonly lines: string[] = [];

  line(offset: number, depth: number, bytes: Uint8Array, meaning: string): void {
    const column = ("  ".repeat(depth) + hex(bytes)).padEnd(54);
    this.lines.push(`${String(offset).padStart(4)}  ${column} ${meaning}`.trimEnd());
  }

  /** Walks one item at `at` of `b`, whose byte 0 is at `base` in the outer encoding. */
  item(b: Uint8Array, at: number, base: number, depth: number, field?: Field): number {
    const initial = b[at];
    const major = initial >> 5;
    const info = initial & 0x1f;
    let size = 0;
    let value = info;
    if (info >= 24 && info <= 27) {
      size = 1 << (info - 24);
      value = 0;
      for (let i = 1; i <= size; i++) value = value * 256 + b[at + i];
    }
    const headEnd = at + 1 + size;
    const head = b.subarray(at, headEnd);
    const argument = size === 0 ? "" : ` (${size}-byte argument)`;
    const name = field ? ` — ${field.name}` : "";
    switch (major) {
      case 0:
        this.line(base + at, depth, head, `uint ${value}${argument}${name}`);
        return headEnd;
      case 2: {
        const end = headEnd + value;
        this.line(base + at, depth, head, `byte string, ${value} bytes${argument}${name}`);
        if (field?.cbor) {
          this.item(b.subarray(headEnd, end), 0, base + headEnd, depth + 1, field.cbor);
        } else {
          for (let i = headEnd; i < end; i += 16) {
            this.line(base + i, depth + 1, b.subarray(i, Math.min(i + 16, end)), "");
          }
        }
        return end;
      }
      case 3: {
        const end = headEnd + value;
        const text = JSON.stringify(new TextDecoder().decode(b.subarray(headEnd, end)));
        const meaning = `text, ${value} bytes${argument} ${text}${name}`;
        if (end - at <= 16) {
          this.line(base + at, depth, b.subarray(at, end), meaning);
        } else {
          this.line(base + at, depth, head, meaning);
          for (let i = headEnd; i < end; i += 16) {
            this.line(base + i, depth + 1, b.subarray(i, Math.min(i + 16, end)), "");
          }
        }
        return end;
      }
      case 4: {
        this.line(
          base + at,
          depth,
          head,
          `array, ${value} item${value === 1 ? "" : "s"}${argument}${name}`,
        );
        let next = headEnd;
        for (let i = 0; i < value; i++) {
          next = this.item(b, next, base, depth + 1, field?.items?.[i] ?? field?.each);
        }
        return next;
      }
      case 5: {
        this.line(base + at, depth, head, `map, ${value} pairs${argument}${name}`);
        let next = headEnd;
        for (let i = 0; i < value; i++) {
          next = this.item(b, next, base, depth + 1, { name: "key" });
          next = this.item(b, next, base, depth + 1, { name: "value" });
        }
        return next;
      }
      case 7: {
        const simple: Record<number, string> = { 0xf4: "false", 0xf5: "true", 0xf6: "null" };
        this.line(base + at, depth, head, `${simple[initial]}${name}`);
        return headEnd;
      }
      default:
        throw new Error(`unexpected major type ${major} at ${at}`);
    }
  }

  static of(bytes: Uint8Array, field: Field): string {
    const dump = new Dump();
    const end = dump.item(bytes, 0, 0, 0, field);
    if (end !== bytes.length) throw new Error("the dump did not reach the end");
    return dump.lines.join("\n");
  }
}

function wrap(text: string, width = 64): string {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += width) out.push(text.slice(i, i + width));
  return out.join("\n");
}

const authority = await Identity.create(await SoftwareSigner.fromSeed(AUTHORITY_SEED), {
  now: NOW,
});
const member = await Identity.create(await SoftwareSigner.fromSeed(MEMBER_SEED), { now: NOW });
const issued = await issueCredential(authority, {
  subject: member.identifier,
  subjectKey: member.primaryKey,
  attributes: ATTRIBUTES,
  ttlSeconds: 3600,
  now: NOW,
  id: CREDENTIAL_ID,
});

// What is printed must verify.
await verifyChangeHistory(authority.history.encoded);
await verifyCredential(issued.encoded, {
  trust: new TrustStore([authority]),
  subject: member.identifier,
  subjectKey: member.primaryKey,
  now: NOW,
});

const first = authority.history.changes[0];
for (const label of Object.values(DOMAIN)) {
  const prefix = signedMessage(label, new Uint8Array(0));
  console.log(`${label.padEnd(30)} ${String(prefix.length).padStart(2)} bytes: ${hex(prefix)}`);
}
console.log(`
authority public key  ${toHex(authority.primaryKey)}
authority identifier  ${authority.identifier}
member public key     ${toHex(member.primaryKey)}
member identifier     ${member.identifier}
SHA-256(authority first change data) = ${toHex(sha256(first.data))}

authority identity file:
${exportIdentity(authority.history)}
authority ChangeHistory, ${authority.history.encoded.length} bytes:
${wrap(toHex(authority.history.encoded))}

${Dump.of(authority.history.encoded, changeHistory)}

Credential, ${issued.encoded.length} bytes (data ${issued.data.length} bytes):
${wrap(toHex(issued.encoded))}

${Dump.of(issued.encoded, credential)}`);
