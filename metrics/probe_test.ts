import { equal, match, ok } from "node:assert/strict";
import { fetchWhenServing, rssMb, startLimited } from "../testing/abuse.ts";
import { sample, startEchoSocket } from "../testing/metrics.ts";
import { runScript } from "../testing/cli.ts";
import { PROBE_CONCURRENCY, PROBE_RESOLVE_TIMEOUT_MS } from "./probe.ts";

const MONITOR = [
  "--allow-net",
  "--allow-ffi",
  "--allow-read",
  "--allow-sys=networkInterfaces",
];
/** Whether this process may make private namespaces (root). */
const IS_ROOT = (() => {
  try {
    return new Deno.Command("unshare", { args: ["-n", "-m", "true"] })
      .outputSync().success;
  } catch {
    return false;
  }
})();

/** A monitor of `port` on 127.0.0.1 with `extra` flags; its /probe base URL. */
async function startMonitor(
  port: number,
  extra: string[] = [],
  options: { permissions?: string[]; wrapper?: string[]; prelude?: string } =
    {},
) {
  const monitor = startLimited("client.ts", [
    "-H",
    "127.0.0.1",
    "-p",
    String(port),
    "-t",
    "200",
    "--node",
    "test-node",
    "--metrics",
    "127.0.0.1:0",
    ...extra,
  ], { permissions: options.permissions ?? MONITOR, ...options });
  const url = (await monitor.waitFor(/metrics on (http:\S+)\n/))[1]!;
  return { monitor, base: url.replace(/\/metrics$/, "") };
}

async function get(url: string) {
  const response = await fetch(url);
  return {
    status: response.status,
    text: await response.text(),
    retryAfter: response.headers.get("retry-after"),
  };
}

Deno.test("/probe answers 503 at once past its concurrency cap", async () => {
  const echo = startEchoSocket();
  const { monitor, base } = await startMonitor(echo.port);
  try {
    const asked = 4 * PROBE_CONCURRENCY;
    const answers = await Promise.all(
      Array.from(
        { length: asked },
        () => get(`${base}/probe?target=127.0.0.1:${echo.port}&count=100`),
      ),
    );
    const ran = answers.filter((answer) => answer.status === 200);
    const busy = answers.filter((answer) => answer.status === 503);
    equal(ran.length + busy.length, asked);
    ok(ran.length <= PROBE_CONCURRENCY, `${ran.length} ran`);
    ok(busy.length > 0);
    for (const answer of busy) {
      equal(answer.retryAfter, "1");
      match(
        answer.text,
        new RegExp(
          `^Cannot probe now: ${PROBE_CONCURRENCY} probes are running; try again later\n$`,
        ),
      );
    }
    for (const answer of ran) {
      equal(
        sample(
          answer.text,
          `udp_echo_probes_sent_total{target="127.0.0.1:${echo.port}",flow="0",node="test-node"}`,
        ),
        100,
      );
    }
  } finally {
    const { code, stderr } = await monitor.stop("SIGTERM");
    await echo.close();
    equal(code, 0);
    equal(stderr, "");
  }
});

Deno.test("/probe returns to the monitor's resident size after two rounds of abuse", async () => {
  const echo = startEchoSocket();
  const { monitor, base } = await startMonitor(echo.port);
  try {
    await get(`${base}/probe?target=127.0.0.1:${echo.port}&count=10`);
    const baseline = await rssMb(monitor.pid);
    const after: number[] = [];
    for (let round = 0; round < 2; round++) {
      await Promise.all(
        Array.from({ length: 100 }, async () => {
          try {
            await get(`${base}/probe?target=127.0.0.1:${echo.port}&count=100`);
          } catch {
            // Some connections may be refused: the abuse is the point.
          }
        }),
      );
      await fetchWhenServing(`${base}/metrics`);
      after.push(await rssMb(monitor.pid));
    }
    const [first, second] = after as [number, number];
    ok(
      second <= baseline + 30 && second - first < 10,
      `RSS ${baseline.toFixed(1)} MB, then ${first.toFixed(1)} and ${
        second.toFixed(1)
      } MB`,
    );
  } finally {
    await monitor.stop("SIGTERM");
    await echo.close();
  }
});

Deno.test("/probe refuses targets a caller may not choose, each with HTTP 400 and one line", async () => {
  const echo = startEchoSocket();
  const { monitor, base } = await startMonitor(echo.port);
  try {
    const cases: [string, RegExp][] = [
      ["127.0.0.1:53", /port 53 is below 1024 and not echo \(7\) or STAMP/],
      ["127.0.0.1:19", /port 19 is below 1024/],
      ["127.0.0.1:11211", /port 11211 is a UDP service/],
      ["127.0.0.1:1900", /port 1900 is a UDP service/],
      ["127.255.255.255:7", /broadcast address of 127\.0\.0\.0\/8/],
      ["255.255.255.255:7", /broadcast or reserved/],
      ["224.0.0.1:7", /multicast/],
      ["[ff02::1]:7", /multicast/],
      ["0.0.0.0:7", /unspecified/],
      ["[::]:7", /unspecified/],
    ];
    for (const [target, reason] of cases) {
      const { status, text } = await get(`${base}/probe?target=${target}`);
      equal(status, 400, target);
      match(text, /^Cannot probe target "[^"]+": [^\n]+\n$/, target);
      match(text, reason, target);
    }
    // Echo (7) and STAMP (862) pass the policy (nothing answers there).
    for (const port of [7, 862]) {
      equal((await get(`${base}/probe?target=127.0.0.1:${port}`)).status, 200);
    }
  } finally {
    const { code, stderr } = await monitor.stop("SIGTERM");
    await echo.close();
    equal(code, 0);
    equal(stderr, "");
  }
});

Deno.test("client.ts --probe-allow turns /probe into an allow list", async () => {
  const echo = startEchoSocket();
  const { monitor, base } = await startMonitor(echo.port, [
    "--probe-allow",
    `[127.0.0.1]:${echo.port}`,
    "--probe-allow",
    "::1/128",
  ]);
  try {
    const ok200 = await get(`${base}/probe?target=127.0.0.1:${echo.port}`);
    equal(ok200.status, 200);
    equal((await get(`${base}/probe?target=[::1]:7`)).status, 200);
    for (const target of [`127.0.0.2:${echo.port}`, "127.0.0.1:7"]) {
      const refused = await get(`${base}/probe?target=${target}`);
      equal(refused.status, 400);
      equal(
        refused.text,
        `Cannot probe target "${target}": it matches no --probe-allow entry\n`,
      );
    }
    match((await get(`${base}/probe?target=[::1]:53`)).text, /below 1024/);
  } finally {
    equal((await monitor.stop("SIGTERM")).code, 0);
    await echo.close();
  }
});

Deno.test("client.ts --metrics without --allow-sys says /probe stays on loopback, and keeps to it", async () => {
  const echo = startEchoSocket();
  const { monitor, base } = await startMonitor(echo.port, [], {
    permissions: ["--allow-net", "--allow-ffi"],
  });
  try {
    await monitor.waitForStderr(
      /^warning: cannot list the network interfaces, so \/probe [^\n]* loopback targets only: grant --allow-sys=networkInterfaces\n/m,
    );
    equal(
      (await get(`${base}/probe?target=127.0.0.1:${echo.port}`)).status,
      200,
    );
    const refused = await get(`${base}/probe?target=192.0.2.1:7`);
    equal(refused.status, 400);
    match(refused.text, /without --allow-sys=networkInterfaces/);
  } finally {
    const { code, stderr } = await monitor.stop("SIGTERM");
    await echo.close();
    equal(code, 0);
    equal(stderr.split("\n").filter(Boolean).length, 1, stderr);
  }
});

Deno.test("client.ts --probe-allow refuses a bad value and goes with --metrics only (exit 2)", async () => {
  const cases: [string[], RegExp][] = [
    [
      ["--metrics", "0", "--probe-allow", "10.0.0.1/8"],
      /^error: cannot use --probe-allow "10\.0\.0\.1\/8": host bits are set/,
    ],
    [
      ["--metrics", "0", "--probe-allow", "x"],
      /^error: cannot use --probe-allow "x": expected CIDR or \[CIDR\]:PORT/,
    ],
    [
      ["-c", "1", "--probe-allow", "10.0.0.0/8"],
      /^error: cannot use --probe-allow without --metrics/,
    ],
  ];
  for (const [args, expected] of cases) {
    const { code, stdout, stderr } = await runScript("client.ts", args, {
      permissions: MONITOR,
    });
    equal(code, 2, `${args.join(" ")}: ${stderr}`);
    equal(stdout, "");
    match(stderr, expected);
  }
});

Deno.test({
  name:
    "/probe refuses the directed broadcast and network addresses of a local subnet (network namespace)",
  ignore: !IS_ROOT,
  async fn() {
    const ns = `ue-probe-${Deno.pid}`;
    const ip = async (...args: string[]) => {
      const { success, stderr } = await new Deno.Command("ip", {
        args,
        stdout: "null",
        stderr: "piped",
      }).output();
      if (!success) {
        throw new Error(
          `Cannot run ip ${args.join(" ")}: ${
            new TextDecoder().decode(stderr)
          }`,
        );
      }
    };
    await ip("netns", "add", ns);
    try {
      await ip("-n", ns, "link", "set", "lo", "up");
      await ip(
        "-n",
        ns,
        "link",
        "add",
        "v0",
        "type",
        "veth",
        "peer",
        "name",
        "v1",
      );
      await ip("-n", ns, "addr", "add", "10.99.0.1/24", "dev", "v0");
      await ip("-n", ns, "addr", "add", "10.99.0.2/24", "dev", "v1");
      await ip(
        "-n",
        ns,
        "-6",
        "addr",
        "add",
        "fd99::1/64",
        "dev",
        "v0",
        "nodad",
      );
      await ip("-n", ns, "link", "set", "v0", "up");
      await ip("-n", ns, "link", "set", "v1", "up");
      const { monitor, base } = await startMonitor(10000, [], {
        wrapper: ["ip", "netns", "exec", ns],
      });
      try {
        // The monitor's HTTP port is in the namespace: ask from there.
        const ask = async (target: string) => {
          const { stdout } = await new Deno.Command("ip", {
            args: [
              "netns",
              "exec",
              ns,
              Deno.execPath(),
              "eval",
              `const r = await fetch("${base}/probe?target=${target}"); console.log(r.status, await r.text());`,
            ],
            stdout: "piped",
            stderr: "null",
          }).output();
          return new TextDecoder().decode(stdout);
        };
        match(
          await ask("10.99.0.255:9999"),
          /^400 Cannot probe target "10\.99\.0\.255:9999": it is the broadcast address of 10\.99\.0\.0\/24\n/,
        );
        match(
          await ask("10.99.0.0:7"),
          /^400 [^\n]*network address of 10\.99\.0\.0\/24\n/,
        );
        match(
          await ask("[fd99::]:7"),
          /^400 [^\n]*network address of fd99::\/64\n/,
        );
        // A host of the subnet is fine (nothing answers: lost).
        match(await ask("10.99.0.2:7"), /^200 /);
      } finally {
        equal((await monitor.stop("SIGTERM")).code, 0);
      }
    } finally {
      await ip("netns", "del", ns);
    }
  },
});
if (!IS_ROOT) {
  console.log(
    "skipping the /probe broadcast and name-resolution tests: they need root for a network namespace and a mount namespace",
  );
}

Deno.test({
  name: "/probe gives up on a name that does not resolve within about 2 s",
  ignore: !IS_ROOT,
  async fn() {
    // A name server that never answers, for the monitor alone: its own
    // /etc/resolv.conf in a mount namespace.
    const silent = Deno.listenDatagram({
      transport: "udp",
      hostname: "127.0.0.2",
      port: 53,
    });
    const echo = startEchoSocket();
    try {
      const { monitor, base } = await startMonitor(echo.port, [], {
        wrapper: ["unshare", "-m"],
        prelude:
          `f=$(mktemp) && printf 'nameserver 127.0.0.2\\n' > "$f" && mount --bind "$f" /etc/resolv.conf && rm "$f"`,
      });
      try {
        const started = Date.now();
        const { status, text } = await get(
          `${base}/probe?target=never.answers.example:7`,
        );
        const tookMs = Date.now() - started;
        equal(status, 400);
        equal(
          text,
          `Cannot probe target "never.answers.example:7": cannot resolve never.answers.example: no answer within ${
            PROBE_RESOLVE_TIMEOUT_MS / 1000
          } s\n`,
        );
        ok(tookMs >= PROBE_RESOLVE_TIMEOUT_MS - 50, `${tookMs} ms`);
        ok(tookMs < 3 * PROBE_RESOLVE_TIMEOUT_MS, `${tookMs} ms`);
      } finally {
        equal((await monitor.stop("SIGTERM")).code, 0);
      }
    } finally {
      silent.close();
      await echo.close();
    }
  },
});
