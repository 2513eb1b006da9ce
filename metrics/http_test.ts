import { equal, ok } from "node:assert/strict";
import { Gauge, Registry } from "prom-client";
import { serveMetrics } from "./http.ts";

Deno.test("serveMetrics() renders /metrics once for the scrapes that come while it renders", async () => {
  const scrapes = 16;
  let collects = 0;
  let open: () => void = () => {};
  const gate = new Promise<void>((resolve) => open = resolve);
  const registry = new Registry();
  new Gauge({
    name: "test_renders",
    help: "Renders so far.",
    registers: [registry],
    async collect() {
      collects++;
      // Held until every scrape could have asked for its own rendering;
      // the timer ends the wait when they share one.
      if (collects >= scrapes) open();
      const timer = setTimeout(open, 3000);
      await gate;
      clearTimeout(timer);
      this.set(collects);
    },
  });
  const endpoint = serveMetrics({ hostname: "127.0.0.1", port: 0 }, {
    metrics: registry,
  });
  try {
    const bodies = await Promise.all(
      Array.from({ length: scrapes }, async () => {
        const response = await fetch(
          `http://127.0.0.1:${endpoint.addr.port}/metrics`,
        );
        equal(response.status, 200);
        return await response.text();
      }),
    );
    ok(
      collects <= scrapes / 2,
      `${scrapes} scrapes at once rendered ${collects} times`,
    );
    for (const body of bodies) ok(body.includes("test_renders "), body);
  } finally {
    await endpoint.close();
  }
});

Deno.test("serveMetrics() reads the links once for the /api/links requests that come while it reads", async () => {
  const requests = 16;
  let reads = 0;
  let open: () => void = () => {};
  const gate = new Promise<void>((resolve) => open = resolve);
  const endpoint = serveMetrics({ hostname: "127.0.0.1", port: 0 }, {
    metrics: new Registry(),
    async links() {
      reads++;
      // Held until every request could have asked for its own read; the
      // timer ends the wait when they share one.
      if (reads >= requests) open();
      const timer = setTimeout(open, 3000);
      await gate;
      clearTimeout(timer);
      return { reads };
    },
  });
  try {
    const bodies = await Promise.all(
      Array.from({ length: requests }, async () => {
        const response = await fetch(
          `http://127.0.0.1:${endpoint.addr.port}/api/links`,
        );
        equal(response.status, 200);
        equal(response.headers.get("content-type"), "application/json");
        return await response.json();
      }),
    );
    ok(
      reads <= requests / 2,
      `${requests} requests at once read the links ${reads} times`,
    );
    for (const body of bodies) ok(typeof body.reads === "number", body);
  } finally {
    await endpoint.close();
  }
});
