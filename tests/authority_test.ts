/**
 * The credential authority as real processes, each test with a fresh
 * SoftHSM2 token: ceremony, operator-made keys, HSM failures, tickets,
 * revocation pushed over a secure channel, audit tampering, rotation.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { ed25519 } from "@noble/curves/ed25519.js";
import { AuthorityClient } from "../src/authority_client/authority_client.ts";
import { createChannelIdentity } from "../src/channel/channel_identity.ts";
import { verifyCredential } from "../src/credential/credential.ts";
import { TrustStore } from "../src/credential/trust_store.ts";
import { DOMAIN, signedMessage } from "../src/encoding/domain.ts";
import { AuthorityError } from "../src/errors.ts";
import { readIdentityFile } from "../src/identity/identity_file.ts";
import { Identity } from "../src/identity/identity.ts";
import { SoftwareSigner } from "../src/identity/software_signer.ts";
import { Node } from "../src/routing/node.ts";
import { TcpTransport } from "../src/transport/tcp_transport.ts";
import { eventually } from "../src/testdata/channel_fixtures.ts";
import {
  authorityClientAt,
  type AuthorityFixture,
  authorityFixture,
  statePath,
} from "../scripts/support/authority_process.ts";

async function withAuthority(fn: (fixture: AuthorityFixture) => Promise<void>): Promise<void> {
  const fixture = await authorityFixture();
  try {
    await fn(fixture);
  } finally {
    await fixture.remove();
  }
}

async function init(fixture: AuthorityFixture): Promise<string> {
  const out = await fixture.run(["init", "--json"]);
  assert.equal(out.code, 0, out.stderr);
  return JSON.parse(out.stdout).identifier;
}

async function ticket(fixture: AuthorityFixture, ...args: string[]): Promise<string> {
  const out = await fixture.run(["ticket", "create", "--json", ...args]);
  assert.equal(out.code, 0, out.stderr);
  return JSON.parse(out.stdout).ticket;
}

/** A member-to-be: its own identity, a node and a client connected to the authority. */
async function memberClient(fixture: AuthorityFixture, port: number) {
  const identity = await Identity.create(await SoftwareSigner.generate());
  return { identity, ...await clientFor(fixture, port, identity) };
}

/** A client for `identity` (fresh node and connection) at the authority on `port`. */
async function clientFor(fixture: AuthorityFixture, port: number, identity: Identity) {
  const trust = new TrustStore([
    await readIdentityFile(statePath(fixture, "authority.identity.json")),
  ]);
  return await authorityClientAt(port, trust, identity);
}

Deno.test("ceremony: init in the HSM, show, and a credential that verifies with @noble and the project", async () => {
  await withAuthority(async (fixture) => {
    const identifier = await init(fixture);
    assert.match(identifier, /^I[0-9a-f]{64}$/);
    const show = await fixture.run(["show", "--json"]);
    assert.equal(show.code, 0, show.stderr);
    const described = JSON.parse(show.stdout);
    assert.equal(described.identifier, identifier);
    assert.equal(described.keys.length, 1);
    assert.equal(described.keys[0].extractable, false);
    assert.equal(described.keys[0].sensitive, true);
    assert.equal(described.keys[0].valueReadable, false);
    // A second init refuses and leaves the state as it was.
    const again = await fixture.run(["init"]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /already holds an authority/);

    const service = await fixture.serve();
    const member = await memberClient(fixture, service.port);
    try {
      const secret = await ticket(
        fixture,
        "--attr",
        "customer_id=cust_001",
        "--attr",
        "role=edge",
        "--ttl",
        "10m",
      );
      const credential = await member.client.enroll({ ticket: secret });
      assert.equal(credential.subject, member.identity.identifier);
      assert.equal(credential.attributes.customer_id, "cust_001");
      assert.equal(credential.expiresAt - credential.createdAt, 3600);
      const anchor = await readIdentityFile(statePath(fixture, "authority.identity.json"));
      assert.ok(ed25519.verify(
        credential.signature,
        signedMessage(DOMAIN.credential, credential.data),
        anchor.primaryKey,
      ));
      await verifyCredential(credential.encoded, {
        trust: new TrustStore([anchor]),
        subject: member.identity.identifier,
      });
    } finally {
      await member.close();
      await service.stop();
    }
  });
});

Deno.test("ceremony: a key made by pkcs11-tool is used by the authority", async () => {
  await withAuthority(async (fixture) => {
    const tool = await new Deno.Command("pkcs11-tool", {
      args: [
        "--module",
        fixture.token.modulePath,
        "--token-label",
        fixture.token.tokenLabel,
        "--login",
        "--pin",
        fixture.token.pin,
        "--keypairgen",
        "--key-type",
        "EC:edwards25519",
        "--label",
        "operator-key",
        "--id",
        "42",
      ],
      env: { SOFTHSM2_CONF: fixture.token.conf },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(tool.code, 0, new TextDecoder().decode(tool.stderr));
    const out = await fixture.run(["init", "--existing-key", "operator-key", "--json"]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(JSON.parse(out.stdout).key.label, "operator-key");
    const service = await fixture.serve();
    const member = await memberClient(fixture, service.port);
    try {
      const credential = await member.client.enroll({
        ticket: await ticket(fixture, "--attr", "role=edge"),
      });
      assert.equal(credential.subject, member.identity.identifier);
    } finally {
      await member.close();
      await service.stop();
    }
  });
});

Deno.test("HSM failures: clear message, non-zero exit, nothing written", async (t) => {
  await withAuthority(async (fixture) => {
    const cases: [string, string[], { pin?: string }, RegExp][] = [
      ["wrong PIN", [], { pin: "0000-wrong" }, /wrong PIN.*not retried.*\[wrong_pin\]/],
      [
        "missing token",
        ["--hsm-token", "no-such-token"],
        {},
        /no token labelled "no-such-token".*\[token_missing\]/,
      ],
      [
        "missing module",
        ["--hsm-module", "/usr/lib/softhsm/missing.so"],
        {},
        /cannot load the PKCS#11 module.*\[module_missing\]/,
      ],
      [
        "missing key",
        ["--existing-key", "no-such-key"],
        {},
        /no Ed25519 private key.*\[key_missing\]/,
      ],
    ];
    for (const [name, extra, options, expected] of cases) {
      await t.step(name, async () => {
        const out = await fixture.run(["init", ...extra], options);
        assert.notEqual(out.code, 0);
        assert.match(out.stderr, expected);
        assert.ok(!out.stderr.includes(fixture.token.pin), "the PIN appears in the error");
        await assert.rejects(
          Deno.stat(statePath(fixture, "authority.history")),
          Deno.errors.NotFound,
        );
      });
    }
    await t.step("a PIN on the command line is refused", async () => {
      const out = await fixture.run(["init", "--pin", fixture.token.pin]);
      assert.equal(out.code, 2);
      assert.match(out.stderr, /never taken from the command line/);
    });
  });
});

Deno.test("tickets: once only, expiry, tampering", async () => {
  await withAuthority(async (fixture) => {
    await init(fixture);
    const service = await fixture.serve();
    const first = await memberClient(fixture, service.port);
    const second = await memberClient(fixture, service.port);
    try {
      const secret = await ticket(fixture, "--attr", "role=edge");
      await first.client.enroll({ ticket: secret });
      const expectCode = async (promise: Promise<unknown>, code: string) =>
        await assert.rejects(
          promise,
          (e: unknown) => e instanceof AuthorityError && e.code === code,
        );
      await expectCode(second.client.enroll({ ticket: secret }), "ticket_used");
      const tampered = secret.slice(0, -2) + (secret.endsWith("AA") ? "BB" : "AA");
      await expectCode(second.client.enroll({ ticket: tampered }), "ticket_unknown");
      const shortLived = await ticket(fixture, "--attr", "role=edge", "--ttl", "1s");
      await new Promise((r) => setTimeout(r, 2100));
      await expectCode(second.client.enroll({ ticket: shortLived }), "ticket_expired");
      // Not a member yet: no credential.
      await expectCode(second.client.credential(), "not_member");
    } finally {
      await first.close();
      await second.close();
      await service.stop();
    }
  });
});

Deno.test("revocation: refresh refused, the list reaches a subscriber over a secure channel", async () => {
  await withAuthority(async (fixture) => {
    await init(fixture);
    const service = await fixture.serve();
    const member = await memberClient(fixture, service.port);
    const watcher = await memberClient(fixture, service.port);
    try {
      const credential = await member.client.enroll({
        ticket: await ticket(fixture, "--attr", "role=edge"),
      });
      await watcher.client.enroll({ ticket: await ticket(fixture, "--attr", "role=gateway") });
      const lists: { serial: number; identifiers: readonly string[] }[] = [];
      await watcher.client.subscribe((list) => void lists.push(list));
      // Refresh works while listed.
      const refreshed = await member.client.credential();
      assert.notEqual(refreshed.id, credential.id);
      const revoked = await fixture.run(["revoke", member.identity.identifier]);
      assert.equal(revoked.code, 0, revoked.stderr);
      await eventually(() => lists.some((l) => l.identifiers.includes(member.identity.identifier)));
      assert.equal(lists.at(-1)!.serial, 1);
      // The authority cut the revoked member's channel; a new one is refused a credential.
      await member.client.channel.closed;
      await member.close();
      const again = await memberClient(fixture, service.port);
      try {
        // A new identity is not a member; the revoked one cannot refresh.
        await assert.rejects(
          again.client.credential(),
          (e: unknown) => e instanceof AuthorityError && e.code === "not_member",
        );
      } finally {
        await again.close();
      }
    } finally {
      await member.close();
      await watcher.close();
      await service.stop();
    }
  });
});

Deno.test("audit: the chain verifies, and editing any row makes verify fail", async () => {
  await withAuthority(async (fixture) => {
    await init(fixture);
    await ticket(fixture, "--attr", "role=edge");
    await ticket(fixture, "--attr", "role=gateway");
    const ok = await fixture.run(["audit", "verify", "--json"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(JSON.parse(ok.stdout).entries >= 3);
    const db = new DatabaseSync(statePath(fixture, "authority.db"));
    const table =
      (db.prepare("select name from sqlite_master where type='table' and name like '%audit%'")
        .all()[0] as { name: string }).name;
    const columns = (db.prepare(`pragma table_info(${table})`).all() as { name: string }[]).map((
      c,
    ) => c.name);
    for (const column of columns.filter((c) => c !== "seq")) {
      const row = db.prepare(`select ${column} as v from ${table} where seq = 2`).get() as {
        v: string | number;
      };
      const edited = typeof row.v === "number"
        ? row.v + 1
        : row.v.replace(/.$/, (c) => c === "0" ? "1" : "0");
      db.prepare(`update ${table} set ${column} = ? where seq = 2`).run(edited);
      const broken = await fixture.run(["audit", "verify"]);
      assert.equal(broken.code, 1, `editing ${column} went unnoticed`);
      assert.match(broken.stdout, /BROKEN/);
      db.prepare(`update ${table} set ${column} = ? where seq = 2`).run(row.v);
    }
    // Deleting a row is noticed too.
    const saved = db.prepare(`select * from ${table} where seq = 2`).get() as Record<
      string,
      string | number
    >;
    db.prepare(`delete from ${table} where seq = 2`).run();
    assert.equal((await fixture.run(["audit", "verify"])).code, 1, "deleting a row went unnoticed");
    db.prepare(
      `insert into ${table} (${Object.keys(saved).join(",")}) values (${
        Object.keys(saved).map(() => "?").join(",")
      })`,
    ).run(...Object.values(saved));
    db.close();
    assert.equal((await fixture.run(["audit", "verify"])).code, 0);
  });
});

Deno.test("rotation: credentials after rotation verify for a verifier that started with the old identity file", async () => {
  await withAuthority(async (fixture) => {
    await init(fixture);
    const oldAnchor = await readIdentityFile(statePath(fixture, "authority.identity.json"));
    const rotated = await fixture.run(["rotate", "--json"]);
    assert.equal(rotated.code, 0, rotated.stderr);
    const show = JSON.parse((await fixture.run(["show", "--json"])).stdout);
    assert.equal(show.keys.length, 2);
    assert.equal(show.keys[1].current, true);
    const service = await fixture.serve();
    // The member's client starts with the OLD identity file.
    const trust = new TrustStore([oldAnchor]);
    const identity = await Identity.create(await SoftwareSigner.generate());
    const node = new Node();
    const transport = new TcpTransport(node);
    try {
      const conn = await transport.connect({ hostname: "127.0.0.1", port: service.port });
      const client = await AuthorityClient.connect({
        node,
        route: [conn.address],
        local: await createChannelIdentity(identity),
        trust,
      });
      const credential = await client.enroll({
        ticket: await ticket(fixture, "--attr", "role=edge"),
      });
      // A verifier that has only the old history refuses; after the new one, it accepts.
      await assert.rejects(verifyCredential(credential, { trust: new TrustStore([oldAnchor]) }));
      const updated = new TrustStore([oldAnchor]);
      await updated.update(trust.get(oldAnchor.identifier)!.history);
      await verifyCredential(credential, { trust: updated, subject: identity.identifier });
      await client.close();
    } finally {
      await transport.close();
      await service.stop();
    }
  });
});

Deno.test("license keys enroll members of a customer; /metrics and /healthz answer", async () => {
  await withAuthority(async (fixture) => {
    await init(fixture);
    const created = await fixture.run([
      "license",
      "create",
      "--customer",
      "cust_042",
      "--tier",
      "enterprise",
      "--json",
    ]);
    assert.equal(created.code, 0, created.stderr);
    const license = JSON.parse(created.stdout).license as string;
    assert.match(license, /^nxl_/);
    const service = await fixture.serve();
    const first = await memberClient(fixture, service.port);
    const second = await memberClient(fixture, service.port);
    try {
      // A license is not single use: two edges of the customer enroll with it.
      for (const member of [first, second]) {
        const credential = await member.client.enroll({ license });
        assert.equal(credential.attributes.customer_id, "cust_042");
        assert.equal(credential.attributes.tier, "enterprise");
        assert.equal(credential.attributes.role, "edge");
      }
      await assert.rejects(
        first.client.enroll({ license: "nxl_" + "A".repeat(32) }),
        (e: unknown) => e instanceof AuthorityError && e.code === "license_unknown",
      );
      const curl = async (path: string) => {
        const out = await new Deno.Command("curl", {
          args: ["-sS", "-w", "\n%{http_code}", `http://${service.metrics}${path}`],
          stdout: "piped",
        }).output();
        return new TextDecoder().decode(out.stdout);
      };
      const metrics = await curl("/metrics");
      assert.match(metrics, /nexus_authority_enrollments_total 2/);
      assert.match(metrics, /nexus_authority_credentials_total 2/);
      assert.match(metrics, /nexus_authority_channels 2/);
      assert.match(metrics, /\n200$/);
      assert.match(await curl("/healthz"), /^ok\n\n200$/);
    } finally {
      await first.close();
      await second.close();
      await service.stop();
    }
  });
});

Deno.test("rotation of a member's key: the rotated-away key gets no credential, nor does a stranger's subscribe", async () => {
  await withAuthority(async (fixture) => {
    await init(fixture);
    const service = await fixture.serve();
    const old = await Identity.create(await SoftwareSigner.generate());
    const first = await clientFor(fixture, service.port, old);
    try {
      await first.client.enroll({ ticket: await ticket(fixture, "--attr", "role=edge") });
    } finally {
      await first.close();
    }
    // The member rotates; its new history extends the old one.
    const rotated = await old.rotate(await SoftwareSigner.generate());
    const next = await clientFor(fixture, service.port, rotated);
    try {
      const credential = await next.client.credential();
      assert.deepEqual(credential.subjectKey, rotated.primaryKey);
    } finally {
      await next.close();
    }
    // Whoever still holds the old key presents the old prefix: refused.
    const stale = await clientFor(fixture, service.port, old);
    try {
      await assert.rejects(
        stale.client.credential(),
        (e: unknown) => e instanceof AuthorityError && e.code === "stale_identity",
      );
      await assert.rejects(
        stale.client.subscribe(() => {}),
        (e: unknown) => e instanceof AuthorityError && e.code === "stale_identity",
      );
      // Nor by enrolling again (a fresh ticket with the same attributes).
      await assert.rejects(
        stale.client.enroll({ ticket: await ticket(fixture, "--attr", "role=edge") }),
        (e: unknown) => e instanceof AuthorityError && e.code === "stale_identity",
      );
    } finally {
      await stale.close();
    }
    // A stranger may not subscribe at all.
    const stranger = await clientFor(
      fixture,
      service.port,
      await Identity.create(await SoftwareSigner.generate()),
    );
    try {
      await assert.rejects(
        stranger.client.subscribe(() => {}),
        (e: unknown) => e instanceof AuthorityError && e.code === "not_member",
      );
    } finally {
      await stranger.close();
      await service.stop();
    }
  });
});
