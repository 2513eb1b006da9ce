/**
 * A real Prometheus for the tests: started on a free port with a given
 * configuration in a temporary directory, queried over its HTTP API.
 *
 * @module
 */

import { sh } from "./shell.ts";

/** A running Prometheus. */
export interface Prometheus {
  /** Its HTTP port on 127.0.0.1. */
  port: number;
  /** Runs an instant query; resolves to its result, or throws with Prometheus's error. */
  query(promql: string): Promise<PromSeries[]>;
  /** Stops it and removes its directory. */
  stop(): Promise<void>;
}

/** One series of an instant query's answer. */
export interface PromSeries {
  /** Its labels. */
  metric: Record<string, string>;
  /** Its value (NaN as Prometheus gives it). */
  value: number;
}

/** A TCP port free a moment ago (Prometheus cannot take port 0). */
function freePort(): number {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return listener.addr.port;
}

/**
 * Starts Prometheus with `config` (a prometheus.yml), waiting until it is
 * ready; tries another port when the one picked was taken meanwhile.
 */
export async function startPrometheus(config: string): Promise<Prometheus> {
  const dir = await sh("mktemp -d");
  await sh(
    `cat > '${dir}/prometheus.yml'`,
    new TextEncoder().encode(config),
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
    const end = async () => {
      try {
        child.kill("SIGTERM");
      } catch {
        // Ended already.
      }
      await child.status;
      await log;
    };
    const exited = child.status.then(() => true);
    for (let i = 0; i < 600; i++) {
      const ready = await fetch(`http://127.0.0.1:${port}/-/ready`)
        .then(async (response) => {
          await response.body?.cancel();
          return response.ok;
        })
        .catch(() => false);
      if (ready) {
        return {
          port,
          query: (promql) => query(port, promql),
          stop: async () => {
            await end();
            await sh(`rm -rf '${dir}'`);
          },
        };
      }
      const ended = await Promise.race([
        exited,
        new Promise((resolve) => setTimeout(() => resolve(false), 50)),
      ]);
      if (ended) break;
    }
    await end();
    const said = await log;
    if (!/address already in use/.test(said) || attempt >= 5) {
      await sh(`rm -rf '${dir}'`);
      throw new Error(`Cannot start prometheus: ${said.slice(-500)}`);
    }
  }
}

async function query(port: number, promql: string): Promise<PromSeries[]> {
  const response = await fetch(
    `http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(promql)}`,
  );
  const body = await response.json();
  if (body.status !== "success") {
    throw new Error(`Cannot query ${promql}: ${body.error}`);
  }
  return body.data.result.map((
    item: { metric: Record<string, string>; value: [number, string] },
  ) => ({ metric: item.metric, value: Number(item.value[1]) }));
}
