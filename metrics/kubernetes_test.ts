/**
 * deploy/kubernetes/ cannot be applied here (no cluster) and its image
 * cannot be built (no container registry), so this test checks what can
 * be checked on one machine: the manifests parse and fit together, and
 * each container's command line, moved to loopback, starts and prints its
 * start-up line, so a renamed or missing flag cannot slip through.
 *
 * The YAML is read with the `yaml` package (npm) rather than by hand:
 * Kubernetes files use block sequences, quoted scalars and several
 * documents per stream, and a parser of our own would be one more thing to
 * get wrong in the very check meant to catch mistakes.
 */

import { deepEqual, equal, ok } from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { ROOT } from "../testing/cli.ts";
import { sh, startWatched, type Watched } from "../testing/shell.ts";
import { NETNS_SKIP, nsTest, reportSkip } from "../testing/netns.ts";
import { scratchDir, seriesOf } from "../testing/metrics.ts";
import { waitUntil } from "../testing/wait.ts";
import { MAX_MONITOR_FLOWS } from "./monitor_cli.ts";

const DIR = new URL("deploy/kubernetes/", ROOT);

// deno-lint-ignore no-explicit-any
type Manifest = any;

interface Container {
  name: string;
  command: string[];
  args: string[];
  workingDir?: string;
  env?: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  ports?: { name: string; containerPort: number; protocol?: string }[];
}

async function manifests(): Promise<Manifest[]> {
  const found: Manifest[] = [];
  for await (const entry of Deno.readDir(DIR)) {
    if (!entry.name.endsWith(".yaml")) continue;
    const text = await Deno.readTextFile(new URL(entry.name, DIR));
    for (const document of parseAllDocuments(text)) {
      equal(document.errors.length, 0, `${entry.name}: ${document.errors}`);
      found.push(document.toJS());
    }
  }
  return found;
}

function kind(all: Manifest[], name: string): Manifest {
  const found = all.filter((manifest) => manifest.kind === name);
  equal(found.length, 1, `one ${name} in deploy/kubernetes/`);
  return found[0];
}

/** The values a cluster fills in from `fieldRef`s, as this test fakes them. */
const FIELD_VALUES: Record<string, string> = {
  "spec.nodeName": "test-node",
  "metadata.namespace": "test-namespace",
};

/** The value after `flag` in `args`. */
function flagValue(args: string[], flag: string): string | undefined {
  const at = args.indexOf(flag);
  return at < 0 ? undefined : args[at + 1];
}

/**
 * The container's command line as it would run in the pod, `$(VAR)`
 * expanded from its env (`fields` standing in for the cluster's), `deno`
 * this Deno. With `loopback`, it is moved to loopback: every `0.0.0.0`
 * bind becomes `127.0.0.1` and every port it listens on 0 (a free one).
 */
function podCommand(
  container: Container,
  options: { loopback: boolean; fields?: Record<string, string> },
): string[] {
  const fields = { ...FIELD_VALUES, ...options.fields };
  const env = new Map<string, string>();
  for (const variable of container.env ?? []) {
    const path = variable.valueFrom?.fieldRef?.fieldPath;
    ok(path !== undefined && path in fields, `${variable.name}'s value`);
    env.set(variable.name, fields[path]!);
  }
  const expand = (word: string) =>
    word.replace(/\$\((\w+)\)/g, (_, name) => {
      ok(env.has(name), `${container.name} uses $(${name}), not in its env`);
      return env.get(name)!;
    });
  const words = [...container.command, ...container.args].map(expand);
  const script = words.findIndex((word) => word.endsWith(".ts"));
  const listens = script >= 0 && words[script] === "server.ts";
  return words.map((word, k) => {
    if (k === 0 && word === "deno") return Deno.execPath();
    if (!options.loopback) return word;
    if (word === "0.0.0.0") return "127.0.0.1";
    if (/^0\.0\.0\.0:\d+$/.test(word)) return "127.0.0.1:0";
    // The reflector's own port; the monitor's -p is its targets'.
    if (listens && words[k - 1] === "-p") return "0";
    return word;
  });
}

/** The flags of `words` after the script that its `--help` does not list. */
async function unknownFlags(words: string[]): Promise<string[]> {
  const script = words.findIndex((word) => word.endsWith(".ts"));
  const { stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--unstable-net", "--allow-all", words[script]!, "--help"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const help = new TextDecoder().decode(stdout);
  return words.slice(script + 1)
    .filter((word) => /^--?[a-z]/i.test(word))
    .filter((flag) =>
      !new RegExp(`(^|[\\s,])${flag.replace(/-/g, "\\-")}\\b`, "m").test(help)
    );
}

Deno.test("deploy/kubernetes: the DaemonSet, its headless Service and the PodMonitor fit together", async () => {
  const all = await manifests();
  const daemonSet = kind(all, "DaemonSet");
  const service = kind(all, "Service");
  const podMonitor = kind(all, "PodMonitor");
  const labels = daemonSet.spec.template.metadata.labels;
  deepEqual(daemonSet.spec.selector.matchLabels, labels);
  deepEqual(service.spec.selector, labels);
  deepEqual(podMonitor.spec.selector.matchLabels, labels);
  equal(service.spec.clusterIP, "None", "the Service is headless");
  const containers: Container[] = daemonSet.spec.template.spec.containers;
  deepEqual(containers.map((c) => c.name), ["reflector", "monitor"]);
  const [reflector, monitor] = containers as [Container, Container];
  // The monitors look up this Service, and probe the reflectors' port.
  const name = flagValue(monitor.args, "--targets-dns");
  ok(
    name?.startsWith(`${service.metadata.name}.$(POD_NAMESPACE).svc.`),
    `--targets-dns ${name} names the Service`,
  );
  const stampPort = Number(flagValue(reflector.args, "-p"));
  equal(Number(flagValue(monitor.args, "-p")), stampPort);
  deepEqual(
    service.spec.ports.map((p: Manifest) => [p.protocol, p.port]),
    [["UDP", stampPort]],
  );
  // Each container declares the ports it serves; the PodMonitor scrapes them.
  for (const container of containers) {
    const metricsPort = Number(
      flagValue(container.args, "--metrics")!.split(":").pop(),
    );
    ok(
      container.ports?.some((p) =>
        p.containerPort === metricsPort && p.name.startsWith("metrics-")
      ),
      `${container.name} declares its metrics port ${metricsPort}`,
    );
  }
  const metricsPorts = containers.flatMap((c) => c.ports ?? [])
    .map((p) => p.name).filter((n) => n.startsWith("metrics-")).sort();
  deepEqual(
    podMonitor.spec.podMetricsEndpoints.map((e: Manifest) => e.port).sort(),
    metricsPorts,
  );
  // Without the operator: the scrape job keeps exactly these pods' ports.
  // (Debian's promtool is built without Kubernetes discovery, so it cannot
  // check this file.)
  const scrape = parseAllDocuments(
    await Deno.readTextFile(new URL("prometheus-scrape.yml", DIR)),
  )[0]!.toJS();
  const keeps = scrape.scrape_configs[0].relabel_configs.filter((
    r: Manifest,
  ) => r.action === "keep");
  const keep = (label: string) =>
    new RegExp(
      `^(?:${
        keeps.find((r: Manifest) => r.source_labels[0] === label).regex
      })$`,
    );
  ok(
    keep("__meta_kubernetes_pod_label_app_kubernetes_io_name").test(
      labels["app.kubernetes.io/name"],
    ),
  );
  const portKeep = keep("__meta_kubernetes_pod_container_port_name");
  ok(metricsPorts.every((name) => portKeep.test(name)));
  ok(!portKeep.test("stamp"));
});

Deno.test('deploy/kubernetes: the DaemonSet\'s pods meet the Pod Security Standard "restricted", so a namespace that enforces it admits them', async () => {
  const pod = kind(await manifests(), "DaemonSet").spec.template.spec;
  const podContext = pod.securityContext ?? {};
  ok(!pod.hostNetwork && !pod.hostPID && !pod.hostIPC, "no host namespaces");
  for (const container of pod.containers as Manifest[]) {
    const context = container.securityContext ?? {};
    const at = (field: string) => `${container.name}: ${field}`;
    ok(
      (context.runAsNonRoot ?? podContext.runAsNonRoot) === true,
      at("runAsNonRoot"),
    );
    ok((context.runAsUser ?? podContext.runAsUser) !== 0, at("runAsUser"));
    ok(
      ["RuntimeDefault", "Localhost"].includes(
        (context.seccompProfile ?? podContext.seccompProfile)?.type,
      ),
      at("seccompProfile.type RuntimeDefault or Localhost"),
    );
    equal(context.allowPrivilegeEscalation, false, at("privilege escalation"));
    ok(!context.privileged, at("privileged"));
    ok(context.capabilities?.drop?.includes("ALL"), at("drop ALL"));
    deepEqual(
      (context.capabilities?.add ?? []).filter((c: string) =>
        c !== "NET_BIND_SERVICE"
      ),
      [],
      at("capabilities added"),
    );
    ok(
      (container.ports ?? []).every((p: Manifest) => p.hostPort === undefined),
      at("no hostPort"),
    );
  }
});

Deno.test("deploy/kubernetes: the monitor's memory limit holds the most targets a monitor runs, by the latest scale run in bench/RESULTS.md", async () => {
  const pod = kind(await manifests(), "DaemonSet").spec.template.spec;
  const monitor = pod.containers.find((c: Manifest) => c.name === "monitor");
  const limit = /^(\d+)(Mi|Gi)$/.exec(monitor.resources.limits.memory);
  ok(limit, `a memory limit in Mi or Gi: ${monitor.resources.limits.memory}`);
  const limitMiB = Number(limit[1]) * (limit[2] === "Gi" ? 1024 : 1);
  // The first (latest) `monitor_scale.ts --stamp` table: RSS MiB at 100
  // and 1,000 targets, drawn out to the monitor's cap on flows.
  const results = await Deno.readTextFile(
    new URL("bench/RESULTS.md", ROOT),
  );
  const run = results.split(/^\$ /m).find((part) =>
    /^deno run .*bench\/monitor_scale\.ts --stamp\n/.test(part)
  );
  ok(run, "a monitor_scale.ts --stamp run in bench/RESULTS.md");
  const rss = (targets: number) => {
    const row = new RegExp(`^\\| ${targets} \\|.*$`, "m").exec(run)![0];
    return Number(row.split("|")[4]);
  };
  const [small, large] = [rss(100), rss(1000)];
  const atCap = large + (large - small) / 900 * (MAX_MONITOR_FLOWS - 1000);
  ok(
    limitMiB > atCap,
    `the monitor's limit, ${limitMiB} MiB, is below the ${
      Math.round(atCap)
    } MiB of ${MAX_MONITOR_FLOWS} targets (${large} MiB at 1,000): a large cluster's monitors would be OOM-killed`,
  );
});

reportSkip("the Kubernetes containers' command lines");

Deno.test({
  name:
    "deploy/kubernetes: each container's command line starts here on loopback and ends with exit 0 on SIGTERM",
  ignore: NETNS_SKIP !== undefined,
  async fn() {
    const all = await manifests();
    const pod = kind(all, "DaemonSet").spec.template.spec;
    const containers: Container[] = pod.containers;
    // As in the pod: its user and group, no capability, no privilege
    // gained, and a Deno cache it can read but not write (the image's is
    // written at build by root), so an engine that needed root or a
    // capability would fail here as it would there.
    const { runAsUser, runAsGroup } = pod.securityContext;
    await using cache = await scratchDir();
    const denoDir = JSON.parse(await sh(`'${Deno.execPath()}' info --json`))
      .denoDir;
    await sh(
      `cp -r '${denoDir}/npm' '${cache.dir}/' && chmod -R a+rX,go-w '${cache.dir}'`,
    );
    const asThePod = [
      "setpriv",
      `--reuid=${runAsUser}`,
      `--regid=${runAsGroup}`,
      "--clear-groups",
      "--no-new-privs",
      "--inh-caps=-all",
      "--bounding-set=-all",
      "env",
      `DENO_DIR=${cache.dir}`,
    ];
    const missing: string[] = [];
    for (const container of containers) {
      const words = podCommand(container, { loopback: true });
      const unknown = await unknownFlags(words);
      if (unknown.length > 0) {
        missing.push(`${container.name}: ${unknown.join(", ")}`);
        continue;
      }
      // The reflector's start-up line and the monitor's: then stop it as
      // Kubernetes would. Each runs in a network namespace of its own with
      // loopback only, so the monitor's DNS lookup of the cluster's name
      // leaves no trace outside this machine (it fails at once).
      const running = startWatched([
        "unshare",
        "-n",
        "sh",
        "-c",
        'ip link set lo up && exec "$@"',
        "sh",
        ...asThePod,
        ...words,
      ]);
      await running.waitFor(/^(starting up on|MONITOR) /m);
      // The reflector runs the FFI engine, not the socket backend.
      if (container.name === "reflector") {
        await running.waitFor(/^io: batch /m);
      }
      const { code, said } = await running.stop("SIGTERM");
      equal(code, 0, `${container.name} ended with ${code}: ${said}`);
    }
    equal(
      missing.join("; "),
      "",
      `The manifests use flags that the scripts' --help lacks: ${
        missing.join("; ")
      }`,
    );
  },
});

Deno.test("deploy/kubernetes/Containerfile copies every source folder the package publishes, and caches files that exist", async () => {
  const text = await Deno.readTextFile(new URL("Containerfile", DIR));
  const copied = [...text.matchAll(/^COPY (.+) \S+$/gm)]
    .flatMap((found) => found[1]!.split(/\s+/));
  const config = JSON.parse(
    await Deno.readTextFile(new URL("deno.json", ROOT)),
  );
  const sources = (config.publish.include as string[]).filter((entry) =>
    entry.endsWith("/") && !["docs/", "deploy/"].includes(entry)
  );
  for (const folder of sources) ok(copied.includes(folder), folder);
  for await (const entry of Deno.readDir(ROOT)) {
    if (entry.name.endsWith(".ts") && !entry.name.endsWith("_test.ts")) {
      ok(copied.includes(entry.name), entry.name);
    }
  }
  const cached = /RUN deno cache --frozen ([^\n]+(?:\\\n[^\n]+)*)/.exec(text);
  ok(cached, "a deno cache step");
  for (const file of cached[1]!.split(/[\s\\]+/).filter(Boolean)) {
    await Deno.stat(new URL(file, ROOT));
  }
});

// Prints the body of the URL it is given: a scrape from inside a namespace.
const FETCH = `
const response = await fetch(Deno.args[0]);
console.log(await response.text());
`;

nsTest(
  "deploy/kubernetes: two pods in two namespaces, their command lines unchanged, find each other through the Service's name and measure the link each way",
  async (lan) => {
    const daemonSet = kind(await manifests(), "DaemonSet");
    const service = kind(await manifests(), "Service");
    const [reflector, monitor] = daemonSet.spec.template.spec
      .containers as [Container, Container];
    const pods = [
      { ns: lan.server, address: "10.1.0.1", node: "node-one" },
      { ns: lan.peer, address: "10.1.0.2", node: "node-two" },
    ];
    const namespace = FIELD_VALUES["metadata.namespace"];
    const name = `${service.metadata.name}.${namespace}.svc.cluster.local`;
    const port = Number(flagValue(reflector.args, "-p"));
    const metricsPort = flagValue(monitor.args, "--metrics")!.split(":").pop();
    await using files = await scratchDir();
    // The headless Service's records: every pod, the asking one included.
    await files.write(
      "records.json",
      JSON.stringify({ [name]: { A: pods.map((pod) => pod.address) } }),
    );
    const running: Watched[] = [];
    const inPod = (ns: string, words: string[]) => {
      const watched = startWatched(["ip", "netns", "exec", ns, ...words]);
      running.push(watched);
      return watched;
    };
    let responder: Watched | undefined;
    try {
      // Our DNS server stands for the cluster's, in the first pod's namespace.
      responder = startWatched([
        "ip",
        "netns",
        "exec",
        lan.server,
        Deno.execPath(),
        "run",
        "--allow-net",
        `--allow-read=${files.dir}`,
        "testing/dns_responder.ts",
        "10.1.0.1:53",
        `${files.dir}/records.json`,
      ]);
      await responder.waitFor(/^listening /m);
      // Each pod's resolv.conf names the cluster's DNS, ours here.
      await lan.sh(
        pods.map((pod) =>
          `mkdir -p /etc/netns/${pod.ns} && echo 'nameserver 10.1.0.1' > /etc/netns/${pod.ns}/resolv.conf`
        ),
      );
      for (const pod of pods) {
        const fields = { "spec.nodeName": pod.node };
        await inPod(pod.ns, podCommand(reflector, { loopback: false, fields }))
          .waitFor(/^starting up on /m);
        await inPod(pod.ns, podCommand(monitor, { loopback: false, fields }))
          .waitFor(/^MONITOR /m);
      }
      for (const [k, pod] of pods.entries()) {
        const other = `${pods[1 - k]!.address}:${port}`;
        const url = `http://127.0.0.1:${metricsPort}/metrics`;
        let text = "";
        await waitUntil(async () => {
          text = (await lan.deno(pod.ns, FETCH, [url])).stdout;
          return text.split("\n").some((line) =>
            line.startsWith("udp_echo_stamp_one_way_delay_seconds_count{") &&
            line.includes(`target="${other}"`) &&
            Number(line.slice(line.lastIndexOf(" ") + 1)) > 0
          );
        }, `${pod.node} measures one-way delay to ${other}`);
        // Its own address is skipped: the other pod is its only target.
        const targets = new Set(
          seriesOf(text, "udp_echo_probes_sent_total").map((series) =>
            /target="([^"]+)"/.exec(series)![1]
          ),
        );
        deepEqual([...targets], [other]);
        ok(
          seriesOf(text, "udp_echo_probes_sent_total").every((series) =>
            series.includes(`node="${pod.node}"`)
          ),
          `${pod.node}'s series carry its node label`,
        );
      }
      for (const watched of running.splice(0).reverse()) {
        const { code, said } = await watched.stop("SIGTERM");
        equal(code, 0, said);
      }
    } finally {
      for (const watched of running.reverse()) await watched.stop("SIGKILL");
      await responder?.stop();
      await lan.sh([
        ...pods.map((pod) => `rm -rf /etc/netns/${pod.ns}`),
        "rmdir --ignore-fail-on-non-empty /etc/netns",
      ]);
    }
  },
);
