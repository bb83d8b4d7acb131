/**
 * `deno task bench:compare` as a real process under its permission set,
 * with tiny parameters: the Debian packages it needs are installed when
 * missing (as root), the backends, the stunnel chain, the three Deno
 * forwarders and the whole deployment (authority, relay, agent, gateway,
 * edge) start, every path
 * carries every workload, and the tables, docs/benchmarks.md and
 * docs/benchmarks.svg come out (here into a temporary directory, not
 * docs/). A smoke run only: no figure is checked against another (a
 * benchmark is never a timed assertion). The forwarder of the Deno path
 * (scripts/support/plain_forwarder.ts) is also tried alone, in this
 * process.
 */
import assert from "node:assert/strict";
import { runForwarder } from "../scripts/support/plain_forwarder.ts";

const root = new URL("..", import.meta.url).pathname;

/**
 * Throws unless `text` is well-formed XML as far as an SVG written by hand
 * can go wrong: one root element, every tag closed in order, attributes
 * quoted and unique, text and attribute values without a raw `<` or a
 * bare `&`.
 */
function assertWellFormedXml(text: string): void {
  const body = text.replace(/^<\?xml[^?]*\?>\s*/, "").replace(/<!--[\s\S]*?-->/g, "");
  const entity = /&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/;
  const tag = /<(\/?)([A-Za-z_][\w.:-]*)((?:\s+[A-Za-z_][\w.:-]*\s*=\s*"[^"<]*")*)\s*(\/?)>/y;
  const open: string[] = [];
  let roots = 0;
  let at = 0;
  while (at < body.length) {
    const next = body.indexOf("<", at);
    const text = body.slice(at, next === -1 ? body.length : next);
    assert.ok(!entity.test(text), `a bare & in text near ${JSON.stringify(text.slice(0, 40))}`);
    if (open.length === 0) assert.equal(text.trim(), "", "text outside the root element");
    if (next === -1) break;
    tag.lastIndex = next;
    const match = tag.exec(body);
    assert.ok(match !== null, `malformed tag at ${JSON.stringify(body.slice(next, next + 60))}`);
    const [whole, closing, name, attributes, selfClosing] = match;
    const names = [...attributes.matchAll(/([A-Za-z_][\w.:-]*)\s*=\s*"([^"]*)"/g)].map((m) => {
      assert.ok(!entity.test(m[2]), `a bare & in ${name}'s ${m[1]}`);
      return m[1];
    });
    assert.equal(new Set(names).size, names.length, `an attribute twice in <${name}>`);
    if (closing) {
      assert.equal(open.pop(), name, `</${name}> closes something else`);
    } else {
      if (open.length === 0) roots++;
      if (!selfClosing) open.push(name);
    }
    at = next + whole.length;
  }
  assert.deepEqual(open, [], "unclosed elements");
  assert.equal(roots, 1, "one root element");
}

Deno.test("the XML check refuses what is not well-formed", () => {
  assertWellFormedXml(
    `<?xml version="1.0"?>\n<svg a="1"><g><text>a &amp; b</text></g><rect/></svg>`,
  );
  for (
    const bad of [
      "<svg><g></svg>",
      "<svg></svg><svg></svg>",
      "<svg><text>a & b</text></svg>",
      '<svg a="1" a="2"></svg>',
      "<svg a=1></svg>",
      "<svg><g></svg></g>",
    ]
  ) {
    assert.throws(() => assertWellFormedXml(bad), Error, bad);
  }
});

/** All of `conn` until its end. */
async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(16 * 1024);
  for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
    chunks.push(buffer.slice(0, n));
  }
  const all = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.length;
  }
  return all;
}

Deno.test("the plain forwarder carries bytes both ways, passes half-closes on, stops on abort", async () => {
  // A backend that reads until the client's end, then sends it all back and closes.
  const backend = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await backend.accept();
    try {
      const got = await readAll(conn);
      for (let at = 0; at < got.length;) at += await conn.write(got.subarray(at));
    } finally {
      conn.close();
    }
  })();
  const controller = new AbortController();
  let port = 0;
  const running = runForwarder(
    { listenPort: 0, targetHost: "127.0.0.1", targetPort: backend.addr.port },
    { signal: controller.signal, onListen: (addr) => port = addr.port },
  );
  try {
    assert.ok(port > 0, "onListen with the port chosen");
    // More than the forwarder's 64 KiB buffer, so that it takes several reads and writes.
    const sent = crypto.getRandomValues(new Uint8Array(60_000));
    const message = new Uint8Array(5 * sent.length);
    for (let i = 0; i < 5; i++) message.set(sent, i * sent.length);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const echoed = readAll(conn);
      for (let at = 0; at < message.length;) at += await conn.write(message.subarray(at));
      await conn.closeWrite();
      assert.deepEqual(await echoed, message);
    } finally {
      conn.close();
    }
    await served;
  } finally {
    controller.abort();
    await running;
    backend.close();
  }
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }), "the listener is closed");
});

Deno.test("bench:compare runs with tiny parameters: tables, docs and a well-formed SVG", async () => {
  const docs = await Deno.makeTempDir({ prefix: "nexus-bench-compare-test-" });
  try {
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-q",
        "--no-prompt",
        "-P=bench_compare",
        "scripts/bench_compare.ts",
        "--runs",
        "1",
        "--seconds",
        "1",
        "--requests",
        "200",
        "--write-docs",
        "--docs-dir",
        docs,
      ],
      cwd: root,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(stdout);
    const err = new TextDecoder().decode(stderr);
    assert.equal(code, 0, `bench:compare failed:\n${out}\n${err}`);

    const header =
      "| workload | direct | stunnel chain | Deno forwarders (no crypto) | nexus (Phase 2) | nexus (end to end) | Deno floor / stunnel | Phase 2 / stunnel | E2E / stunnel |";
    const squeeze = (text: string) => text.replace(/ {2,}/g, " ").replace(/-{3,}/g, "---");
    const lines = out.split("\n").map(squeeze);
    assert.ok(lines.includes(header), out);
    const figure = "[0-9.]+ (?:Gbit/s|req/s|ms)";
    const row = (label: string, ratio: string) =>
      new RegExp(
        `^\\| ${label.replace(/[()+-]/g, "\\$&")}( \\| ${figure}){5}( \\| ${ratio}){3} \\|$`,
      );
    const rows: [string, string][] = [
      ["iperf3 TCP, 1 stream, client → server", "[0-9.]+"],
      ["iperf3 TCP, 1 stream, server → client (-R)", "[0-9.]+"],
      ["iperf3 TCP, 8 streams, client → server", "[0-9.]+"],
      ["iperf3 TCP, 8 streams, server → client (-R)", "[0-9.]+"],
      ["redis-benchmark SET, -c 1", "[0-9.]+"],
      ["redis-benchmark GET, -c 1", "[0-9.]+"],
      ["redis-benchmark SET, -c 50", "[0-9.]+"],
      ["redis-benchmark GET, -c 50", "[0-9.]+"],
      ["redis-benchmark SET, -c 1, p50 latency", "× [0-9.]+"],
      ["redis-benchmark GET, -c 1, p50 latency", "× [0-9.]+"],
    ];
    for (const [label, ratio] of rows) {
      assert.ok(lines.some((line) => row(label, ratio).test(line)), `no row ${label}:\n${out}`);
    }
    // The CPU per GB and memory tables: a figure for every hop of every path.
    const hops =
      "| hop | stunnel chain | Deno forwarders (no crypto) | nexus (Phase 2) | nexus (end to end) | Deno floor / stunnel | Phase 2 / stunnel | E2E / stunnel |";
    assert.equal(lines.filter((line) => line === hops).length, 2, out);
    for (const unit of ["s", "MiB"]) {
      for (
        const hop of [
          "entry: stunnel client · forwarder 1 · edge",
          "middle: socat · forwarder 2 · relay",
          "exit: stunnel server · forwarder 3 · gateway",
          "\\*\\*all hops\\*\\*",
        ]
      ) {
        const pattern = new RegExp(
          `^\\| ${hop}( \\| [0-9.]+ ${unit}){4}( \\| × [0-9.]+){3} \\|$`,
        );
        assert.ok(lines.some((line) => pattern.test(line)), `no ${hop} (${unit}):\n${out}`);
      }
      const agent = new RegExp(
        `^\\| service agent \\(end to end only\\) \\| — \\| — \\| — \\| [0-9.]+ ${unit} \\| — \\| — \\| — \\|$`,
      );
      assert.ok(lines.some((line) => agent.test(line)), `no agent row (${unit}):\n${out}`);
    }
    assert.match(out, /The relay dropped no frame \(nexus_relay_frames_dropped_total 0\)/);
    assert.match(out, /stunnel negotiated TLSv1\.3 TLS_AES_256_GCM_SHA384/);
    assert.match(err, /\[bench:compare\] run 1\/1: iperf3 TCP, 8 streams/);
    assert.match(err, /\[bench:compare\] Deno forwarders: forwarder 1 → forwarder 2 → forwarder 3/);
    assert.match(err, /\[bench:compare\] run 1\/1: redis-benchmark SET, GET -c 50 -n 1000/);

    const markdown = await Deno.readTextFile(`${docs}/benchmarks.md`);
    assert.match(markdown, /^# Benchmarks: Nexus against a TLS tunnel$/m);
    assert.ok(markdown.includes("deno task bench:compare --runs 1 --seconds 1"), markdown);
    assert.match(markdown, /^- cores: \d+/m);
    assert.match(markdown, /^- stunnel: stunnel 5/m);
    assert.match(markdown, /^- iperf3: iperf 3/m);
    assert.ok(squeeze(markdown).includes(header), markdown);
    assert.ok(markdown.includes("](benchmarks.svg)"), markdown);

    const svg = await Deno.readTextFile(`${docs}/benchmarks.svg`);
    assertWellFormedXml(svg);
    // As written by the benchmark: formatted as `deno fmt --check` (CI) wants it, the markdown too.
    const check = await new Deno.Command(Deno.execPath(), {
      args: [
        "fmt",
        "--check",
        "-q",
        "--config",
        `${root}deno.json`,
        `${docs}/benchmarks.md`,
        `${docs}/benchmarks.svg`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(check.success, new TextDecoder().decode(check.stderr));
    assert.match(
      svg,
      /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/,
    );
    for (
      const path of [
        "direct",
        "stunnel chain",
        "Deno forwarders (no crypto)",
        "nexus (Phase 2)",
        "nexus (end to end)",
      ]
    ) {
      assert.ok(svg.includes(`>${path}</text>`), `no legend for ${path}`);
    }
    // Four throughput groups and two redis panels of two groups, a bar per path in each.
    assert.equal(svg.match(/<title>/g)?.length, (4 + 2 + 2) * 5);
  } finally {
    await Deno.remove(docs, { recursive: true });
  }
});
