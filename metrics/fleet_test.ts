import { deepEqual, equal, match, ok } from "node:assert/strict";
import { runScript } from "../testing/cli.ts";
import { run } from "../testing/command.ts";
import {
  fetchText,
  type Running,
  sample,
  scratchDir,
  seriesOf,
  startEchoSocket,
  startScript,
} from "../testing/metrics.ts";
import { waitUntil } from "../testing/wait.ts";
import { flowBudget, MAX_MONITOR_FLOWS } from "./monitor_cli.ts";

/** What the monitor needs here; --node spares it --allow-sys=hostname. */
const PERMISSIONS = [
  "--allow-net",
  "--allow-ffi",
  "--allow-sys=networkInterfaces",
];

/** The monitor's metrics URL, from its `--ndjson` header. */
async function metricsUrl(monitor: Running): Promise<{
  url: string;
  header: Record<string, unknown>;
}> {
  const header = JSON.parse(
    (await monitor.waitFor(/^(\{"event":"monitor".*)\n/m))[1]!,
  );
  return { url: header.metrics as string, header };
}

/** The labels of flow `flow` of `target` on node n1, as a series spells them. */
function flowOf(target: string, flow = 0): string {
  return `{target="${target}",flow="${flow}",node="n1"}`;
}

/** The targets the exposition has series for. */
function targetsIn(text: string): string[] {
  return [
    ...new Set(
      seriesOf(text, "udp_echo_probes_sent_total").map((series) =>
        /target="([^"]+)"/.exec(series)![1]!
      ),
    ),
  ].sort();
}

Deno.test("client.ts --metrics --targets-file follows the file: an added target starts, a removed one stops and its series go, a bad version keeps the last good set", async () => {
  // Two echo servers on one port: 127.0.0.1 is this host's own address.
  const a = startEchoSocket("127.0.0.2");
  const b = startEchoSocket("127.0.0.3", a.port);
  const own = `127.0.0.1:${a.port}`;
  const peerA = `127.0.0.2:${a.port}`;
  const peerB = `127.0.0.3:${a.port}`;
  await using files = await scratchDir();
  const file = `${files.dir}/targets`;
  await files.write(
    "targets",
    `# the fleet, this host included\n${own}\n\n${peerA}   # a peer\n`,
  );
  const monitor = startScript("client.ts", [
    "--targets-file",
    file,
    // Only the file's change can make the monitor read it again in time.
    "--refresh",
    "3600",
    "--flows",
    "2",
    "--node",
    "n1",
    "-i",
    "50",
    "--ndjson",
    "--metrics",
    "127.0.0.1:0",
  ], [...PERMISSIONS, `--allow-read=${files.dir}`]);
  try {
    const { url, header } = await metricsUrl(monitor);
    deepEqual(header.targets, [peerA]);
    equal(header.node, "n1");
    equal(header.flows, 2);
    const scrape = async () => (await fetchText(url)).text;
    let text = "";
    // Both flows of the peer answer; this host is no target.
    await waitUntil(async () => {
      text = await scrape();
      return sample(
            text,
            `udp_echo_probes_received_total${flowOf(peerA, 0)}`,
          ) >=
          1 &&
        sample(text, `udp_echo_probes_received_total${flowOf(peerA, 1)}`) >= 1;
    }, "both flows of the peer are answered");
    deepEqual(targetsIn(text), [peerA]);

    await files.write("targets", `${peerB}\n`);
    await waitUntil(async () => {
      text = await scrape();
      return sample(text, `udp_echo_probes_received_total${flowOf(peerB)}`) >=
          1 && !targetsIn(text).includes(peerA);
    }, "the new peer is probed and the old one's series are gone");
    deepEqual(targetsIn(text), [peerB]);
    equal(sample(text, `udp_echo_probe_up${flowOf(peerA)}`), NaN);
    await monitor.waitFor(
      new RegExp(
        `"event":"targets","added":\\["${peerB}"\\],"removed":\\["${peerA}"\\]`,
      ),
    );

    await files.write("targets", `${peerA}\nnot a host!\n`);
    await monitor.waitForError(/cannot read targets from .*: line 2: /);
    deepEqual(targetsIn(await scrape()), [peerB]);
  } finally {
    const { code, stderr } = await monitor.stop("SIGTERM");
    await a.close();
    await b.close();
    equal(code, 0);
    const lines = stderr.split("\n").filter(Boolean);
    equal(lines.length, 1, stderr);
    match(
      lines[0]!,
      /^error: cannot read targets from .*: line 2: .*the last good set stays$/,
    );
  }
});

Deno.test("client.ts --metrics refuses bad fleet flags with one line (exit 2)", async () => {
  const cases: [string[], RegExp][] = [
    [["--metrics", "0"], /give --node NAME, or grant --allow-sys=hostname/],
    [["--metrics", "0", "--node", ""], /cannot use --node "": expected 1 to/],
    [["--metrics", "0", "--node", "n", "--flows", "0"], /--flows/],
    [["--metrics", "0", "--node", "n", "--flows", "1025"], /--flows/],
    [
      ["--metrics", "0", "--node", "n", "--refresh", "5"],
      /cannot use --refresh without --targets-file or --targets-dns/,
    ],
    [
      ["--metrics", "0", "--node", "n", "--targets-file", "/nonexistent/x"],
      /cannot read targets from \/nonexistent\/x/,
    ],
    [
      ["--metrics", "0", "--node", "n", "-i", "0.1", "-t", "60000"],
      /keeps at most 65536 probes per flow within their timeout/,
    ],
    [["--node", "n", "-c", "1"], /cannot use --node without --metrics/],
    [
      ["--targets-file", "x", "-c", "1"],
      /cannot use --targets-file without --metrics/,
    ],
  ];
  for (const [args, message] of cases) {
    const { code, stdout, stderr } = await runScript("client.ts", args, {
      permissions: ["--allow-net", "--allow-read"],
    });
    equal(code, 2, args.join(" "));
    equal(stdout, "");
    match(stderr, message, args.join(" "));
    equal(stderr.split("\n").filter(Boolean).length, 1, stderr);
  }
});

/** The resident size of process `pid`, in KiB (Deno grants /proc/PID only with --allow-all). */
async function rssKiB(pid: number): Promise<number> {
  const { stdout } = await run("cat", [`/proc/${pid}/status`]);
  const found = /VmRSS:\s+(\d+) kB/.exec(stdout);
  ok(found, `the resident size of ${pid}`);
  return Number(found[1]);
}

/** Per target, the most resident memory a monitor may grow by, in KiB. */
const MAX_KIB_PER_TARGET = 1024;

Deno.test({
  name: `a monitor grows by less than ${MAX_KIB_PER_TARGET} KiB per target`,
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    // Targets across 127.0.0.0/8 on one port: probes to a closed port.
    const port = 9;
    const many = 200;
    await using files = await scratchDir();
    await files.write("one", `127.0.0.10:${port}\n`);
    await files.write(
      "many",
      Array.from(
        { length: many + 1 },
        (_, k) => `127.0.${(10 + k) >> 8}.${(10 + k) & 255}:${port}`,
      ).join("\n"),
    );
    const rssWith = async (name: string, targets: number) => {
      const monitor = startScript("client.ts", [
        "--targets-file",
        `${files.dir}/${name}`,
        "--node",
        "n1",
        "-i",
        "100",
        "-t",
        "1000",
        "-q",
        "--metrics",
        "127.0.0.1:0",
      ], [...PERMISSIONS, `--allow-read=${files.dir}`]);
      try {
        // With -q the start-up line goes to stderr.
        const url = (await monitor.waitForError(/metrics on (http:\S+)\n/))[1]!;
        // Every target has sent a few probes, and lost the first ones.
        await waitUntil(async () => {
          const text = (await fetchText(url)).text;
          const lost = seriesOf(text, "udp_echo_probes_lost_total");
          return lost.length === targets &&
            lost.every((series) => sample(text, series) >= 3);
        }, `${targets} targets have lost 3 probes each`);
        return await rssKiB(monitor.pid);
      } finally {
        const { code } = await monitor.stop();
        equal(code, 0);
      }
    };
    const one = await rssWith("one", 1);
    const more = await rssWith("many", many + 1);
    const perTarget = (more - one) / many;
    ok(
      perTarget < MAX_KIB_PER_TARGET,
      `${
        perTarget.toFixed(0)
      } KiB per target (${one} KiB with 1, ${more} KiB with ${many + 1})`,
    );
  },
});

Deno.test("flowBudget() leaves the endpoint's connections and the process's own descriptors under the limit", () => {
  equal(flowBudget(undefined), MAX_MONITOR_FLOWS);
  equal(flowBudget(1_048_576), MAX_MONITOR_FLOWS);
  // 1024 less 256 connections and 128 descriptors of its own.
  equal(flowBudget(1024), 640);
  equal(flowBudget(64), 1);
});
