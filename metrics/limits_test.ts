import { equal, match, ok } from "node:assert/strict";
import {
  echoes,
  fetchWhenServing,
  holdConnections,
  openFds,
  rssMb,
  startLimited,
} from "../testing/abuse.ts";
import { sample, startEchoSocket } from "../testing/metrics.ts";
import { MAX_HTTP_CONNECTIONS, RESERVED_DESCRIPTORS } from "./_fd_limit.ts";

/** The connections of the repro: past a limit of 1,024. */
const ABUSE = 1100;
const SOCKET = ["--allow-net"];
const BATCH = ["--allow-net", "--allow-ffi", "--allow-read"];

/** This test process's own descriptor limit (its children inherit it). */
const OWN_LIMIT = Number(
  new TextDecoder().decode(
    new Deno.Command("sh", { args: ["-c", "ulimit -n"], stdout: "piped" })
      .outputSync().stdout,
  ).trim(),
);
const IGNORE = !(OWN_LIMIT > ABUSE + 200);
if (IGNORE) {
  console.log(
    `skipping the abuse tests: this process may open ${OWN_LIMIT} files, fewer than the ${ABUSE} connections and its own`,
  );
}

function serverArgs(io: string): string[] {
  return [
    "-H",
    "127.0.0.1",
    "-p",
    "0",
    "-q",
    "--io",
    io,
    "--metrics",
    "127.0.0.1:0",
  ];
}

async function startServer(
  io: "socket" | "batch",
  nofile: number,
  extra: string[] = [],
) {
  const script = startLimited("server.ts", serverArgs(io), {
    permissions: [...(io === "batch" ? BATCH : SOCKET), ...extra],
    nofile,
  });
  const port = Number((await script.waitFor(/port (\d+)\n/))[1]);
  const url = (await script.waitFor(/serving metrics on (http:\S+)\n/))[1]!;
  return { script, port, url, metricsPort: Number(new URL(url).port) };
}

for (const io of ["socket", "batch"] as const) {
  Deno.test({
    name:
      `server.ts --io ${io} --metrics under ulimit -n 1024 outlives ${ABUSE} connections that never finish their head`,
    ignore: IGNORE,
    async fn() {
      const { script, port, url, metricsPort } = await startServer(io, 1024);
      try {
        ok(await echoes(port));
        const held = await holdConnections(metricsPort, ABUSE);
        try {
          // Past the cap, each new connection closes the oldest one still
          // waiting for its head.
          await held.waitClosed(ABUSE - MAX_HTTP_CONNECTIONS);
          ok(
            await openFds(script.pid) <=
              MAX_HTTP_CONNECTIONS + RESERVED_DESCRIPTORS,
          );
          ok(await echoes(port), "echoes during the abuse");
          // A late one too, and it is closed when its own head does not come.
          const late = await holdConnections(metricsPort, 1);
          await late.waitClosed(1);
          await late.close();
        } finally {
          await held.close();
        }
        const text = await fetchWhenServing(url);
        equal(
          sample(
            text,
            `udp_echo_echoed_datagrams_total{address="127.0.0.1:${port}"}`,
          ),
          2,
        );
      } finally {
        const { code, stdout, stderr } = await script.stop();
        equal(code, 0, stderr);
        match(
          stdout,
          /shutting down: received 2 datagrams .* echoed 2 datagrams/,
        );
        ok(!/error|panic|cannot accept/i.test(stderr), stderr);
        // Without FFI the limit cannot be read, and the one line says so.
        equal(
          /file descriptor limit is unknown/.test(stderr),
          io === "socket",
          stderr,
        );
      }
    },
  });
}

Deno.test({
  name:
    `client.ts --metrics under ulimit -n 1024 outlives ${ABUSE} connections and keeps probing`,
  ignore: IGNORE,
  async fn() {
    const echo = startEchoSocket();
    const monitor = startLimited("client.ts", [
      "-H",
      "127.0.0.1",
      "-p",
      String(echo.port),
      "-i",
      "50",
      "--node",
      "test-node",
      "--metrics",
      "127.0.0.1:0",
    ], { permissions: BATCH, nofile: 1024 });
    const received = (text: string) =>
      sample(
        text,
        `udp_echo_probes_received_total{target="127.0.0.1:${echo.port}",flow="0",node="test-node"}`,
      );
    try {
      const url = (await monitor.waitFor(/metrics on (http:\S+)\n/))[1]!;
      const before = received(await fetchWhenServing(url));
      const held = await holdConnections(Number(new URL(url).port), ABUSE);
      try {
        await held.waitClosed(ABUSE - MAX_HTTP_CONNECTIONS);
        ok(
          await openFds(monitor.pid) <=
            MAX_HTTP_CONNECTIONS + RESERVED_DESCRIPTORS,
        );
      } finally {
        await held.close();
      }
      ok(received(await fetchWhenServing(url)) > before, "still probing");
    } finally {
      const { code, stderr } = await monitor.stop("SIGTERM");
      await echo.close();
      equal(code, 0, stderr);
      ok(!/error|panic|cannot accept/i.test(stderr), stderr);
    }
  },
});

Deno.test({
  name:
    "server.ts --metrics under a low limit read through FFI says so, and caps its connections to fit",
  ignore: IGNORE,
  async fn() {
    const limit = 200;
    const cap = limit - RESERVED_DESCRIPTORS;
    const { script, port, url, metricsPort } = await startServer(
      "socket",
      limit,
      ["--allow-ffi"],
    );
    try {
      await script.waitForStderr(
        new RegExp(
          `^warning: the file descriptor limit is ${limit}: the metrics endpoint takes at most ${cap} connections`,
          "m",
        ),
      );
      const held = await holdConnections(metricsPort, 3 * limit);
      try {
        await held.waitClosed(3 * limit - cap);
        ok(await openFds(script.pid) < limit);
        ok(await echoes(port));
      } finally {
        await held.close();
      }
      await fetchWhenServing(url);
    } finally {
      const { code, stderr } = await script.stop();
      equal(code, 0, stderr);
      equal(stderr.split("\n").filter(Boolean).length, 1, stderr);
    }
  },
});

Deno.test({
  name:
    "server.ts --metrics whose accept() fails with EMFILE backs off, tells it in one line and echoes on",
  ignore: IGNORE,
  async fn() {
    const started = Date.now();
    // Without FFI the cap stays at 256, far over this limit.
    const { script, port, url, metricsPort } = await startServer("socket", 100);
    try {
      const held = await holdConnections(metricsPort, 300);
      try {
        await script.waitForStderr(
          /^warning: cannot accept a metrics connection on 127\.0\.0\.1:\d+: too many open files; retrying/m,
        );
        ok(await echoes(port), "echoes while accept() fails");
      } finally {
        await held.close();
      }
      await fetchWhenServing(url);
      ok(await echoes(port));
    } finally {
      const { code, stdout, stderr } = await script.stop();
      equal(code, 0, stderr);
      match(
        stdout,
        /shutting down: received 2 datagrams .* echoed 2 datagrams/,
      );
      const told = stderr.match(/cannot accept/g)?.length ?? 0;
      // Folded: at most one line a minute.
      ok(told >= 1 && told <= 1 + (Date.now() - started) / 60_000, stderr);
    }
  },
});

Deno.test({
  name:
    "server.ts --metrics returns to its resident size after two rounds of abuse",
  ignore: IGNORE,
  async fn() {
    const { script, port, url, metricsPort } = await startServer(
      "socket",
      1024,
      ["--v8-flags=--max-semi-space-size=4"],
    );
    try {
      await fetchWhenServing(url);
      ok(await echoes(port));
      const baseline = await rssMb(script.pid);
      const after: number[] = [];
      for (let round = 0; round < 2; round++) {
        const held = await holdConnections(metricsPort, ABUSE);
        await held.waitClosed(ABUSE - MAX_HTTP_CONNECTIONS);
        await held.close();
        await fetchWhenServing(url);
        after.push(await rssMb(script.pid));
      }
      const [first, second] = after as [number, number];
      ok(
        second <= baseline + 30 && second - first < 10,
        `RSS ${baseline.toFixed(1)} MB, then ${first.toFixed(1)} and ${
          second.toFixed(1)
        } MB`,
      );
    } finally {
      equal((await script.stop()).code, 0);
    }
  },
});

Deno.test("server.ts --metrics closes a connection whose head does not come within seconds", async () => {
  const { script, metricsPort } = await startServer("socket", 1024);
  try {
    const silent = await holdConnections(metricsPort, 1);
    const started = Date.now();
    await silent.waitClosed(1);
    // The header timeout is seconds, not the 30 s waitClosed allows.
    ok(Date.now() - started < 25_000);
    await silent.close();
  } finally {
    equal((await script.stop()).code, 0);
  }
});
