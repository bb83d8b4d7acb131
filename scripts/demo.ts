/**
 * The README's run command, until the local stack exists: it walks through
 * what the core library does today, with real keys kept in `.state/demo/`.
 *
 *   1. loads or creates an authority identity and a member identity
 *      (Ed25519 keys in 0600 files);
 *   2. exports the authority's public identity file and imports it again as
 *      a trust anchor, as a gateway would;
 *   3. issues a one-hour credential to the member and verifies it;
 *   4. rotates the authority key and shows that a verifier holding the old
 *      identity file accepts credentials after receiving the new history;
 *   5. revokes the credential with a signed revocation list and shows the
 *      verifier refusing it.
 *
 * Run it with `npm start`; a second run reuses the identities.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  createRevocationList,
  type Credential,
  CredentialError,
  exportIdentity,
  Identity,
  importIdentity,
  issueCredential,
  loadOrCreateKeyFile,
  readKeyFile,
  RevocationRegistry,
  SoftwareSigner,
  toHex,
  TrustStore,
  verifyChangeHistory,
  verifyCredential,
} from "../src/mod.ts";

const HELP = `Usage: npm start [-- --state DIR]

Walks through the Nexus core: identities, credentials, rotation, revocation.

Options:
  --state DIR   state directory (default .state/demo)
  -h, --help    this help
`;

const { values } = parseArgs({
  options: {
    state: { type: "string", default: ".state/demo" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(HELP);
  Deno.exit(0);
}
const state = values.state!;

function step(text: string): void {
  console.log(`\n== ${text}`);
}

function show(credential: Credential): void {
  console.log(`  id          ${credential.id}`);
  console.log(`  subject     ${credential.subject}`);
  console.log(`  issuer      ${credential.issuer}`);
  console.log(`  attributes  ${JSON.stringify(credential.attributes)}`);
  console.log(
    `  valid       ${new Date(credential.createdAt * 1000).toISOString()} .. ${
      new Date(credential.expiresAt * 1000).toISOString()
    }`,
  );
  console.log(`  encoded     ${credential.encoded.length} bytes: ${toHex(credential.encoded)}`);
}

/** Loads the identity kept in `name`.history with its key, or creates both. */
async function loadIdentity(name: string): Promise<Identity> {
  const keyPath = `${state}/${name}.key`;
  const historyPath = `${state}/${name}.history`;
  try {
    const history = await Deno.readFile(historyPath);
    const verified = await verifyChangeHistory(history);
    return await Identity.fromHistory(verified.history, await readKeyFile(keyPath));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const identity = await Identity.create(await loadOrCreateKeyFile(keyPath));
  await Deno.writeFile(historyPath, identity.history.encoded);
  return identity;
}

await Deno.mkdir(state, { recursive: true, mode: 0o700 });

step(`identities (state in ${state}; keys are 0600 files and are never printed)`);
let authority = await loadIdentity("authority");
const member = await loadIdentity("member");
console.log(
  `  authority   ${authority.identifier} (${authority.history.changes.length} change(s))`,
);
console.log(`  member      ${member.identifier}`);

step("the authority's public identity file, imported by a verifier as its trust anchor");
const identityFile = exportIdentity(authority.history);
await Deno.writeTextFile(`${state}/authority.identity.json`, identityFile);
const trust = new TrustStore([await importIdentity(identityFile)]);
console.log(`  wrote ${state}/authority.identity.json; trusted: ${trust.identifiers().join(", ")}`);

step("issue a one-hour credential to the member, then verify it");
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
  ttlSeconds: 3600,
});
show(credential);
const verified = await verifyCredential(credential.encoded, { trust, subject: member.identifier });
console.log(`  verified: issuer trusted, signature valid, subject matches, within validity`);

step("rotate the authority key (new change signed by the old and the new key)");
const before = authority.history.changes.length;
authority = await authority.rotate(await SoftwareSigner.generate());
console.log(`  history grew from ${before} to ${authority.history.changes.length} changes`);
const fresh = await issueCredential(authority, {
  subject: member.identifier,
  subjectKey: member.primaryKey,
  attributes: verified.attributes,
});
try {
  await verifyCredential(fresh, { trust });
  console.log("  unexpected: the old trust anchor accepted the new key");
} catch (error) {
  console.log(
    `  verifier with the old identity file refuses it: ${(error as CredentialError).code}`,
  );
}
await trust.update(authority.history.encoded);
await verifyCredential(fresh, { trust, subject: member.identifier });
console.log("  after receiving the new history, the verifier accepts it");
// The rotated key was generated in memory only: keep the demo's state on the
// first key so a second run starts from the same place.

step("revoke the new credential with a signed revocation list");
const revocations = new RevocationRegistry();
await revocations.apply(
  await createRevocationList(authority, { serial: 1, credentialIds: [fresh.id] }),
  trust,
);
try {
  await verifyCredential(fresh, { trust, revocations });
  console.log("  unexpected: the revoked credential verified");
} catch (error) {
  console.log(`  refused: ${(error as CredentialError).code} (${(error as Error).message})`);
}

console.log("\nDone. Run `npm test` for the test suite.");
