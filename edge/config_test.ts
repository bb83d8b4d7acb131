import assert from "node:assert/strict";
import {
  checkEdgeConfig,
  DEFAULT_INLETS,
  edgePermissionFlags,
  edgePermissions,
  parseInletFlag,
  readEdgeSecrets,
} from "./config.ts";

const LICENSE = "nxl_" + "a".repeat(32);

function base(): Record<string, unknown> {
  return {
    stateDir: "/var/lib/nexus-edge",
    authority: { identityFile: "/etc/nexus/authority.identity.json", address: "auth:4100" },
    relays: ["relay-1:4000", "relay-2:4000"],
    gateway: { alias: "gw-cust-001", customerId: "cust_001" },
  };
}

Deno.test("edge config: defaults filled in", () => {
  const config = checkEdgeConfig(base());
  assert.deepEqual(config.inlets, DEFAULT_INLETS);
  assert.equal(config.ops, "127.0.0.1:9431");
  assert.equal(config.licenseHeader, "X-License-Id");
  assert.equal(config.connectWaitMs, 10_000);
});

Deno.test("edge config: each mistake names its field; secrets are never quoted", () => {
  const cases: [string, (c: Record<string, unknown>) => void, RegExp][] = [
    ["not an object", (c) => Object.assign(c, { relays: "x" }), /"relays" must list/],
    ["no relays", (c) => c.relays = [], /"relays" must list one relay or more/],
    ["bad relay", (c) => c.relays = ["relay-1"], /"relays\[0\]" must be HOST:PORT/],
    ["no state", (c) => delete c.stateDir, /"stateDir" must be a non-empty string/],
    ["no authority", (c) => delete c.authority, /"authority" is required/],
    ["bad authority", (c) => c.authority = { identityFile: "f" }, /"authority.address"/],
    ["no gateway", (c) => delete c.gateway, /"gateway" is required/],
    [
      "bad pin",
      (c) => c.gateway = { alias: "a", customerId: "c", identifier: "Ixyz" },
      /"gateway.identifier" must be I followed by 64 hex digits/,
    ],
    ["unknown key", (c) => c.relay = ["x:1"], /"relay" is not a known setting/],
    [
      "http without license",
      (c) => {
        delete c.license;
        c.inlets = [{ listen: "127.0.0.1:1", outlet: "o", mode: "http" }];
      },
      /"inlets\[0\].mode" is "http".*"license" is needed/,
    ],
    [
      "bad mode",
      (c) => c.inlets = [{ listen: "127.0.0.1:1", outlet: "o", mode: "udp" }],
      /"inlets\[0\].mode" must be "tcp" or "http"/,
    ],
    [
      "bad outlet",
      (c) => c.inlets = [{ listen: "127.0.0.1:1", outlet: "a b" }],
      /"inlets\[0\].outlet" must be a name/,
    ],
    [
      "repeated listen",
      (c) =>
        c.inlets = [{ listen: "127.0.0.1:1", outlet: "a" }, { listen: "127.0.0.1:1", outlet: "b" }],
      /"inlets\[1\].listen" repeats 127.0.0.1:1/,
    ],
    [
      "tunnels on tcp",
      (c) => c.inlets = [{ listen: "127.0.0.1:1", outlet: "o", tunnels: true }],
      /"inlets\[0\].tunnels" applies to "http" inlets only/,
    ],
    ["bad ops", (c) => c.ops = "nowhere", /"ops" must be HOST:PORT/],
    ["bad header", (c) => c.licenseHeader = "X License", /"licenseHeader" must be an HTTP header/],
    ["bad wait", (c) => c.connectWaitMs = 5, /"connectWaitMs" must be a whole number/],
    ["ticket not a string", (c) => c.ticket = 42, /"ticket" must be a non-empty string/],
  ];
  for (const [what, change, pattern] of cases) {
    const config = { ...base(), license: LICENSE };
    change(config);
    assert.throws(() => checkEdgeConfig(config), (error: unknown) => {
      assert.ok(error instanceof TypeError, what);
      assert.match(error.message, pattern, what);
      assert.ok(!error.message.includes(LICENSE), `${what}: the license key leaked`);
      return true;
    });
  }
  assert.throws(() => checkEdgeConfig([]), /expected a JSON object/);
  assert.throws(() => checkEdgeConfig(null), /expected a JSON object/);
});

Deno.test("edge config: --inlet flags", () => {
  assert.deepEqual(parseInletFlag("127.0.0.1:8151=context"), {
    listen: "127.0.0.1:8151",
    outlet: "context",
    mode: "tcp",
  });
  assert.deepEqual(parseInletFlag("[::1]:8152=orchestrator/http"), {
    listen: "[::1]:8152",
    outlet: "orchestrator",
    mode: "http",
  });
  assert.deepEqual(parseInletFlag("127.0.0.1:8153=orchestrator:api/http"), {
    listen: "127.0.0.1:8153",
    service: "orchestrator",
    outlet: "api",
    mode: "http",
  });
  for (
    const bad of ["127.0.0.1:8151", "=context", "127.0.0.1:1=a/udp", "127.0.0.1:1=a b", "1:2=:x"]
  ) {
    assert.throws(() => parseInletFlag(bad), TypeError, bad);
  }
});

Deno.test("edge config: the permission flags name exactly what the config uses", () => {
  const config = checkEdgeConfig({
    ...base(),
    license: LICENSE,
    inlets: [
      { listen: "127.0.0.1:8151", outlet: "context" },
      { listen: "127.0.0.1:8152", outlet: "orchestrator", mode: "http" },
    ],
  });
  assert.deepEqual(edgePermissions(config, "/etc/nexus/edge.json"), {
    net: [
      "relay-1:4000",
      "relay-2:4000",
      "auth:4100",
      "127.0.0.1:8151",
      "127.0.0.1:8152",
      "127.0.0.1:9431",
    ],
    read: ["/var/lib/nexus-edge", "/etc/nexus/authority.identity.json", "/etc/nexus/edge.json"],
    write: ["/var/lib/nexus-edge"],
    // The record cipher's library (cipher.backend "auto"): nothing when it is "webcrypto".
    ffi: ["/usr/lib/x86_64-linux-gnu/libcrypto.so.3"],
  });
  assert.deepEqual(
    edgePermissions(checkEdgeConfig({ ...base(), cipher: { backend: "webcrypto" } })).ffi,
    [],
  );
  const flags = edgePermissionFlags(checkEdgeConfig({ ...base(), ops: "off" }));
  assert.equal(
    flags[0],
    "--allow-net=relay-1:4000,relay-2:4000,auth:4100,127.0.0.1:8151",
  );
  assert.deepEqual(flags.map((f) => f.split("=")[0]), [
    "--allow-net",
    "--allow-read",
    "--allow-write",
    "--allow-ffi",
  ]);
});

Deno.test("edge config: ticket and license from files; a world-readable license or a shared ticket file is refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/license`, `${LICENSE}\n`, { mode: 0o600 });
    await Deno.writeTextFile(`${dir}/ticket`, "nxt_ticket\n", { mode: 0o600 });
    const config = checkEdgeConfig({
      ...base(),
      licenseFile: `${dir}/license`,
      ticketFile: `${dir}/ticket`,
      inlets: [{ listen: "127.0.0.1:8152", outlet: "orchestrator", mode: "http" }],
    });
    assert.deepEqual(edgePermissions(config).read.slice(-2), [`${dir}/ticket`, `${dir}/license`]);
    const resolved = await readEdgeSecrets(config);
    assert.equal(resolved.license, LICENSE);
    assert.equal(resolved.ticket, "nxt_ticket");

    // A ticket enrolls whoever redeems it first: no access but the owner's.
    await Deno.chmod(`${dir}/ticket`, 0o640);
    await assert.rejects(readEdgeSecrets(config), /"ticketFile" names .*mode 0640.*chmod 600/);
    await Deno.chmod(`${dir}/ticket`, 0o600);

    await Deno.chmod(`${dir}/license`, 0o644);
    await assert.rejects(readEdgeSecrets(config), (error: unknown) => {
      assert.ok(error instanceof TypeError);
      assert.match(error.message, /"licenseFile" names .*which others may read/);
      assert.ok(!error.message.includes(LICENSE));
      return true;
    });
    await assert.rejects(
      readEdgeSecrets(checkEdgeConfig({ ...base(), licenseFile: `${dir}/absent` })),
      /"licenseFile" names .*absent, which cannot be read: NotFound/,
    );
    await Deno.writeTextFile(`${dir}/empty`, "\n", { mode: 0o600 });
    await assert.rejects(
      readEdgeSecrets(checkEdgeConfig({ ...base(), licenseFile: `${dir}/empty` })),
      /which is empty/,
    );
    assert.throws(
      () => checkEdgeConfig({ ...base(), license: LICENSE, licenseFile: `${dir}/license` }),
      /"licenseFile" and license both given/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("edge config: an end-to-end inlet names a service; its outlet defaults to the service's name", () => {
  const config = checkEdgeConfig({
    ...base(),
    inlets: [
      { listen: "127.0.0.1:8152", service: "orchestrator" },
      { listen: "127.0.0.1:8153", service: "orchestrator", outlet: "db" },
      { listen: "127.0.0.1:8154", outlet: "context" },
    ],
  });
  assert.deepEqual(config.inlets.map((i) => [i.service, i.outlet]), [
    ["orchestrator", "orchestrator"],
    ["orchestrator", "db"],
    [undefined, "context"],
  ]);
  assert.throws(
    () => checkEdgeConfig({ ...base(), inlets: [{ listen: "127.0.0.1:8152" }] }),
    /inlets\[0\]\.outlet.*is needed/,
  );
});
