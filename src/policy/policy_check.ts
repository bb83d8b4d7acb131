/**
 * The what-if command (`gateway policy check --policy '...' --credential
 * FILE`): what a policy decides for a credential, and why, as text for a
 * terminal. The gateway's CLI reads the file and prints {@link
 * PolicyCheckResult.text}; this module does no I/O.
 *
 * With trust anchors the credential is verified first, as a gateway would
 * (issuer, signature, validity window, revocations): a credential the
 * gateway would refuse is a denial whatever the policy says, and the output
 * says what the policy alone would have decided. Without trust anchors the
 * attributes are taken as they stand, and the output says so.
 *
 * @module
 */
import type { AttributeValue } from "../credential/attributes.ts";
import { decodeCredential, verifyCredential } from "../credential/credential.ts";
import type { RevocationRegistry } from "../credential/revocation.ts";
import type { TrustStore } from "../credential/trust_store.ts";
import { CredentialError } from "../errors.ts";
import { jsonText, printable } from "./expression.ts";
import { parsePolicy, type Policy } from "./policy.ts";

/** Options for {@link policyCheck}. */
export interface PolicyCheckOptions {
  /** The policy's text, or a rule already built (src/policy/rules.ts). */
  policy: string | Policy;
  /** What decision the policy makes, printed first (e.g. `outlet "context"`). */
  rule?: string;
  /** The encoded credential (the file's bytes). */
  credentialBytes: Uint8Array;
  /** When given, the credential is verified against these authorities first. */
  trust?: TrustStore;
  /** Revocations to honour when verifying (only with `trust`). */
  revocations?: RevocationRegistry;
  /** Clock for the validity window, Unix seconds (default: now; only with `trust`). */
  now?: number;
}

/** What the what-if command decided and prints. */
export interface PolicyCheckResult {
  /** The decision, for the command's exit status. */
  readonly allow: boolean;
  /** Why, in one line. */
  readonly reason: string;
  /** What the command prints: "allow" or "deny" on the first line, then why and the credential. */
  readonly text: string;
}

/** A value as JSON (control characters escaped) and safe to print. */
function showValue(value: AttributeValue): string {
  return typeof value === "object"
    ? `[${value.map((v) => jsonText(v)).join(", ")}]`
    : jsonText(value);
}

function isoTime(seconds: number): string {
  const date = new Date(seconds * 1000);
  return Number.isNaN(date.getTime()) ? String(seconds) : date.toISOString().replace(".000Z", "Z");
}

/**
 * Evaluates `policy` against the credential in `credentialBytes` and
 * returns the decision and the text the what-if command prints.
 *
 * @throws {PolicyError} when the policy does not parse (its message shows
 *   where); {MalformedError | LimitError | CredentialError} `bad_attributes`
 *   when the bytes are not a credential at all. A credential that decodes
 *   but fails verification is not thrown: it is a denial, explained.
 *
 * @example A credential checked against its issuer, then the policy
 * ```ts
 * import assert from "node:assert/strict";
 * import { issueCredential, TrustStore } from "../credential/mod.ts";
 * import { Identity, SoftwareSigner } from "../identity/mod.ts";
 * import { policyCheck } from "./mod.ts";
 *
 * const authority = await Identity.create(await SoftwareSigner.generate());
 * const member = await Identity.create(await SoftwareSigner.generate());
 * const credential = await issueCredential(authority, {
 *   subject: member.identifier,
 *   subjectKey: member.primaryKey,
 *   attributes: { role: "edge", capabilities: ["mcp"] },
 * });
 * const result = await policyCheck({
 *   policy: '"mcp" in subject.capabilities',
 *   credentialBytes: credential.encoded,
 *   trust: new TrustStore([authority]),
 * });
 * assert.equal(result.allow, true);
 * assert.equal(result.reason, '"mcp" in subject.capabilities: subject.capabilities contains "mcp"');
 * assert.equal(result.text.split("\n")[0], "allow");
 * ```
 */
export async function policyCheck(options: PolicyCheckOptions): Promise<PolicyCheckResult> {
  const policy = typeof options.policy === "string" ? parsePolicy(options.policy) : options.policy;
  const credential = decodeCredential(options.credentialBytes);
  const subject = { identifier: credential.subject, attributes: credential.attributes };
  const byPolicy = policy.evaluate(subject);

  let status: string;
  let refusal: string | null = null;
  if (options.trust === undefined) {
    status = "not verified (no trust anchors given): attributes taken as they stand";
  } else {
    try {
      await verifyCredential(credential, {
        trust: options.trust,
        revocations: options.revocations,
        now: options.now,
      });
      status = "verified";
    } catch (error) {
      if (!(error instanceof CredentialError)) throw error;
      refusal = `credential refused [${error.code}]: ${error.message}`;
      status = `refused [${error.code}]`;
    }
  }

  const allow = refusal === null && byPolicy.allow;
  const reason = refusal ?? byPolicy.reason;
  const lines = [
    allow ? "allow" : "deny",
    `  why: ${reason}`,
  ];
  if (refusal !== null) {
    lines.push(`  the policy alone would ${byPolicy.allow ? "allow" : "deny"}: ${byPolicy.reason}`);
  }
  lines.push(
    ...(options.rule === undefined ? [] : [`rule: ${printable(options.rule)}`]),
    `policy: ${printable(policy.source.replace(/\s+/g, " ").trim())}`,
    `credential ${credential.id}: ${status}`,
    `  subject:    ${credential.subject}`,
    `  issuer:     ${credential.issuer}`,
    `  valid:      ${isoTime(credential.createdAt)} to ${isoTime(credential.expiresAt)}`,
  );
  const names = Object.keys(credential.attributes).sort();
  if (names.length === 0) {
    lines.push("  attributes: none");
  } else {
    lines.push("  attributes:");
    const width = Math.max(...names.map((n) => n.length));
    for (const name of names) {
      const used = policy.attributes.includes(name) ? "  (read by the policy)" : "";
      lines.push(`    ${name.padEnd(width)} = ${showValue(credential.attributes[name])}${used}`);
    }
  }
  const absent = policy.attributes.filter((name) => !Object.hasOwn(credential.attributes, name));
  if (absent.length > 0) {
    lines.push(`  missing attributes the policy reads: ${absent.join(", ")}`);
  }
  return { allow, reason, text: lines.join("\n") + "\n" };
}
