import { deepEqual, equal, match, ok } from "node:assert/strict";
import { startServer } from "../testing/cli.ts";
import { fetchText, startScript } from "../testing/metrics.ts";
import { CHROMIUM, openBrowser } from "../testing/chromium.ts";
import { sh } from "../testing/shell.ts";
import { waitUntil } from "../testing/wait.ts";
import { LINK_METRICS as M, LINK_QUANTILES, readLinks } from "./_links.ts";
import { serveMetrics } from "./http.ts";
import { Registry } from "prom-client";

if (CHROMIUM === undefined) {
  console.log(
    "skipping the page test: chromium is not installed (apt-get install chromium; .ci/run does)",
  );
}

/** Where to copy the screenshot as well (docs/page.png is made so: see docs/fleet.md). */
const SCREENSHOT_COPY = Deno.env.get("UDP_ECHO_PAGE_PNG");

const MONITOR_PERMISSIONS = [
  "--allow-net",
  "--allow-ffi",
  "--allow-sys=networkInterfaces",
];

interface Series {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of an exposition (no escapes in our labels). */
function parseExposition(text: string): Series[] {
  const series: Series[] = [];
  for (const line of text.split("\n")) {
    const found = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (found === null) continue;
    const labels: Record<string, string> = {};
    for (const pair of (found[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)) {
      labels[pair[1]!] = pair[2]!;
    }
    const value = found[3] === "+Inf" ? Infinity : Number(found[3]);
    series.push({ name: found[1]!, labels, value });
  }
  return series;
}

/** Prometheus's histogram_quantile over cumulative buckets, written apart from the page's. */
function quantile(q: number, buckets: Map<number, number>): number | null {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Infinity) ?? 0;
  if (total === 0) return null;
  let previousBound = 0;
  let previousCount = 0;
  for (const bound of bounds) {
    const count = buckets.get(bound)!;
    if (count >= q * total) {
      if (bound === Infinity) return bounds[bounds.length - 2]!;
      return previousBound + (bound - previousBound) *
          (q * total - previousCount) / (count - previousCount);
    }
    previousBound = bound;
    previousCount = count;
  }
  return null;
}

/** The value each cell of a target's row must hold, from /metrics. */
function expectedCells(text: string, target: string): Record<string, string> {
  const series = parseExposition(text).filter((s) =>
    s.labels[M.targetLabel] === target
  );
  const sum = (name: string, direction?: string) => {
    const found = series.filter((s) =>
      s.name === name &&
      (direction === undefined || s.labels[M.directionLabel] === direction)
    );
    return found.length === 0
      ? undefined
      : String(found.reduce((total, s) => total + s.value, 0));
  };
  const ups = series.filter((s) => s.name === M.up);
  const up = ups.filter((s) => s.value === 1).length;
  const cells: Record<string, string> = {
    state: up === ups.length ? "up" : up === 0 ? "down" : "partial",
    sent: sum(M.sent)!,
    lost: sum(M.lost)!,
  };
  // Loss each way is known once a reply came back (a one-way delay seen).
  const answered = series.some((s) =>
    s.name === `${M.oneWay}_bucket` && s.labels.le === "+Inf" && s.value > 0
  );
  const forward = sum(M.lostByDirection, "forward");
  if (answered && forward !== undefined) cells["lost-forward"] = forward;
  const backward = sum(M.lostByDirection, "backward");
  if (answered && backward !== undefined) cells["lost-backward"] = backward;
  const histogram = (name: string, column: string, direction?: string) => {
    const buckets = new Map<number, number>();
    for (const s of series) {
      if (s.name !== `${name}_bucket`) continue;
      if (direction && s.labels[M.directionLabel] !== direction) continue;
      const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
      buckets.set(le, (buckets.get(le) ?? 0) + s.value);
    }
    for (const q of LINK_QUANTILES) {
      const value = buckets.size === 0 ? null : quantile(q, buckets);
      if (value !== null) {
        cells[`${column}-p${Math.round(q * 100)}`] = String(value);
      }
    }
  };
  histogram(M.rtt, "rtt");
  histogram(M.oneWay, "forward", "forward");
  histogram(M.oneWay, "backward", "backward");
  return cells;
}

/** Every row's cells as the page shows them: `data-value` of each `data-col`, and the texts. */
const READ_TABLE = `[...document.querySelectorAll("#links tr")].map((tr) => ({
  target: tr.querySelector('[data-col="target"]').textContent,
  values: Object.fromEntries([...tr.cells].filter((td) => td.dataset.value !== undefined)
    .map((td) => [td.dataset.col, td.dataset.value])),
  texts: Object.fromEntries([...tr.cells].map((td) => [td.dataset.col, td.textContent])),
}))`;

interface Row {
  target: string;
  values: Record<string, string>;
  texts: Record<string, string>;
}

Deno.test({
  name:
    "the monitor's page, in headless Chromium, fills its table with the figures of /metrics, up and down in words",
  ignore: CHROMIUM === undefined,
  async fn() {
    // STAMP reflectors that count what they received, for loss each way.
    const STATEFUL = ["--stamp", "--stamp-stateful"];
    // Two reflectors on one port, each on its own loopback address (as on
    // two hosts), and a third address that never answers, to be shown down.
    const first = await startServer([
      "-H",
      "127.0.0.1",
      "-p",
      "0",
      ...STATEFUL,
    ]);
    const port = first.port;
    const reflectors = [
      first,
      await startServer(["-H", "127.0.0.2", "-p", String(port), ...STATEFUL]),
    ];
    const silent = Deno.listenDatagram({
      transport: "udp",
      hostname: "127.0.0.3",
      port,
    });
    const hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
    const targets = hosts.map((host) => `${host}:${port}`);
    const monitor = startScript("client.ts", [
      ...hosts.flatMap((host) => ["-H", host]),
      "-p",
      String(port),
      "-i",
      "500",
      "-t",
      "1000",
      "--stamp",
      "--reflector-stateful",
      "--node",
      "node-a",
      "--metrics",
      "127.0.0.1:0",
    ], MONITOR_PERMISSIONS);
    let browser;
    try {
      const base = (await monitor.waitFor(
        /metrics on (http:\/\/\S+)\/metrics/,
      ))[1]!;
      const page = await fetch(`${base}/`);
      await page.body?.cancel();
      match(page.headers.get("content-type")!, /^text\/html/);
      match(
        page.headers.get("content-security-policy")!,
        /^default-src 'none'; script-src 'sha256-[^']+'; style-src 'sha256-[^']+'; connect-src 'self'/,
      );
      // Each reachable target has replies, the silent one losses.
      await waitUntil(async () => {
        const text = (await fetchText(`${base}/metrics`)).text;
        return targets.every((target, k) => {
          const cells = expectedCells(text, target);
          return k < 2 ? cells["rtt-p50"] !== undefined : cells.lost !== "0";
        });
      }, "every target has replies or losses");

      browser = await openBrowser(`${base}/`);
      // Wait in the page for its first table.
      await browser.evaluate(`new Promise((resolve) => {
        const check = () => document.body?.dataset.renders ? resolve(true) : setTimeout(check, 20);
        check();
      })`);
      // The hashed inline style applies under the CSP.
      equal(
        await browser.evaluate(
          `getComputedStyle(document.querySelector("td.state")).fontWeight`,
        ),
        "700",
      );
      // Read /metrics, have the page read /api/links, read /metrics again:
      // when nothing changed between the two, the table must show exactly it.
      let rows: Row[] | undefined;
      let exposition = "";
      for (let tries = 0; rows === undefined && tries < 50; tries++) {
        const before = (await fetchText(`${base}/metrics`)).text;
        const shown = await browser.evaluate<Row[]>(
          `udpEchoRefresh().then(() => ${READ_TABLE})`,
        );
        const after = (await fetchText(`${base}/metrics`)).text;
        const same = targets.every((target) =>
          JSON.stringify(expectedCells(before, target)) ===
            JSON.stringify(expectedCells(after, target))
        );
        if (same) [rows, exposition] = [shown, before];
      }
      ok(rows, "Cannot find a moment when /metrics stood still");
      deepEqual(rows.map((row) => row.target), targets);
      deepEqual(
        rows.map((row) => row.texts.source),
        targets.map(() => "node-a"),
      );
      equal(
        await browser.evaluate(`document.getElementById("node").textContent`),
        "node-a",
      );
      for (const row of rows) {
        const expected = expectedCells(exposition, row.target);
        for (const [column, value] of Object.entries(expected)) {
          const shown = Number(row.values[column]);
          const wanted = Number(value);
          if (column === "state") {
            equal(row.values[column], value, `${row.target} ${column}`);
          } else {
            ok(
              Math.abs(shown - wanted) <= 1e-12 * Math.max(1, wanted),
              `${row.target} ${column}: the page shows ${
                row.values[column]
              }, /metrics gives ${value}`,
            );
          }
        }
        // What people read: the state in words, figures with their units.
        equal(row.texts.state, expected.state!.toUpperCase());
        match(row.texts.sent!, /^\d+$/);
        match(row.texts.lost!, /^\d+ \(\d+\.\d\d%\)$/);
        for (const column of ["rtt-p50", "rtt-p90", "rtt-p99"]) {
          match(
            row.texts[column]!,
            expected[column] === undefined ? /^n\/a$/ : /^[\d.]+ ms$/,
          );
        }
      }
      deepEqual(rows.map((row) => row.values.state), ["up", "up", "down"]);
      match(
        await browser.evaluate<string>(
          `document.getElementById("status").textContent`,
        ),
        /^3 links \(2 up, 1 down\), read at /,
      );

      const png = await browser.screenshot(1300);
      deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
      const dir = await sh("mktemp -d");
      await sh(`cat > '${dir}/page.png'`, png);
      console.log(`screenshot: ${dir}/page.png (${png.length} bytes)`);
      if (SCREENSHOT_COPY !== undefined) {
        await sh(`cp '${dir}/page.png' '${SCREENSHOT_COPY}'`);
      }
    } finally {
      await browser?.close();
      await monitor.stop();
      silent.close();
      for (const reflector of reflectors) await reflector.stop();
    }
  },
});

Deno.test("the page and /api/links are served only with the links route; a HEAD of the page has no body", async () => {
  const registry = new Registry();
  const listen = { hostname: "127.0.0.1", port: 0 };
  const monitor = serveMetrics(listen, {
    metrics: registry,
    links: () => readLinks(registry, "node-a"),
  }, { maxConnections: 4 });
  const server = serveMetrics(listen, { metrics: registry }, {
    maxConnections: 4,
  });
  try {
    const at = (endpoint: typeof monitor, path: string, method = "GET") =>
      fetch(`http://127.0.0.1:${endpoint.addr.port}${path}`, { method });
    const page = await at(monitor, "/");
    const html = await page.text();
    match(page.headers.get("content-type")!, /^text\/html; charset=utf-8$/);
    match(page.headers.get("content-security-policy")!, /default-src 'none'/);
    equal(page.headers.get("x-content-type-options"), "nosniff");
    // Nothing is loaded from anywhere: no src, href or url() in the page.
    ok(!/\b(src|href)=|url\(|@import/.test(html), "no external reference");
    const head = await at(monitor, "/", "HEAD");
    equal(head.status, 200);
    equal(await head.text(), "");
    const links = await at(monitor, "/api/links");
    equal(links.headers.get("content-type"), "application/json");
    const doc = await links.json();
    deepEqual([doc.node, doc.links, doc.leftOut], ["node-a", [], 0]);
    // A reflector's endpoint has no page: its / names its paths.
    const plain = await at(server, "/");
    match(await plain.text(), /^udp-echo metrics: \/metrics\n$/);
    const none = await at(server, "/api/links");
    await none.body?.cancel();
    equal(none.status, 404);
  } finally {
    await monitor.close();
    await server.close();
  }
});
