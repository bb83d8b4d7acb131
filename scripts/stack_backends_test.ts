import assert from "node:assert/strict";
import { DEMO_BACKENDS, describeRequest, LICENSE_HEADER } from "./stack_backends.ts";

const ID = "ab".repeat(32);
const KEY = "nxl_" + "k".repeat(32);

Deno.test("stack backends: report the license id, and any license key they were sent", () => {
  const [orchestrator] = DEMO_BACKENDS;
  const url = "http://127.0.0.1:18000/jobs?x=1";
  assert.deepEqual(describeRequest(orchestrator, new Request(url)), {
    service: "orchestrator",
    backend: "127.0.0.1:18000",
    method: "GET",
    path: "/jobs",
    license: "absent",
    licenseKey: "absent",
  });
  const withId = describeRequest(
    orchestrator,
    new Request(url, { headers: { [LICENSE_HEADER]: ID } }),
  );
  assert.equal(withId.license, "present");
  assert.equal(withId.licenseId, ID);
  assert.equal(withId.licenseKey, "absent");
  // A key anywhere (a header's value or name, the URL) is reported, never echoed.
  for (
    const request of [
      new Request(url, { headers: { "X-License-Key": KEY } }),
      new Request(url, { headers: { [LICENSE_HEADER]: KEY } }),
      new Request(`${url}&k=${KEY}`),
    ]
  ) {
    const answer = describeRequest(orchestrator, request);
    assert.equal(answer.licenseKey, "present");
    assert.ok(!JSON.stringify(answer).includes(KEY.slice(4)), JSON.stringify(answer));
  }
});
