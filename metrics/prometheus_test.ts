import { equal } from "node:assert/strict";
import {
  hasProgram,
  startEchoSocket,
  startScript,
} from "../testing/metrics.ts";
import { type Prometheus, startPrometheus } from "../testing/prometheus.ts";

const DATAGRAMS = 25;
const HAS_PROMETHEUS = hasProgram("prometheus");
if (!HAS_PROMETHEUS) {
  console.log(
    "skipping the Prometheus test: prometheus is not installed (apt-get install prometheus; .ci/run does)",
  );
}

/** What a query gives, keyed by each series' job label. */
async function query(
  prometheus: Prometheus,
  promql: string,
): Promise<Map<string, number>> {
  const values = new Map<string, number>();
  for (const series of await prometheus.query(promql)) {
    values.set(series.metric.job ?? "", series.value);
  }
  return values;
}

Deno.test({
  name:
    "Prometheus scrapes server.ts --metrics and client.ts --metrics: up is 1 and the received counter is what the test sent",
  ignore: !HAS_PROMETHEUS,
  async fn() {
    const server = startScript("server.ts", [
      "-p",
      "0",
      "-q",
      "--metrics",
      "0",
    ]);
    const echo = startEchoSocket();
    const monitor = startScript("client.ts", [
      "-H",
      "127.0.0.1",
      "-p",
      String(echo.port),
      "-i",
      "100",
      "--node",
      "test-node",
      "--metrics",
      "0",
    ]);
    let prometheus: Prometheus | undefined;
    try {
      const port = Number((await server.waitFor(/port (\d+)\n/))[1]);
      const serverMetrics =
        (await server.waitFor(/metrics on http:\/\/(\S+)\/metrics\n/))[1]!;
      const monitorMetrics =
        (await monitor.waitFor(/metrics on http:\/\/(\S+)\/metrics\n/))[1]!;
      const conn = Deno.listenDatagram({
        transport: "udp",
        hostname: "127.0.0.1",
        port: 0,
      });
      try {
        for (let i = 0; i < DATAGRAMS; i++) {
          await conn.send(new Uint8Array([i]), {
            transport: "udp",
            hostname: "127.0.0.1",
            port,
          });
          await conn.receive();
        }
      } finally {
        conn.close();
      }
      prometheus = await startPrometheus(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: reflector
    static_configs: [{ targets: ["${serverMetrics}"] }]
  - job_name: monitor
    static_configs: [{ targets: ["${monitorMetrics}"] }]
  - job_name: probe
    metrics_path: /probe
    params: { target: ["127.0.0.1:${echo.port}"], count: ["3"] }
    static_configs: [{ targets: ["${monitorMetrics}"] }]`);
      const end = Date.now() + 30_000;
      let up = new Map<string, number>();
      let received = new Map<string, number>();
      while (Date.now() < end) {
        up = await query(prometheus, "up");
        received = await query(
          prometheus,
          'sum by (job) (udp_echo_received_datagrams_total{job="reflector"})',
        );
        if (
          up.get("reflector") === 1 && up.get("monitor") === 1 &&
          up.get("probe") === 1 &&
          received.get("reflector") === DATAGRAMS
        ) break;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      equal(up.get("reflector"), 1, `up: ${[...up]}`);
      equal(up.get("monitor"), 1, `up: ${[...up]}`);
      equal(up.get("probe"), 1, `up: ${[...up]}`);
      equal(received.get("reflector"), DATAGRAMS);
    } finally {
      await prometheus?.stop();
      equal((await monitor.stop()).code, 0);
      equal((await server.stop()).code, 0);
      await echo.close();
    }
  },
});
