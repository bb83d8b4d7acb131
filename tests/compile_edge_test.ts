/**
 * `deno task compile:edge` builds the edge as one executable with the
 * `edge` permission set baked in.
 *
 * The runtime `deno compile` normally downloads (denort) cannot be fetched
 * on this machine, so the test sets `DENORT_BIN`, which deno honours, to
 * this deno binary: the build then runs completely offline and embeds the
 * real module graph and permission metadata (the base binary is a full
 * deno rather than the slim runtime, so the result is checked by its
 * metadata, not run; the edge itself is run under the same permission set
 * in edge_test.ts). Without `DENORT_BIN`, the task needs the download host.
 */
import assert from "node:assert/strict";

const root = new URL("..", import.meta.url).pathname;

Deno.test({
  name: "compile:edge: offline with DENORT_BIN, edge permission set embedded, no native addon",
  async fn() {
    const output = `${root}dist/nexus-edge`;
    await Deno.remove(output).catch(() => {});
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "compile:edge"],
      cwd: root,
      env: { DENORT_BIN: Deno.execPath(), NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    try {
      // What went in: the edge and the core, not the HSM addon nor the toolchain.
      const embedded = text.slice(text.indexOf("Embedded Files"));
      assert.match(embedded, /main\.ts/, text);
      for (const absent of ["pkcs11js", "graphene-pk11", ".tools", "fast-check"]) {
        assert.ok(!embedded.includes(absent), `${absent} was embedded:\n${embedded}`);
      }
      // The permissions in the executable's metadata are the `edge` set.
      const binary = await Deno.readFile(output);
      const latin1 = new TextDecoder("latin1").decode(binary);
      const at = latin1.lastIndexOf('"permissions":{');
      assert.ok(at >= 0, "no permission metadata in the executable");
      let depth = 0;
      let end = at + '"permissions":'.length;
      do {
        if (latin1[end] === "{") depth++;
        if (latin1[end] === "}") depth--;
        end++;
      } while (depth > 0);
      const permissions = JSON.parse(latin1.slice(at + '"permissions":'.length, end));
      // deno.json may carry whole-line comments (JSONC).
      const config = JSON.parse(
        (await Deno.readTextFile(`${root}deno.json`)).replace(/^\s*\/\/.*$/gm, ""),
      ) as { permissions: { edge: { net: string[]; read: string[]; write: string[] } } };
      const set = config.permissions.edge;
      assert.deepEqual(permissions.allow_net, set.net);
      const absolute = (paths: string[]) =>
        paths.map((p) => p.startsWith("./") ? `${root}${p.slice(2)}` : p);
      assert.deepEqual(permissions.allow_read, absolute(set.read));
      assert.deepEqual(permissions.allow_write, absolute(set.write));
      // FFI for OpenSSL's libcrypto alone (the record cipher), nothing else.
      assert.deepEqual(permissions.allow_ffi, ["/usr/lib/x86_64-linux-gnu/libcrypto.so.3"]);
      for (const none of ["allow_run", "allow_env", "allow_sys", "allow_all"]) {
        assert.ok(!permissions[none], `${none} is granted: ${JSON.stringify(permissions[none])}`);
      }
      console.log(
        `compiled edge: ${(binary.length / 2 ** 20).toFixed(1)} MiB with a full deno base`,
      );
    } finally {
      await Deno.remove(output).catch(() => {});
    }
  },
});
