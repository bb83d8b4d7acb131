/**
 * The relay: admission, aliases and standby takeover, an end-to-end secure
 * channel through it that it cannot read or tamper with undetected,
 * malformed input, revocation, and the relay as a real process.
 */
import assert from "node:assert/strict";
import { connectSecureChannel, listenSecureChannels } from "../src/channel/handshake.ts";
import { issueCredential } from "../src/credential/credential.ts";
import { createRevocationList } from "../src/credential/revocation.ts";
import { encodeCbor } from "../src/encoding/cbor.ts";
import { RelayError } from "../src/errors.ts";
import { writeIdentityFile } from "../src/identity/identity_file.ts";
import { Identity } from "../src/identity/identity.ts";
import { SoftwareSigner } from "../src/identity/software_signer.ts";
import { createLogger } from "../src/log.ts";
import {
  connectRelay,
  lookupAlias,
  refreshAtRelay,
  registerAlias,
} from "../src/relay_client/relay_client.ts";
import {
  decodeChallenge,
  decodeHello,
  decodeVerdict,
  encodeAdmit,
  encodeChallenge,
  encodeHello,
} from "../src/relay_client/admission.ts";
import type { Credential } from "../src/credential/credential.ts";
import type { TrustStore } from "../src/credential/trust_store.ts";
import { ChangeHistory } from "../src/identity/change_history.ts";
import { provisionRelay } from "../scripts/support/relay_state.ts";
import { freePort } from "../scripts/support/free_port.ts";
import { connectTcp, listenTcp } from "../src/transport/mod.ts";
import { Node } from "../src/routing/node.ts";
import { encodeRoutedMessage } from "../src/routing/routed_message.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import { authority, eventually, member } from "../src/testdata/channel_fixtures.ts";
import { type Relay, startRelay } from "../relay/relay.ts";
import { readBanner } from "../scripts/support/banner.ts";

type Authority = Awaited<ReturnType<typeof authority>>;

/** A member identity with a credential carrying `attributes`, as the relay sees it. */
async function relayMember(
  ca: Identity,
  attributes: Record<string, unknown>,
  options: { ttlSeconds?: number; now?: number } = {},
) {
  const identity = await Identity.create(await SoftwareSigner.generate());
  const credential = await issueCredential(ca, {
    subject: identity.identifier,
    subjectKey: identity.primaryKey,
    attributes,
    ttlSeconds: options.ttlSeconds,
    now: options.now,
  });
  return { identity, credential };
}

async function withRelay(
  fn: (ctx: { ca: Authority; relay: Relay; logs: string[] }) => Promise<void>,
  options: Partial<Parameters<typeof startRelay>[0]> = {},
): Promise<void> {
  const ca = await authority();
  const logs: string[] = [];
  // The relay is a member too: its credential names the address it listens
  // on, which is known once it listens.
  const identity = await Identity.create(await SoftwareSigner.generate());
  let credential: Credential | null = null;
  const relay = startRelay({
    hostname: "127.0.0.1",
    port: 0,
    trust: ca.trust,
    identity,
    credential: () => credential,
    logger: createLogger({ component: "relay", level: "debug", write: (line) => logs.push(line) }),
    ...options,
  });
  credential = await issueCredential(ca.identity, {
    subject: identity.identifier,
    subjectKey: identity.primaryKey,
    attributes: { role: "relay", relay_addresses: [`127.0.0.1:${relay.addr.port}`] },
  });
  try {
    await fn({ ca, relay, logs });
  } finally {
    await relay.close();
  }
}

async function join(
  relay: Pick<Relay, "addr">,
  who: { identity: Identity; credential: { encoded: Uint8Array } },
  trust: TrustStore,
) {
  const node = new Node({ name: "n" });
  const transport = new TcpTransport(node);
  const conn = await connectRelay({
    transport,
    hostname: "127.0.0.1",
    port: relay.addr.port,
    identity: who.identity,
    credential: who.credential.encoded,
    trust,
  });
  return { node, transport, conn };
}

Deno.test("relay: unadmitted connections (untrusted, expired, revoked, forged) are refused", async () => {
  await withRelay(async ({ ca, relay }) => {
    const refusedWith = async (who: Awaited<ReturnType<typeof relayMember>>, reason: RegExp) => {
      await assert.rejects(
        join(relay, who, ca.trust),
        (e: unknown) =>
          e instanceof RelayError && e.code === "admission_refused" && reason.test(e.message),
      );
    };
    const stranger = await authority();
    await refusedWith(await relayMember(stranger.identity, { role: "edge" }), /untrusted_issuer/);
    const now = Math.floor(Date.now() / 1000);
    await refusedWith(
      await relayMember(ca.identity, { role: "edge" }, { ttlSeconds: 10, now: now - 3600 }),
      /expired/,
    );
    const revoked = await relayMember(ca.identity, { role: "edge" });
    await relay.applyRevocations(
      await createRevocationList(ca.identity, {
        serial: 1,
        identifiers: [revoked.identity.identifier],
      }),
    );
    await refusedWith(revoked, /revoked/);
    // A credential about someone else: the signature over the challenge is by
    // another key than the history's.
    const victim = await relayMember(ca.identity, { role: "edge" });
    const thief = await relayMember(ca.identity, { role: "edge" });
    await refusedWith(
      { identity: thief.identity, credential: victim.credential },
      /bad_credential/,
    );
    assert.equal(relay.connections(), 0);
    assert.equal(relay.stats.admitted, 0);
  });
});

Deno.test("relay: a connection that skips admission can neither send nor register", async () => {
  await withRelay(async ({ relay }) => {
    const socket = await Deno.connect({ hostname: "127.0.0.1", port: relay.addr.port });
    const register = encodeRoutedMessage(["relay"], ["me"], encodeCbor([1, "register", "gw"]));
    const frame = new Uint8Array(1 + 4 + register.length);
    frame[0] = 1;
    new DataView(frame.buffer).setUint32(1, register.length);
    frame.set(register, 5);
    await socket.write(frame);
    // The relay answers with its challenge, then a refusal, then closes.
    const buffer = new Uint8Array(4096);
    let total = 0;
    for (;;) {
      const n = await socket.read(buffer.subarray(total));
      if (n === null) break;
      total += n;
    }
    socket.close();
    assert.ok(total > 0);
    assert.equal(relay.aliases().size, 0);
    assert.equal(relay.connections(), 0);
    assert.equal(relay.stats.refused.get("malformed"), 1);
  });
});

Deno.test("relay: alias hijack refused; a standby takes over when the active gateway leaves", async () => {
  await withRelay(async ({ ca, relay }) => {
    const first = await join(
      relay,
      await relayMember(ca.identity, { role: "gateway", relay: "gw-cust-001" }),
      ca.trust,
    );
    const second = await join(
      relay,
      await relayMember(ca.identity, { role: "gateway", relay: "*" }),
      ca.trust,
    );
    const intruder = await join(relay, await relayMember(ca.identity, { role: "edge" }), ca.trust);
    try {
      // Lookup: absent before registration, present after, for any member.
      assert.equal(await lookupAlias(intruder.node, intruder.conn.address, "gw-cust-001"), false);
      assert.equal(await registerAlias(first.node, first.conn.address, "gw-cust-001"), "active");
      assert.equal(await lookupAlias(intruder.node, intruder.conn.address, "gw-cust-001"), true);
      assert.equal(await lookupAlias(intruder.node, intruder.conn.address, "gw-other"), false);
      assert.equal(await registerAlias(second.node, second.conn.address, "gw-cust-001"), "standby");
      await assert.rejects(
        registerAlias(intruder.node, intruder.conn.address, "gw-cust-001"),
        (e: unknown) => e instanceof RelayError && e.code === "alias_refused",
      );
      assert.equal(relay.stats.aliasRefused, 1);
      // Traffic to the alias reaches the active gateway, then the standby.
      const got: string[] = [];
      first.node.register("inbox", () => void got.push("first"));
      second.node.register("inbox", () => void got.push("second"));
      const send = () =>
        intruder.node.route({
          onward: [intruder.conn.address, "forward.gw-cust-001", "inbox"],
          return: [],
          payload: new Uint8Array([1]),
        });
      await send();
      await eventually(() => got.length === 1);
      await first.transport.close();
      await eventually(() =>
        relay.aliases().get("gw-cust-001") !== undefined && relay.connections() === 2
      );
      await send();
      await eventually(() => got.length === 2);
      assert.deepEqual(got, ["first", "second"]);
      await second.transport.close();
      await eventually(() => relay.connections() === 1);
      assert.equal(await lookupAlias(intruder.node, intruder.conn.address, "gw-cust-001"), false);
    } finally {
      await Promise.all([first, second, intruder].map((p) => p.transport.close()));
    }
  });
});

Deno.test("relay: an end-to-end channel through it; it never sees the marker, and its tampering is detected", async () => {
  const marker = "NEXUS-PLAINTEXT-MARKER-7f3a";
  const seen: Uint8Array[] = [];
  let tamper = false;
  await withRelay(async ({ ca, relay, logs }) => {
    const gatewayMember = await member(ca.identity, { role: "gateway", relay: "gw" });
    const edgeMember = await member(ca.identity, { role: "edge" });
    const gwCredential = gatewayMember.credentials()[0];
    const edgeCredential = edgeMember.credentials()[0];
    const gw = await join(relay, {
      identity: gatewayMember.identity,
      credential: { encoded: gwCredential },
    }, ca.trust);
    const edge = await join(relay, {
      identity: edgeMember.identity,
      credential: { encoded: edgeCredential },
    }, ca.trust);
    try {
      await registerAlias(gw.node, gw.conn.address, "gw");
      const received: string[] = [];
      gw.node.register("echo", async (m) => {
        received.push(new TextDecoder().decode(m.payload));
        await gw.node.route({ onward: m.return, return: ["echo"], payload: m.payload });
      });
      const listener = listenSecureChannels({
        node: gw.node,
        address: "api",
        local: gatewayMember,
        policy: { trust: ca.trust, requiredAttributes: { role: "edge" } },
      });
      const channel = await connectSecureChannel({
        node: edge.node,
        route: [edge.conn.address, "forward.gw", "api"],
        local: edgeMember,
        policy: { trust: ca.trust, requiredAttributes: { role: "gateway" } },
      });
      const replies: string[] = [];
      edge.node.register("inbox", (m) => void replies.push(new TextDecoder().decode(m.payload)));
      for (let i = 0; i < 50; i++) {
        await channel.send(["echo"], new TextEncoder().encode(`${marker} ${i}`), ["inbox"]);
      }
      await eventually(() => replies.length === 50);
      const encoder = new TextEncoder();
      const needle = encoder.encode(marker);
      const contains = (hay: Uint8Array) => {
        outer: for (let i = 0; i + needle.length <= hay.length; i++) {
          for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
          return true;
        }
        return false;
      };
      assert.ok(seen.length >= 100, `the relay read ${seen.length} frames`);
      assert.ok(!seen.some(contains), "the relay read the plaintext marker");
      assert.ok(!logs.some((line) => line.includes(marker)), "the relay logged the marker");
      // The relay flips one byte of the next record: the gateway drops it.
      const responder = listener.channels()[0];
      const droppedBefore = responder.stats.dropped;
      tamper = true;
      await channel.send(["echo"], encoder.encode("tampered"), ["inbox"]);
      await eventually(() => responder.stats.dropped === droppedBefore + 1);
      tamper = false;
      await channel.send(["echo"], encoder.encode("after"), ["inbox"]);
      await eventually(() => replies.includes("after"));
      assert.ok(!received.includes("tampered"));
      await channel.close();
    } finally {
      await gw.transport.close();
      await edge.transport.close();
    }
  }, {
    tap: (frame) => void seen.push(frame.slice()),
    tamper: (frame) => {
      if (tamper) {
        frame[frame.length - 1] ^= 0x01;
        tamper = false;
      }
      return frame;
    },
  });
});

Deno.test("relay: malformed frames and random bytes close that connection only", async () => {
  await withRelay(async ({ ca, relay }) => {
    const a = await join(
      relay,
      await relayMember(ca.identity, { role: "gateway", relay: "gw" }),
      ca.trust,
    );
    const b = await join(relay, await relayMember(ca.identity, { role: "edge" }), ca.trust);
    const bad = await join(relay, await relayMember(ca.identity, { role: "edge" }), ca.trust);
    try {
      await registerAlias(a.node, a.conn.address, "gw");
      let got = 0;
      a.node.register("inbox", () => void got++);
      // A valid first address followed by one the gateway's node would
      // refuse: the relay must not pass it on (it would cut the gateway off).
      const poison = encodeRoutedMessage(["forward.gw", "api"], [], new Uint8Array(1));
      poison[poison.indexOf(0x61, 14)] = 0x07;
      const attacker = await join(
        relay,
        await relayMember(ca.identity, { role: "edge" }),
        ca.trust,
      );
      await attacker.conn.connection.send(poison);
      await attacker.conn.connection.closed;
      await attacker.transport.close();
      assert.equal(relay.aliases().get("gw") !== undefined, true);
      // A framed message whose routing header is garbage.
      await bad.conn.connection.send(new Uint8Array([9, 9, 9, 9]));
      await bad.conn.connection.closed;
      // Raw random bytes on an unadmitted socket.
      const raw = await Deno.connect({ hostname: "127.0.0.1", port: relay.addr.port });
      await raw.write(crypto.getRandomValues(new Uint8Array(4096))).catch(() => 0);
      raw.close();
      await b.node.route({
        onward: [b.conn.address, "forward.gw", "inbox"],
        return: [],
        payload: new Uint8Array([1]),
      });
      await eventually(() => got === 1);
      assert.equal(relay.connections(), 2);
    } finally {
      await Promise.all([a, b, bad].map((p) => p.transport.close()));
    }
  });
});

Deno.test("relay: a revocation list cuts a connected member off", async () => {
  await withRelay(async ({ ca, relay }) => {
    const who = await relayMember(ca.identity, { role: "edge" });
    const joined = await join(relay, who, ca.trust);
    try {
      await relay.applyRevocations(
        await createRevocationList(ca.identity, { serial: 1, credentialIds: [who.credential.id] }),
      );
      // Bounded: a relay that kept the connection must fail here, not hang.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const info = await Promise.race([
        joined.conn.connection.closed,
        new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), 5000)),
      ]);
      clearTimeout(timer);
      assert.ok(info !== null, "the revoked member's connection is still open after 5 s");
      assert.ok(info.reason.length > 0);
      await eventually(() => relay.connections() === 0);
    } finally {
      await joined.transport.close();
    }
  });
});

Deno.test("relay process: admission, alias, forwarding, /metrics, SIGTERM", async () => {
  const ca = await authority();
  const dir = `.state/test-relay-${crypto.randomUUID()}`;
  await Deno.mkdir(dir, { recursive: true });
  await writeIdentityFile(`${dir}/authority.json`, ca.identity.history);
  const listen = `127.0.0.1:${freePort()}`;
  await provisionRelay(`${dir}/relay-state`, ca.identity, [listen]);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-q",
      "--no-prompt",
      "-P=relay",
      "relay/main.ts",
      "--state",
      `${dir}/relay-state`,
      "--listen",
      listen,
      "--metrics",
      "127.0.0.1:0",
      "--trust",
      `${dir}/authority.json`,
      "--log-json",
    ],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  try {
    const { port, metrics } = await readBanner(child);
    const fakeRelay = { addr: { port } } as unknown as Relay;
    const gw = await join(
      fakeRelay,
      await relayMember(ca.identity, { role: "gateway", relay: "gw" }),
      ca.trust,
    );
    const edge = await join(fakeRelay, await relayMember(ca.identity, { role: "edge" }), ca.trust);
    await registerAlias(gw.node, gw.conn.address, "gw");
    let got = 0;
    gw.node.register("inbox", () => void got++);
    await edge.node.route({
      onward: [edge.conn.address, "forward.gw", "inbox"],
      return: [],
      payload: new Uint8Array(10),
    });
    await eventually(() => got === 1);
    const scrape = await (await fetch(`http://${metrics}/metrics`)).text();
    assert.match(scrape, /nexus_relay_connections 2/);
    assert.match(scrape, /nexus_relay_aliases 1/);
    assert.match(scrape, /nexus_relay_frames_forwarded_total 1/);
    await gw.transport.close();
    await edge.transport.close();
    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0);
    const log = await stderr;
    for (const line of log.trim().split("\n")) JSON.parse(line); // JSON logs on request
    assert.match(log, /"message":"shutting down"/);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.stdout.cancel().catch(() => {});
    await stderr;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("relay: a member that stops reading is cut off instead of stalling a gateway's other traffic", async () => {
  await withRelay(async ({ ca, relay }) => {
    const gwMember = await relayMember(ca.identity, { role: "gateway", relay: "gw" });
    const gw = await join(relay, gwMember, ca.trust);
    const e1 = await join(relay, await relayMember(ca.identity, { role: "edge" }), ca.trust);
    const quietMember = await relayMember(ca.identity, { role: "edge" });
    try {
      await registerAlias(gw.node, gw.conn.address, "gw");
      // The gateway answers a request with `count` chunks of 64 KiB.
      gw.node.register("api", (m) => {
        const count = new DataView(m.payload.slice().buffer).getUint32(0);
        const back = [...m.return];
        const chunk = new Uint8Array(64 * 1024);
        void (async () => {
          for (let i = 0; i < count; i++) {
            await gw.node.route({ onward: back, return: ["api"], payload: chunk }).catch(() => {});
          }
        })();
      });
      const ask = (count: number) => {
        const body = new Uint8Array(4);
        new DataView(body.buffer).setUint32(0, count);
        return body;
      };
      // A member admitted by hand that asks for 256 MiB and never reads.
      const raw = await connectTcp({ hostname: "127.0.0.1", port: relay.addr.port });
      const frames = raw.frames();
      const memberNonce = crypto.getRandomValues(new Uint8Array(32));
      await raw.send(encodeHello(memberNonce));
      const challenge = decodeChallenge((await frames.next()).value!.slice());
      const relayId = ChangeHistory.decode(challenge.history).identifier;
      await raw.send(
        await encodeAdmit(
          quietMember.identity,
          quietMember.credential.encoded,
          relayId,
          challenge.nonce,
          memberNonce,
        ),
      );
      assert.equal(decodeVerdict((await frames.next()).value!.slice()).admitted, true);
      await frames.return!(undefined);
      await raw.send(encodeRoutedMessage(["forward.gw", "api"], ["sink"], ask(4096)));
      await new Promise((r) => setTimeout(r, 500));
      let got = 0;
      e1.node.register("in", (m) => void (got += m.payload.length));
      await e1.node.route({
        onward: [e1.conn.address, "forward.gw", "api"],
        return: ["in"],
        payload: ask(1),
      });
      await eventually(() => got === 64 * 1024, 8000);
      // The relay cut the member that stopped reading (its own side cannot
      // tell: it reads nothing any more).
      await eventually(() => relay.connections() === 2, 8000);
      raw.close();
    } finally {
      await Promise.all([gw, e1].map((p) => p.transport.close()));
    }
  }, { slowConsumerTimeoutMs: 1000 });
});

Deno.test("relay: a connection takes a fresher credential in place; a credential about someone else is refused", async () => {
  await withRelay(async ({ ca, relay }) => {
    const who = await relayMember(ca.identity, { role: "gateway", relay: "gw" }, {
      ttlSeconds: 60,
    });
    const joined = await join(relay, who, ca.trust);
    try {
      const fresh = await issueCredential(ca.identity, {
        subject: who.identity.identifier,
        subjectKey: who.identity.primaryKey,
        attributes: { role: "gateway", relay: "gw" },
        ttlSeconds: 7200,
      });
      const expiry = await refreshAtRelay(joined.node, joined.conn, who.identity, fresh.encoded);
      assert.equal(expiry, fresh.expiresAt);
      const other = await relayMember(ca.identity, { role: "gateway" });
      await assert.rejects(
        refreshAtRelay(joined.node, joined.conn, who.identity, other.credential.encoded),
        (e: unknown) => e instanceof RelayError && /subject_mismatch/.test(e.message),
      );
      // Still connected and still usable.
      assert.equal(await registerAlias(joined.node, joined.conn.address, "gw"), "active");
    } finally {
      await joined.transport.close();
    }
  });
});

Deno.test("relay: a relay in the middle can neither pass on another relay's challenge nor reuse a member's admission", async () => {
  await withRelay(async ({ ca, relay: honest }) => {
    const gateway = await relayMember(ca.identity, { role: "gateway", relay: "gw" });
    const node = new Node({ name: "gw" });
    const transport = new TcpTransport(node);
    // The middle relay is a member too: a credential for its own address.
    const middleIdentity = await Identity.create(await SoftwareSigner.generate());
    const pipes: { close(): void }[] = [];
    try {
      // (1) It passes the honest relay's challenge on unchanged: the member
      // dialled the middle's address, which the honest relay's credential
      // does not name.
      const passOn = listenTcp({
        hostname: "127.0.0.1",
        port: 0,
        onConnection: async (member) => {
          const onward = await connectTcp({ hostname: "127.0.0.1", port: honest.addr.port });
          pipes.push(onward, member);
          const pump = async (from: typeof member, to: typeof member) => {
            for await (const frame of from.frames()) await to.send(frame.slice());
          };
          void pump(member, onward).catch(() => {});
          void pump(onward, member).catch(() => {});
        },
      });
      await assert.rejects(
        connectRelay({
          transport,
          hostname: "127.0.0.1",
          port: passOn.addr.port,
          identity: gateway.identity,
          credential: gateway.credential.encoded,
          trust: ca.trust,
        }),
        (e: unknown) => e instanceof RelayError && e.code === "untrusted_relay",
      );
      await passOn.close();

      // (2) It challenges the member as itself, with the honest relay's
      // nonce, and hands the member's admission on: the member signed the
      // middle relay's identifier, so the honest relay refuses it.
      let middleCredential: Credential | null = null;
      const middle = listenTcp({
        hostname: "127.0.0.1",
        port: 0,
        onConnection: async (member) => {
          pipes.push(member);
          const fromMember = member.frames();
          const hello = (await fromMember.next()).value!.slice();
          const onward = await connectTcp({ hostname: "127.0.0.1", port: honest.addr.port });
          pipes.push(onward);
          const fromHonest = onward.frames();
          await onward.send(hello);
          const challenge = decodeChallenge((await fromHonest.next()).value!.slice());
          const memberNonce = decodeHello(hello);
          await member.send(
            await encodeChallenge(
              middleIdentity,
              middleCredential!.encoded,
              memberNonce,
              challenge.nonce,
            ),
          );
          await onward.send((await fromMember.next()).value!.slice());
          await member.send((await fromHonest.next()).value!.slice());
        },
      });
      middleCredential = await issueCredential(ca.identity, {
        subject: middleIdentity.identifier,
        subjectKey: middleIdentity.primaryKey,
        attributes: { role: "relay", relay_addresses: [`127.0.0.1:${middle.addr.port}`] },
      });
      await assert.rejects(
        connectRelay({
          transport,
          hostname: "127.0.0.1",
          port: middle.addr.port,
          identity: gateway.identity,
          credential: gateway.credential.encoded,
          trust: ca.trust,
        }),
        (e: unknown) =>
          e instanceof RelayError && e.code === "admission_refused" &&
          /bad_signature/.test(e.message),
      );
      await middle.close();
      assert.equal(honest.stats.refused.get("bad_signature"), 1);
      assert.equal(honest.stats.admitted, 0);
      assert.equal(honest.aliases().size, 0);
    } finally {
      for (const pipe of pipes) pipe.close();
      await transport.close();
    }
  });
});

Deno.test("relay: an admission signed over anything but this relay's nonces is refused as bad_signature", async () => {
  await withRelay(async ({ ca, relay }) => {
    const who = await relayMember(ca.identity, { role: "edge" });
    const raw = await connectTcp({ hostname: "127.0.0.1", port: relay.addr.port });
    try {
      const frames = raw.frames();
      const memberNonce = crypto.getRandomValues(new Uint8Array(32));
      await raw.send(encodeHello(memberNonce));
      const challenge = decodeChallenge((await frames.next()).value!.slice());
      const relayId = ChangeHistory.decode(challenge.history).identifier;
      // A valid credential, a signature by the right key, over another nonce.
      await raw.send(
        await encodeAdmit(
          who.identity,
          who.credential.encoded,
          relayId,
          crypto.getRandomValues(new Uint8Array(32)),
          memberNonce,
        ),
      );
      const verdict = decodeVerdict((await frames.next()).value!.slice());
      assert.equal(verdict.admitted, false);
      assert.equal(!verdict.admitted && verdict.code, "bad_signature");
      assert.equal(relay.stats.refused.get("bad_signature"), 1);
      assert.equal(relay.connections(), 0);
    } finally {
      raw.close();
    }
  });
});

Deno.test("relay: a refresh needs the member's signature for this connection, and never grants alias rights", async () => {
  await withRelay(async ({ ca, relay }) => {
    const who = await relayMember(ca.identity, { role: "edge" });
    const joined = await join(relay, who, ca.trust);
    try {
      const gatewayLike = await issueCredential(ca.identity, {
        subject: who.identity.identifier,
        subjectKey: who.identity.primaryKey,
        attributes: { role: "gateway", relay: "gw" },
      });
      // Signed by another key: refused.
      const stranger = await Identity.create(await SoftwareSigner.generate());
      await assert.rejects(
        refreshAtRelay(joined.node, joined.conn, stranger, gatewayLike.encoded),
        (e: unknown) => e instanceof RelayError && /bad_signature/.test(e.message),
      );
      // Signed by the member, bound to another connection's nonce: refused.
      const elsewhere = { ...joined.conn, relayNonce: crypto.getRandomValues(new Uint8Array(32)) };
      await assert.rejects(
        refreshAtRelay(joined.node, elsewhere, who.identity, gatewayLike.encoded),
        (e: unknown) => e instanceof RelayError && /bad_signature/.test(e.message),
      );
      // Properly signed: taken (expiry and revocation follow it), but the
      // alias rights stay those of the admission credential.
      assert.equal(
        await refreshAtRelay(joined.node, joined.conn, who.identity, gatewayLike.encoded),
        gatewayLike.expiresAt,
      );
      await assert.rejects(
        registerAlias(joined.node, joined.conn.address, "gw"),
        (e: unknown) => e instanceof RelayError && e.code === "alias_refused",
      );
      assert.equal(relay.aliases().size, 0);
    } finally {
      await joined.transport.close();
    }
  });
});

Deno.test("relay: admissions in progress are capped per source; the extra ones are told at once", async () => {
  await withRelay(async ({ relay }) => {
    // Three connections that never say hello hold the source's slots.
    const silent = await Promise.all(
      [0, 1, 2].map(() => connectTcp({ hostname: "127.0.0.1", port: relay.addr.port })),
    );
    try {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const extra = await connectTcp({ hostname: "127.0.0.1", port: relay.addr.port });
      const frames = extra.frames();
      const first = await frames.next();
      const verdict = decodeVerdict(first.value!.slice());
      assert.equal(!verdict.admitted && verdict.code, "too_many_pending");
      assert.equal(relay.stats.refused.get("too_many_pending"), 1);
      extra.close();
    } finally {
      for (const conn of silent) conn.close();
    }
  }, { maxPendingPerSource: 3 });
});

Deno.test("relay: before admission a frame header larger than an admission closes the connection at once", async () => {
  await withRelay(async ({ relay }) => {
    const socket = await Deno.connect({ hostname: "127.0.0.1", port: relay.addr.port });
    try {
      // The version byte, then the header of a 100 KiB frame (an admission is at most 48 KiB).
      const header = new Uint8Array(5);
      header[0] = 1;
      new DataView(header.buffer).setUint32(1, 100 * 1024);
      await socket.write(header);
      const started = performance.now();
      const buffer = new Uint8Array(1024);
      for (;;) {
        const n = await socket.read(buffer).catch(() => null);
        if (n === null) break;
      }
      // Closed well before the admission timeout (5 s here) would have.
      assert.ok(performance.now() - started < 2000, "the relay waited for the frame");
    } finally {
      socket.close();
    }
  });
});

Deno.test("relay: revoking the admission credential ends the connection even after a refresh", async () => {
  await withRelay(async ({ ca, relay }) => {
    const who = await relayMember(ca.identity, { role: "gateway", relay: "gw" });
    const joined = await join(relay, who, ca.trust);
    try {
      assert.equal(await registerAlias(joined.node, joined.conn.address, "gw"), "active");
      const fresh = await issueCredential(ca.identity, {
        subject: who.identity.identifier,
        subjectKey: who.identity.primaryKey,
        attributes: { role: "gateway", relay: "gw" },
      });
      await refreshAtRelay(joined.node, joined.conn, who.identity, fresh.encoded);
      // Only the credential it was admitted with (and whose alias rights it holds).
      await relay.applyRevocations(
        await createRevocationList(ca.identity, { serial: 1, credentialIds: [who.credential.id] }),
      );
      await eventually(() => relay.connections() === 0, 5000);
      assert.equal(relay.aliases().size, 0);
    } finally {
      await joined.transport.close();
    }
  });
});
