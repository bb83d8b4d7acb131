/**
 * Log lines cannot be forged or turned into terminal escapes by the values
 * written in them: a peer's alias or reason with a line break, ESC or another
 * control character stays inside its one line, in both formats.
 */
import assert from "node:assert/strict";
import { createLogger, escapeLogText, formatLogValue, type LoggerOptions } from "./log.ts";

const FORGED = "x\nlevel=error msg=forged";
/** Every character that must never reach a line raw, and a few that may. */
const CONTROLS = [
  ...Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(i)),
  ...Array.from({ length: 0x21 }, (_, i) => String.fromCharCode(0x7f + i)),
  "\u2028",
  "\u2029",
];
// deno-lint-ignore no-control-regex -- the test looks for raw control characters on purpose
const RAW = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

function capture(options: Omit<LoggerOptions, "write"> = { component: "test" }) {
  const lines: string[] = [];
  const logger = createLogger({ ...options, level: "debug", write: (line) => lines.push(line) });
  return { logger, lines };
}

Deno.test("log: a value with a line break stays on its one line, in both formats", () => {
  for (const json of [false, true]) {
    const { logger, lines } = capture({ component: "relay", json });
    // In a field, in the message (a peer's reason quoted in it) and in a key.
    logger.warn("alias refused", { alias: FORGED, reason: "\r\nERROR forged" });
    logger.warn(`relay refused: ${FORGED}`);
    logger.warn("attribute", { [FORGED]: 1 });
    assert.equal(lines.length, 3);
    for (const line of lines) {
      assert.equal(line.split(/\r\n|\r|\n|\u2028|\u2029/).length, 1, `json=${json}: ${line}`);
      assert.doesNotMatch(line, /[\r\n]/, `json=${json}: ${line}`);
    }
    if (json) {
      const parsed = JSON.parse(lines[0]);
      assert.equal(parsed.alias, FORGED, "JSON keeps the value exactly");
      assert.equal(parsed.reason, "\r\nERROR forged");
      assert.equal(JSON.parse(lines[1]).message, `relay refused: ${FORGED}`);
    } else {
      assert.ok(lines[1].endsWith(" WARN  relay: relay refused: x\\nlevel=error msg=forged"));
      assert.ok(lines[2].endsWith(' WARN  relay: attribute "x\\nlevel=error msg=forged"=1'));
    }
  }
  const { logger, lines } = capture({ component: "relay" });
  logger.warn("alias refused", { alias: FORGED });
  assert.ok(lines[0].endsWith(' WARN  relay: alias refused alias="x\\nlevel=error msg=forged"'));
});

Deno.test("log: ESC, C1, DEL and U+2028/U+2029 never appear raw; message and keys too", () => {
  const nasty = CONTROLS.join("");
  for (const json of [false, true]) {
    const { logger, lines } = capture({ component: `c${"\x1b[2J"}`, json });
    logger.error(`message ${nasty} \x1b]0;title\x07`, {
      [`key\x1b[31m`]: `value ${nasty}`,
      plain: "\x1b[0m",
      count: 3,
    });
    logger.child(`sub\n`).info(FORGED);
    assert.equal(lines.length, 2);
    for (const line of lines) {
      assert.doesNotMatch(line, RAW, `json=${json}: ${JSON.stringify(line)}`);
      assert.ok(!line.includes("\x1b"), "ESC is written raw");
    }
    if (json) {
      const parsed = JSON.parse(lines[0]);
      assert.equal(parsed.message, `message ${nasty} \x1b]0;title\x07`);
      assert.equal(parsed[`key\x1b[31m`], `value ${nasty}`);
      assert.equal(JSON.parse(lines[1]).component, "c\x1b[2J.sub\n");
    } else {
      assert.ok(lines[0].includes("c\\u001b[2J: message "), lines[0]);
      assert.ok(lines[0].includes(' "key\\u001b[31m"="value '), lines[0]);
      assert.ok(lines[0].includes(' plain="\\u001b[0m" count=3'), lines[0]);
      assert.ok(lines[1].endsWith("c\\u001b[2J.sub\\n: x\\nlevel=error msg=forged"), lines[1]);
    }
  }
});

Deno.test("log: plain values stay bare; others are quoted so pairs split unambiguously", () => {
  assert.equal(formatLogValue("gw-cust-001"), "gw-cust-001");
  assert.equal(formatLogValue("127.0.0.1:4000"), "127.0.0.1:4000");
  assert.equal(formatLogValue("a b"), '"a b"');
  assert.equal(formatLogValue("a=b"), '"a=b"');
  assert.equal(formatLogValue('say "hi"'), '"say \\"hi\\""');
  assert.equal(formatLogValue("back\\slash"), '"back\\\\slash"');
  assert.equal(formatLogValue(""), '""');
  assert.equal(formatLogValue("\u009b2J"), '"\\u009b2J"');
  assert.equal(formatLogValue("\u2028"), '"\\u2028"');
  assert.equal(escapeLogText("tab\there\\n"), "tab\\there\\\\n");
  const { logger, lines } = capture();
  logger.info("ok", { alias: "gw-cust-001", n: 2, up: true, none: null, skipped: undefined });
  assert.ok(lines[0].endsWith(" INFO  test: ok alias=gw-cust-001 n=2 up=true none=null"), lines[0]);
});
