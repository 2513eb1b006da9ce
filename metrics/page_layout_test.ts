/**
 * The live page in headless Chromium, served by the monitor's own HTTP
 * server from a registry each test fills: at 50 targets its header stays
 * readable when the table is scrolled; when `/api/links` stops answering,
 * the page says so instead of waiting for it for good.
 */

import { match, ok } from "node:assert/strict";
import { Counter, Gauge, Registry } from "prom-client";
import { CHROMIUM, openBrowser } from "../testing/chromium.ts";
import { LINK_METRICS as M, readLinks } from "./_links.ts";
import { PAGE_REFRESH_MS } from "./_page.ts";
import { serveMetrics } from "./http.ts";

Deno.test({
  name:
    "the page at 50 targets: scrolled, its two header rows stay apart, so every column keeps its heading",
  ignore: CHROMIUM === undefined,
  async fn() {
    const registry = new Registry();
    const labelNames = [M.targetLabel, "flow"];
    const sent = new Counter({
      name: M.sent,
      help: "sent",
      labelNames,
      registers: [registry],
    });
    const up = new Gauge({
      name: M.up,
      help: "up",
      labelNames,
      registers: [registry],
    });
    for (let k = 1; k <= 50; k++) {
      const labels = { target: `10.0.0.${k}:10000`, flow: "0" };
      sent.inc(labels, 10);
      up.set(labels, k === 50 ? 0 : 1);
    }
    const monitor = serveMetrics({ hostname: "127.0.0.1", port: 0 }, {
      metrics: registry,
      links: () => readLinks(registry, "node-a"),
    }, { maxConnections: 8 });
    const browser = await openBrowser(
      `http://127.0.0.1:${monitor.addr.port}/`,
    );
    try {
      await browser.evaluate(`new Promise((resolve) => {
        const check = () => document.body?.dataset.renders ? resolve(true) : setTimeout(check, 20);
        check();
      })`);
      const rows = await browser.evaluate<number[][]>(`(() => {
        window.scrollTo(0, document.body.scrollHeight);
        return [...document.querySelectorAll("thead tr")].map((tr) => {
          const box = tr.cells[tr.cells.length - 1].getBoundingClientRect();
          return [box.top, box.bottom];
        });
      })()`);
      const scrolled = await browser.evaluate<number>("window.scrollY");
      ok(scrolled > 0, "the table of 50 links is taller than the window");
      const [first, second] = rows as [number[], number[]];
      // Both rows are in view, the second below the first.
      ok(
        first[0]! >= 0 && second[0]! >= first[1]! - 0.5,
        `scrolled by ${scrolled} px, the header rows sit at ${
          JSON.stringify(rows)
        }: the second covers the first`,
      );
    } finally {
      await browser.close();
      await monitor.close();
    }
  },
});

Deno.test({
  name:
    "the page, when /api/links stops answering, gives up on the read within a refresh and says it cannot read the links",
  ignore: CHROMIUM === undefined,
  async fn() {
    const registry = new Registry();
    const up = new Gauge({
      name: M.up,
      help: "up",
      labelNames: [M.targetLabel, "flow"],
      registers: [registry],
    });
    up.set({ target: "10.0.0.1:10000", flow: "0" }, 1);
    // The first read is answered; the next ones hang, as a monitor whose
    // host stopped or whose path drops everything would, until the end.
    let reads = 0;
    const release = Promise.withResolvers<void>();
    const monitor = serveMetrics({ hostname: "127.0.0.1", port: 0 }, {
      metrics: registry,
      links: async () => {
        if (reads++ > 0) await release.promise;
        return readLinks(registry, "node-a");
      },
    }, { maxConnections: 8 });
    const browser = await openBrowser(
      `http://127.0.0.1:${monitor.addr.port}/`,
    );
    try {
      await browser.evaluate(`new Promise((resolve) => {
        const check = () => document.body?.dataset.renders ? resolve(true) : setTimeout(check, 20);
        check();
      })`);
      // The page's next reads hang: within the refresh period and its own
      // read's allowance (3x for a slow machine), it says so.
      const status = await browser.evaluate<string>(`new Promise((resolve) => {
        const status = document.getElementById("status");
        const deadline = Date.now() + ${6 * PAGE_REFRESH_MS};
        const check = () => status.className === "error" || Date.now() > deadline
          ? resolve(status.textContent) : setTimeout(check, 50);
        check();
      })`);
      match(status, /^Cannot read \/api\/links: /);
      ok(reads >= 2, "the page read again");
    } finally {
      release.resolve();
      await browser.close();
      await monitor.close();
    }
  },
});
