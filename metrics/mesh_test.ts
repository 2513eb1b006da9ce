/**
 * The mesh: six namespaces on one bridge, each running a stateful STAMP
 * reflector and a monitor that reads the six from one targets file and
 * skips its own address, and a real Prometheus that
 * scrapes the six monitors and loads deploy/prometheus/rules.yml. nft
 * drops a share of one link's probes on their way to the reflector; the
 * loss matrix in PromQL must show that link and direction alone, and each
 * alert rule's expression, evaluated as a query, must select that link
 * alone (or no link, for a fault the test cannot make).
 */

import { ok } from "node:assert/strict";
import { NETNS_SKIP } from "../testing/netns.ts";
import { hasProgram, scratchDir } from "../testing/metrics.ts";
import { Mesh } from "../testing/mesh.ts";
import { waitUntil } from "../testing/wait.ts";

const NODES = 6;
const REFLECTOR_PORT = 10000;
const METRICS_PORT = 9863;
/** The share of the faulty link's probes nft drops, in percent. */
const DROP_PERCENT = 20;
/** A link without a fault must stay below this loss ratio. */
const CLEAN_LOSS = 0.02;
/**
 * The monitor's permissions: the targets file, and the interfaces, by which
 * it knows its own address among the targets.
 */
function monitorPermissions(targetsFile: string): string[] {
  return [
    "--allow-net",
    "--allow-sys=networkInterfaces",
    `--allow-read=${targetsFile}`,
  ];
}
/** Probes the faulty link sends before its loss is judged. */
const MIN_PROBES = 100;
/** The monitor's probe interval, in ms. */
const INTERVAL_MS = 100;
/** The loss matrix: the loss rule's expression without its threshold. */
const LOSS_MATRIX = `rate(udp_echo_stamp_lost_total[5m])
  / ignoring (direction) group_left rate(udp_echo_probes_sent_total[5m])`;

const SKIP = NETNS_SKIP ??
  (hasProgram("prometheus")
    ? undefined
    : "prometheus is not installed (apt-get install prometheus; .ci/run does)");
if (SKIP !== undefined) console.log(`skipped: the mesh test: ${SKIP}`);

/**
 * The monitor's arguments in node `k`: the targets of `targetsFile`, every
 * node but this one, and the node's name as its `node` label.
 */
function monitorArgs(mesh: Mesh, k: number, targetsFile: string): string[] {
  return [
    "--targets-file",
    targetsFile,
    "--node",
    `n${k}`,
    "-p",
    String(REFLECTOR_PORT),
    "-i",
    String(INTERVAL_MS),
    // A busy machine must not turn a slow reply into a loss.
    "-t",
    "2000",
    "--stamp",
    "--reflector-stateful",
    "-q",
    "--metrics",
    `${mesh.addresses[k]}:${METRICS_PORT}`,
  ];
}

function prometheusConfig(mesh: Mesh): string {
  const rules = new URL("../deploy/prometheus/rules.yml", import.meta.url);
  return `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: ["${rules.pathname}"]
scrape_configs:
  - job_name: monitor
    static_configs:
${
    mesh.addresses.map((address) =>
      `      - targets: ["${address}:${METRICS_PORT}"]`
    ).join("\n")
  }`;
}

/** A link as the series names it: source node, target node, direction. */
function linkOf(mesh: Mesh, labels: Record<string, string>): string {
  const target = mesh.addresses.indexOf(labels.target!.split(":")[0]!);
  return `${labels.node}->n${target}${
    labels.direction ? ` ${labels.direction}` : ""
  }`;
}

Deno.test({
  name:
    "a mesh of six namespaces on Prometheus: the loss matrix and every alert rule name the one link nft drops probes on",
  ignore: SKIP !== undefined,
  async fn() {
    const mesh = await Mesh.open(NODES);
    await using files = await scratchDir();
    try {
      // One file for the fleet: each monitor skips its own address.
      const targetsFile = `${files.dir}/targets`;
      await files.write(
        "targets",
        mesh.addresses.map((a) => `${a}:${REFLECTOR_PORT}\n`).join(""),
      );
      // The fault: probes from n0 to n1's reflector, on their way there.
      const [from, to] = [0, 1];
      const faulty = `n${from}->n${to} forward`;
      await mesh.sh(mesh.nodes[to]!, [
        `nft add table inet mesh`,
        `nft add chain inet mesh input '{ type filter hook input priority 0; }'`,
        `nft add rule inet mesh input ip saddr ${
          mesh.addresses[from]
        } udp dport ${REFLECTOR_PORT} numgen random mod 100 '<' ${DROP_PERCENT} counter drop comment fault`,
      ]);
      const permissions = [
        "--allow-net",
        "--allow-sys=networkInterfaces",
      ];
      const reflectors = mesh.nodes.map((ns, k) =>
        mesh.deno(ns, "server.ts", [
          "-H",
          mesh.addresses[k]!,
          "-p",
          String(REFLECTOR_PORT),
          "-q",
          "--stamp",
          "--stamp-stateful",
          "--rate",
          "0",
        ], permissions)
      );
      const prometheus = mesh.prometheus(prometheusConfig(mesh));
      await Promise.all(reflectors.map((r) => r.waitFor(/port \d+/)));
      const monitors = mesh.nodes.map((ns, k) =>
        mesh.deno(
          ns,
          "client.ts",
          monitorArgs(mesh, k, targetsFile),
          monitorPermissions(targetsFile),
        )
      );
      await Promise.all(monitors.map((m) => m.waitFor(/metrics on http/)));
      await prometheus;
      const started = performance.now();

      const { body } = await mesh.get("/api/v1/rules");
      const rules = new Map<string, string>(
        JSON.parse(body).data.groups.flatMap((
          group: { rules: { name: string; query: string }[] },
        ) => group.rules.map((rule) => [rule.name, rule.query])),
      );
      ok(rules.size === 4, `four rules loaded: ${[...rules.keys()]}`);
      const selects = async (rule: string) =>
        (await mesh.query(rules.get(rule)!)).map((s) => linkOf(mesh, s.labels))
          .sort().join(", ");

      // Every link in both directions, the faulty one alone above 2%, once
      // it has sent enough probes for its share to mean something.
      const faultyLink = `node="n${from}",target="${
        mesh.addresses[to]
      }:${REFLECTOR_PORT}"`;
      let matrix: { link: string; loss: number }[] = [];
      let said = "";
      await waitUntil(
        async () => {
          matrix = (await mesh.query(LOSS_MATRIX)).map((s) => ({
            link: linkOf(mesh, s.labels),
            loss: s.value,
          }));
          const bad = matrix.filter((cell) => !(cell.loss < CLEAN_LOSS));
          said = [
            `matrix: ${matrix.length} cells, above ${CLEAN_LOSS}: ${
              JSON.stringify(bad)
            }`,
            `loss: ${await selects("UdpEchoLinkLoss")}`,
            `delay: ${await selects("UdpEchoOneWayDelay")}`,
            `unreachable: ${await selects("UdpEchoTargetUnreachable")}`,
            `scrape down: ${
              (await mesh.query(rules.get("UdpEchoScrapeDown")!)).length
            }`,
          ].join("; ");
          const [sent] = await mesh.query(
            `udp_echo_probes_sent_total{${faultyLink}}`,
          );
          return (sent?.value ?? 0) >= MIN_PROBES &&
            matrix.length === 2 * NODES * (NODES - 1) &&
            bad.length === 1 && bad[0]!.link === faulty &&
            bad[0]!.loss > DROP_PERCENT / 200 &&
            bad[0]!.loss < DROP_PERCENT / 100 * 1.75 &&
            said.endsWith(
              `loss: ${faulty}; delay: ; unreachable: ; scrape down: 0`,
            );
        },
        "the loss matrix and the rules show the faulty link alone",
        60_000,
      )
        .catch((error) => {
          throw new Error(`${error.message}: ${said}`);
        });
      console.log(
        `the mesh showed ${faulty} at ${
          matrix.find((cell) => cell.link === faulty)!.loss.toFixed(3)
        } after ${((performance.now() - started) / 1000).toFixed(1)} s`,
      );
      // Ground truth: the fault stops (an accept rule before it freezes its
      // counter), and once later replies show every gap, the probes counted
      // lost forward are exactly those nft dropped, and none backward.
      const lost = (direction: string) =>
        mesh.query(
          `udp_echo_stamp_lost_total{${faultyLink},direction="${direction}"}`,
        );
      await mesh.sh(mesh.nodes[to]!, [
        `nft insert rule inet mesh input ip saddr ${
          mesh.addresses[from]
        } udp dport ${REFLECTOR_PORT} accept`,
      ]);
      const dropped = Number(
        /counter packets (\d+)/.exec(
          await mesh.sh(mesh.nodes[to]!, ["nft list chain inet mesh input"]),
        )![1],
      );
      await waitUntil(
        async () => {
          said = `forward ${(await lost("forward"))[0]?.value}, backward ${
            (await lost("backward"))[0]?.value
          }, nft dropped ${dropped}`;
          return said ===
            `forward ${dropped}, backward 0, nft dropped ${dropped}`;
        },
        "the probes counted lost are those nft dropped",
        60_000,
      ).catch((error) => {
        throw new Error(`${error.message}: ${said}`);
      });

      // Then the link goes down: the unreachable rule names it alone.
      await mesh.sh(mesh.nodes[to]!, [
        "nft flush chain inet mesh input",
        `nft add rule inet mesh input ip saddr ${
          mesh.addresses[from]
        } udp dport ${REFLECTOR_PORT} drop`,
      ]);
      const link = `n${from}->n${to}`;
      await waitUntil(
        async () => (said = await selects("UdpEchoTargetUnreachable")) === link,
        `the unreachable rule selects ${link} alone`,
        60_000,
      ).catch((error) => {
        throw new Error(`${error.message}: ${said}`);
      });
      for (const monitor of monitors) ok(await monitor.stop() === 0);
      for (const reflector of reflectors) ok(await reflector.stop() === 0);
    } finally {
      await mesh.close();
    }
  },
});
