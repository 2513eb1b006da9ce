import { deepEqual, equal, ok } from "node:assert/strict";
import {
  type Lan,
  NetnsServer,
  nsTest,
  reportSkip,
  SYS,
} from "../testing/netns.ts";
import {
  type Running,
  sample,
  scratchDir,
  seriesOf,
  startScript,
} from "../testing/metrics.ts";
import { waitUntil } from "../testing/wait.ts";

reportSkip("the monitor's --targets-dns, resolved by our DNS responder");

// Prints the body of the URL it is given: a scrape from inside a namespace.
const FETCH = `
const response = await fetch(Deno.args[0]);
console.log(await response.text());
`;

/** The targets the monitor in the peer namespace has series for, and the text. */
async function scrape(
  lan: Lan,
  url: string,
): Promise<{ targets: string[]; text: string }> {
  const { stdout, stderr } = await lan.deno(lan.peer, FETCH, [url]);
  ok(stdout.includes("udp_echo_probe_up"), stderr);
  const targets = [
    ...new Set(
      seriesOf(stdout, "udp_echo_probes_sent_total").map((series) =>
        /target="([^"]+)"/.exec(series)![1]!
      ),
    ),
  ].sort();
  return { targets, text: stdout };
}

/** Whether every one of `targets` has an intact reply counted on its flow 0. */
function allAnswered(text: string, targets: string[]): boolean {
  return targets.every((target) =>
    sample(
      text,
      `udp_echo_probes_received_total{target="${target}",flow="0",node="n1"}`,
    ) >= 1
  );
}

/**
 * The monitor in the peer namespace, whose resolv.conf names our responder
 * on the server's address: `ip netns exec` mounts `/etc/netns/PEER/` files
 * over `/etc/`, as a pod's own resolv.conf is its cluster's DNS.
 */
function startMonitor(lan: Lan, args: string[]): Running {
  return startScript(
    "client.ts",
    [
      ...args,
      "--refresh",
      "0.2",
      "--node",
      "n1",
      "-i",
      "50",
      "--ndjson",
      "--metrics",
      "10.1.0.2:0",
    ],
    ["--allow-net", "--allow-ffi", SYS],
    lan.peer,
  );
}

async function metricsUrl(monitor: Running): Promise<string> {
  const header = JSON.parse(
    (await monitor.waitFor(/^(\{"event":"monitor".*)\n/m))[1]!,
  );
  return header.metrics;
}

nsTest(
  "client.ts --metrics --targets-dns probes every A and AAAA address (SRV: with their ports) but its own, and follows the answers (namespaces, our DNS responder)",
  async (lan) => {
    const server = new NetnsServer(
      lan.server,
      ["-H", "10.1.0.1", "-H", "fd00:1::1", "--io", "socket"],
      [SYS],
    );
    await using files = await scratchDir();
    const etc = `/etc/netns/${lan.peer}`;
    let responder: Running | undefined;
    try {
      const port = await server.port();
      const records = (aaaa: string[]) =>
        JSON.stringify({
          // 10.1.0.2 is the monitor's own address, as a headless Service lists it.
          "fleet.test": { A: ["10.1.0.1", "10.1.0.2"], AAAA: aaaa },
          "_echo._udp.fleet.test": { SRV: [{ target: "fleet.test.", port }] },
        });
      await files.write("records.json", records(["fd00:1::1"]));
      responder = startScript(
        "testing/dns_responder.ts",
        [
          "10.1.0.1:53",
          `${files.dir}/records.json`,
        ],
        ["--allow-net", `--allow-read=${files.dir}`],
        lan.server,
      );
      await responder.waitFor(/^listening 10\.1\.0\.1:53$/m);
      await lan.sh([
        `mkdir -p ${etc}`,
        `echo 'nameserver 10.1.0.1' > ${etc}/resolv.conf`,
      ]);
      const v4 = `10.1.0.1:${port}`;
      const v6 = `[fd00:1::1]:${port}`;

      // A service name: the SRV records' hosts, on the SRV records' port.
      const byService = startMonitor(lan, [
        "--targets-dns",
        "_echo._udp.fleet.test",
        "-p",
        "9",
      ]);
      try {
        const url = await metricsUrl(byService);
        let seen = await scrape(lan, url);
        await waitUntil(async () => {
          seen = await scrape(lan, url);
          return allAnswered(seen.text, [v4, v6]);
        }, "both addresses of the SRV record's host answer on its port");
        deepEqual(seen.targets, [v4, v6].sort());
      } finally {
        const { code, stderr } = await byService.stop("SIGTERM");
        equal(code, 0, stderr);
      }

      // A name: its A and AAAA addresses on the -p port.
      const byName = startMonitor(lan, [
        "--targets-dns",
        "fleet.test",
        "-p",
        String(port),
      ]);
      try {
        const url = await metricsUrl(byName);
        let seen = await scrape(lan, url);
        await waitUntil(async () => {
          seen = await scrape(lan, url);
          return allAnswered(seen.text, [v4, v6]);
        }, "both addresses of the name answer");
        deepEqual(seen.targets, [v4, v6].sort());
        await files.write("records.json", records([]));
        await waitUntil(
          async () => !(seen = await scrape(lan, url)).targets.includes(v6),
          "the address DNS no longer gives loses its series",
        );
        deepEqual(seen.targets, [v4]);
        // No answer at all: the lookup fails, and the last good set stays.
        await responder.stop();
        await byName.waitForError(
          /cannot resolve targets of fleet\.test: .*; the last good set stays\n/,
        );
        deepEqual((await scrape(lan, url)).targets, [v4]);
      } finally {
        const { code, stderr } = await byName.stop("SIGTERM");
        equal(code, 0, stderr);
        equal(stderr.split("\n").filter(Boolean).length, 1, stderr);
      }
    } finally {
      await lan.sh([
        `rm -rf ${etc}`,
        "rmdir --ignore-fail-on-non-empty /etc/netns",
      ]);
      await responder?.stop();
      await server.stop();
    }
  },
);
