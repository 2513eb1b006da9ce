import { equal, match } from "node:assert/strict";
import { serveEcho } from "../server/serve.ts";
import { serverMetrics } from "./server.ts";
import { runScript } from "../testing/cli.ts";
import {
  fetchText,
  hasProgram,
  promtoolCheck,
  sample,
  startScript,
} from "../testing/metrics.ts";
import { waitUntil } from "../testing/wait.ts";

const HAS_PROMTOOL = hasProgram("promtool");
if (!HAS_PROMTOOL) {
  console.log(
    "skipping promtool checks: promtool is not installed (apt-get install prometheus)",
  );
}

async function sendTo(port: number, hostname: string, count: number) {
  const conn = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
  try {
    for (let i = 0; i < count; i++) {
      await conn.send(new Uint8Array(10), { transport: "udp", hostname, port });
      await conn.receive();
    }
  } finally {
    conn.close();
  }
}

Deno.test("serverMetrics() exposes each socket's counters and passes promtool check metrics", async () => {
  const controller = new AbortController();
  const server = serveEcho({
    hostnames: ["127.0.0.1", "::1"],
    port: 0,
    signal: controller.signal,
  });
  try {
    const port = server.addr.port;
    await sendTo(port, "127.0.0.1", 3);
    await sendTo(port, "::1", 2);
    const text = await serverMetrics(server, {
      io: "socket",
      logLinesDropped: () => 7,
    }).metrics();
    const v4 = `address="127.0.0.1:${port}"`;
    const v6 = `address="[::1]:${port}"`;
    equal(sample(text, `udp_echo_received_datagrams_total{${v4}}`), 3);
    equal(sample(text, `udp_echo_received_datagrams_total{${v6}}`), 2);
    equal(sample(text, `udp_echo_echoed_bytes_total{${v4}}`), 30);
    equal(sample(text, `udp_echo_echoed_bytes_total{${v6}}`), 20);
    equal(sample(text, `udp_echo_errors_total{${v4},operation="send"}`), 0);
    equal(
      sample(text, `udp_echo_dropped_datagrams_total{reason="low-port"}`),
      0,
    );
    equal(sample(text, "udp_echo_log_lines_dropped_total"), 7);
    match(text, /^udp_echo_info\{version="[^"]+",io="socket"\} 1$/m);
    if (HAS_PROMTOOL) equal(await promtoolCheck(text), "");
  } finally {
    controller.abort();
    await server.finished;
  }
});

for (const io of ["socket", "batch"]) {
  Deno.test(`server.ts --metrics 0 --io ${io} serves /metrics on the port its start-up line names`, async () => {
    const server = startScript(
      "server.ts",
      ["-p", "0", "-q", "--io", io, "--metrics", "0"],
      ["--allow-net", "--allow-ffi", "--allow-read"],
    );
    try {
      const port = Number((await server.waitFor(/port (\d+)\n/))[1]);
      const url = (await server.waitFor(/serving metrics on (http:\S+)\n/))[1]!;
      await sendTo(port, "127.0.0.1", 4);
      // The batch Worker counts an echo just after sending it: the reply
      // may come first.
      const echoed = (text: string) =>
        sample(
          text,
          `udp_echo_echoed_datagrams_total{address="127.0.0.1:${port}"}`,
        );
      let scrape: Awaited<ReturnType<typeof fetchText>> | undefined;
      await waitUntil(async () => {
        scrape = await fetchText(url);
        return echoed(scrape.text) >= 4;
      }, "four echoes are counted");
      const { status, text, type } = scrape!;
      equal(status, 200);
      match(type ?? "", /^text\/plain; version=0\.0\.4/);
      equal(echoed(text), 4);
      match(
        text,
        new RegExp(`udp_echo_info\\{version="[^"]+",io="${io}"\\} 1`),
      );
      // The engine reads its sockets' drops; Deno's sockets need
      // --allow-all for /proc/net/udp, so theirs are unknown: no sample.
      const drops =
        `udp_echo_receive_buffer_drops_total{address="127.0.0.1:${port}"}`;
      if (io === "batch") equal(sample(text, drops), 0);
      else equal(text.includes(drops), false);
      match(text, /^# TYPE udp_echo_receive_buffer_drops_total counter$/m);
      if (HAS_PROMTOOL) equal(await promtoolCheck(text), "");
      equal((await fetchText(url.replace("/metrics", "/nope"))).status, 404);
    } finally {
      equal((await server.stop()).code, 0);
    }
  });
}

Deno.test("server.ts --metrics refuses a bad value as a usage error (exit 2)", async () => {
  for (
    const value of [
      "x",
      "70000",
      "::1:9100",
      "localhost:",
      "[::1]",
      "1.2.3.4:-1",
    ]
  ) {
    const { code, stderr, stdout } = await runScript("server.ts", [
      "-p",
      "0",
      "--metrics",
      value,
    ]);
    equal(code, 2, value);
    equal(stdout, "");
    match(
      stderr,
      new RegExp(
        `^error: cannot use --metrics "${
          value.replace(/[[\]]/g, "\\$&")
        }": expected PORT, HOST:PORT or \\[V6ADDR\\]:PORT`,
      ),
    );
  }
});

Deno.test("server.ts --metrics on a port in use names the address and exits 1", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { code, stderr } = await runScript("server.ts", [
    "-p",
    "0",
    "--metrics",
    `127.0.0.1:${taken.addr.port}`,
  ]);
  equal(code, 1);
  equal(
    stderr,
    `error: cannot serve metrics on 127.0.0.1:${taken.addr.port}: address already in use\n`,
  );
});
