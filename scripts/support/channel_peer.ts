/**
 * A secure channel responder in its own process: the second process of
 * tests/channel_tcp_test.ts and of scripts/bench_channel.ts.
 * Reads the authority's identity from an identity file, creates its own
 * identity with a credential from a seed file, listens on 127.0.0.1:0,
 * prints `LISTENING <port> <identifier>` and echoes every message it gets
 * at "echo" back to its sender, until stdin closes. "sink" counts the bytes
 * it receives and answers an empty message with the count (benchmarks).
 *
 * Usage: channel_peer.ts <authority identity file> <authority key seed hex file>
 *
 * Permissions: read the two files, net 127.0.0.1; with ffi for OpenSSL's
 * libcrypto, records and handshakes use it, as in the gateway
 * (`cipher.backend` "auto"), else the portable primitives.
 *
 * @module
 */
import { issueCredential } from "../../src/credential/credential.ts";
import { TrustStore } from "../../src/credential/trust_store.ts";
import { fromHex } from "../../src/encoding/hex.ts";
import { Identity } from "../../src/identity/identity.ts";
import { readIdentityFile } from "../../src/identity/identity_file.ts";
import { SoftwareSigner } from "../../src/identity/software_signer.ts";
import { createChannelIdentity } from "../../src/channel/channel_identity.ts";
import { chooseRecordCipher } from "../../src/channel/cipher_choice.ts";
import { DEFAULT_LIBCRYPTO } from "../../src/crypto/aes_gcm.ts";
import { silentLogger } from "../../src/log.ts";
import { listenSecureChannels } from "../../src/channel/handshake.ts";
import { Node } from "../../src/routing/node.ts";
import { TcpTransport } from "../../src/transport/tcp_transport.ts";

const [identityPath, seedPath] = Deno.args;
// As the gateway chooses with cipher.backend "auto".
chooseRecordCipher({ backend: "auto", library: DEFAULT_LIBCRYPTO }, silentLogger);
const anchor = await readIdentityFile(identityPath);
const authority = await Identity.fromHistory(
  anchor.history,
  await SoftwareSigner.fromSeed(fromHex((await Deno.readTextFile(seedPath)).trim())),
);
const me = await Identity.create(await SoftwareSigner.generate());
const credential = await issueCredential(authority, {
  subject: me.identifier,
  subjectKey: me.primaryKey,
  attributes: { role: "gateway" },
});
const node = new Node({ name: "peer" });
const transport = new TcpTransport(node);
node.register("echo", async (m) => {
  await node.route({ onward: m.return, return: ["echo"], payload: m.payload });
});
// Counts bytes; an empty message asks for the count so far (and resets it).
let counted = 0;
node.register("sink", async (m) => {
  if (m.payload.length > 0) {
    counted += m.payload.length;
    return;
  }
  const reply = new TextEncoder().encode(String(counted));
  counted = 0;
  await node.route({ onward: m.return, return: ["sink"], payload: reply });
});
const channels = listenSecureChannels({
  node,
  address: "api",
  local: await createChannelIdentity(me, { credentials: () => [credential.encoded] }),
  policy: { trust: new TrustStore([anchor]), requiredAttributes: { role: "edge" } },
});
const listener = transport.listen({ hostname: "127.0.0.1", port: 0 });
console.log(`LISTENING ${listener.addr.port} ${me.identifier}`);
for await (const _ of Deno.stdin.readable) { /* run until stdin closes */ }
channels.close({ closeChannels: true });
await transport.close();
Deno.exit(0);
