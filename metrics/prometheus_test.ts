import { equal } from "node:assert/strict";
import {
  hasProgram,
  startEchoSocket,
  startScript,
} from "../testing/metrics.ts";

const DATAGRAMS = 25;
const HAS_PROMETHEUS = hasProgram("prometheus");
if (!HAS_PROMETHEUS) {
  console.log(
    "skipping the Prometheus test: prometheus is not installed (apt-get install prometheus; .ci/run does)",
  );
}

/** A TCP port free a moment ago (Prometheus cannot take port 0). */
function freePort(): number {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return listener.addr.port;
}

/** Runs `script` in a shell (the tests may not write files themselves). */
async function sh(script: string): Promise<string> {
  const { stdout, success } = await new Deno.Command("sh", {
    args: ["-c", script],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!success) throw new Error(`Cannot run: ${script}`);
  return new TextDecoder().decode(stdout).trim();
}

interface Prometheus {
  port: number;
  stop(): Promise<void>;
}

/**
 * Starts Prometheus on a free port with `config`, in a temporary directory
 * removed by stop(); tries another port when the one picked was taken.
 */
async function startPrometheus(config: string): Promise<Prometheus> {
  const dir = await sh("mktemp -d");
  await sh(
    `cat > '${dir}/prometheus.yml' <<'EOF_CONFIG'\n${config}\nEOF_CONFIG`,
  );
  for (let attempt = 1;; attempt++) {
    const port = freePort();
    const child = new Deno.Command("prometheus", {
      args: [
        `--config.file=${dir}/prometheus.yml`,
        `--storage.tsdb.path=${dir}/data`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const log = new Response(child.stderr).text();
    const stop = async () => {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already ended.
      }
      await child.status;
      await log;
    };
    for (let i = 0; i < 200; i++) {
      const ready = await fetch(`http://127.0.0.1:${port}/-/ready`)
        .then(async (response) => {
          await response.body?.cancel();
          return response.ok;
        })
        .catch(() => false);
      if (ready) {
        return {
          port,
          stop: async () => {
            await stop();
            await sh(`rm -rf '${dir}'`);
          },
        };
      }
      const ended = await Promise.race([
        child.status.then(() => true),
        new Promise((resolve) => setTimeout(() => resolve(false), 50)),
      ]);
      if (ended) break;
    }
    await stop();
    const said = await log;
    if (!/address already in use/.test(said) || attempt >= 5) {
      await sh(`rm -rf '${dir}'`);
      throw new Error(`Cannot start prometheus: ${said.slice(-500)}`);
    }
  }
}

async function query(
  port: number,
  promql: string,
): Promise<Map<string, number>> {
  const response = await fetch(
    `http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(promql)}`,
  );
  const body = await response.json();
  const values = new Map<string, number>();
  for (const item of body.data?.result ?? []) {
    values.set(item.metric.job ?? "", Number(item.value[1]));
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
        up = await query(prometheus.port, "up");
        received = await query(
          prometheus.port,
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
