import { deepEqual, equal, ok } from "node:assert/strict";
import { hasProgram } from "../testing/metrics.ts";
import { type Prometheus, startPrometheus } from "../testing/prometheus.ts";
import { startWatched, type Watched } from "../testing/shell.ts";
import { ROOT } from "../testing/cli.ts";

const HAS_PROMETHEUS = hasProgram("prometheus");
if (!HAS_PROMETHEUS) {
  console.log(
    "skipping the dashboard test: prometheus is not installed (apt-get install prometheus; .ci/run does)",
  );
}

const DASHBOARD = new URL("deploy/grafana/udp-echo.json", ROOT);

/** What Grafana puts in place of the dashboard's variables, for this test. */
const VARIABLES: Record<string, string> = {
  // All nodes and targets, as the variables' "All".
  node: ".*",
  target: ".*",
  // Grafana's rate window: at least four scrapes; they are 1 s apart here.
  __rate_interval: "10s",
};

interface Panel {
  title: string;
  targets?: { expr: string; refId: string }[];
  panels?: Panel[];
}

/** Every panel's expressions, rows opened, with the variables filled in. */
function expressions(
  panels: Panel[],
): { panel: string; refId: string; expr: string }[] {
  return panels.flatMap((panel) => [
    ...(panel.targets ?? []).map(({ expr, refId }) => ({
      panel: panel.title,
      refId,
      expr: expr.replace(/\$(\w+)/g, (all, name) => {
        ok(name in VARIABLES, `${panel.title}: the variable ${all}`);
        return VARIABLES[name]!;
      }),
    })),
    ...expressions(panel.panels ?? []),
  ]);
}

const PERMISSIONS = [
  "--allow-net",
  "--allow-ffi",
  "--allow-read",
  "--allow-sys=networkInterfaces",
];

function script(name: string, args: string[]): Watched {
  return startWatched([
    Deno.execPath(),
    "run",
    "--unstable-net",
    ...PERMISSIONS,
    name,
    ...args,
  ]);
}

Deno.test({
  name:
    "deploy/grafana/udp-echo.json: every panel's PromQL gives series for both links of a two-node mesh scraped by a real Prometheus",
  ignore: !HAS_PROMETHEUS,
  async fn() {
    const dashboard = JSON.parse(await Deno.readTextFile(DASHBOARD));
    const queries = expressions(dashboard.panels);
    ok(queries.length >= 8, `${queries.length} expressions`);
    const running: Watched[] = [];
    let prometheus: Prometheus | undefined;
    try {
      // Two nodes on loopback, each a stateful STAMP reflector (one port,
      // its own address) and a monitor of the other node.
      const reflectorArgs = ["--stamp", "--stamp-stateful", "-q"];
      const first = script("server.ts", [
        "-H",
        "127.0.0.1",
        "-p",
        "0",
        ...reflectorArgs,
        "--metrics",
        "127.0.0.1:0",
      ]);
      running.push(first);
      const port = (await first.waitFor(/^starting up on .* port (\d+)$/m))[1]!;
      const second = script("server.ts", [
        "-H",
        "127.0.0.2",
        "-p",
        port,
        ...reflectorArgs,
        "--metrics",
        "127.0.0.1:0",
      ]);
      running.push(second);
      const nodes = [["a", "127.0.0.2"], ["b", "127.0.0.1"]] as const;
      const monitors = nodes.map(([node, host]) =>
        script("client.ts", [
          "-H",
          host,
          "-p",
          port,
          "--stamp",
          "--reflector-stateful",
          "--node",
          node,
          "-i",
          "100",
          "-t",
          "1000",
          "-q",
          "--metrics",
          "127.0.0.1:0",
        ])
      );
      running.push(...monitors);
      const address = async (watched: Watched) =>
        (await watched.waitFor(/http:\/\/(\S+)\/metrics/))[1]!;
      const reflectorEndpoints = [await address(first), await address(second)];
      const monitorEndpoints = await Promise.all(monitors.map(address));
      prometheus = await startPrometheus(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: udp-echo-reflector
    static_configs:
      - targets: ${JSON.stringify(reflectorEndpoints)}
  - job_name: udp-echo-monitor
    static_configs:
      - targets: ${JSON.stringify(monitorEndpoints)}
`);
      const links = nodes.map(([node, host]) => `${node} → ${host}:${port}`)
        .sort();
      // What is still wrong: a panel without series, or a per-link one
      // that does not name exactly the two links.
      const problems = async () => {
        const left: string[] = [];
        for (const { panel, refId, expr } of queries) {
          const series = await prometheus!.query(expr);
          if (series.length === 0) {
            left.push(`${panel} (${refId}): no series: ${expr}`);
            continue;
          }
          if (series[0]!.metric.node === undefined) continue;
          const named = [
            ...new Set(
              series.map((s) => `${s.metric.node} → ${s.metric.target}`),
            ),
          ].sort();
          if (JSON.stringify(named) !== JSON.stringify(links)) {
            left.push(`${panel} (${refId}): names ${named.join(", ")}`);
          }
        }
        return left;
      };
      // Series come once a few scrapes are in: wait for them, bounded.
      let left = await problems();
      for (const end = Date.now() + 60_000; left.length > 0;) {
        if (Date.now() > end) break;
        await new Promise((resolve) => setTimeout(resolve, 1000));
        left = await problems();
      }
      equal(left.length, 0, `links expected: ${links}\n${left.join("\n")}`);
      // The dashboard's variables list the two source nodes.
      const values = await fetch(
        `http://127.0.0.1:${prometheus.port}/api/v1/label/node/values?match[]=udp_echo_probe_up`,
      ).then((response) => response.json());
      deepEqual(values.data, ["a", "b"]);
    } finally {
      await prometheus?.stop();
      for (const process of running.reverse()) await process.stop();
    }
  },
});

Deno.test("deploy/grafana/udp-echo.json: unique panel ids, panels within 24 columns and apart, every variable used is defined", async () => {
  const dashboard = JSON.parse(await Deno.readTextFile(DASHBOARD));
  const panels: (Panel & {
    id: number;
    gridPos: { x: number; y: number; w: number; h: number };
  })[] = dashboard.panels;
  equal(new Set(panels.map((panel) => panel.id)).size, panels.length);
  const cells = new Set<string>();
  for (const { title, gridPos: { x, y, w, h } } of panels) {
    ok(x >= 0 && w > 0 && x + w <= 24, `${title} within the 24 columns`);
    for (let row = y; row < y + h; row++) {
      for (let column = x; column < x + w; column++) {
        const cell = `${row},${column}`;
        ok(!cells.has(cell), `${title} overlaps another panel`);
        cells.add(cell);
      }
    }
  }
  const defined = new Set<string>(
    dashboard.templating.list.map((variable: { name: string }) =>
      variable.name
    ),
  );
  const used = JSON.stringify(dashboard).matchAll(/\$\{?(\w+)/g);
  for (const [, name] of used) {
    ok(name!.startsWith("__") || defined.has(name!), `$${name} is defined`);
  }
});
