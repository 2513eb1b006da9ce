#!/usr/bin/env -S deno run --allow-net --allow-run --allow-read
/**
 * Probe 0 against the rest of the run, and whether STAMP's parts add up,
 * on both backends side by side: each round runs `_first_probe_run.ts` in
 * a fresh process (a ping of `--count` probes every `--interval` ms, plain
 * and as the STAMP Session-Sender of `client.ts --stamp`) once on Deno's
 * sockets and once on the kernel engine, the order rotated each round,
 * against one `server.ts` and one `server.ts --stamp` started beforehand.
 * It reports, per mode and backend, the ratio of probe 0's RTT to the
 * run's median RTT (median and range over the rounds, and how many rounds
 * kept it within 2x), beside the same ratio of three later probes of each
 * round (how far one probe strays by chance on this host), with STAMP
 * which part probe 0 lost its time in (each of its forward, backward and
 * reflector times over the run's median of the same), and how many probes'
 * forward + backward + reflector time differs from their RTT by more than
 * 1 µs, beside how many replies were judged to span a step of the wall
 * clock (their RTT is then the monotonic one, which the parts need not
 * match).
 *
 * Usage:
 *   deno run --allow-net --allow-run --allow-read bench/first_probe.ts \
 *     [--rounds 10] [--count 200] [--interval 10] [--root DIR ...] \
 *     [--server-io auto|socket|batch] [--fresh-server]
 *
 * `--root` (repeatable) runs the rounds from other checkouts of this
 * package (each with `bench/_first_probe_run.ts`), interleaved, for a
 * before-and-after side by side; the servers are this checkout's, started
 * once with `--io` of `--server-io` (default `auto`). With
 * `--fresh-server` each round starts a server of its own from its
 * checkout and stops it after, so probe 0 also meets a server that has
 * answered nothing yet (its start-up work, or the lack of it, shows).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ROOT, startServer } from "../testing/cli.ts";
import { buildC } from "./native.ts";

/** What `server.ts --io batch` needs besides the network. */
const ENGINE = ["--allow-net", "--allow-ffi", "--allow-read=."];
const BACKENDS = ["socket", "batch"] as const;
/** Parts and RTT may differ by float rounding, far below this, in ms. */
const PARTS_TOLERANCE_MS = 0.001;
/** The plain probe's size, as `_first_probe_run.ts` sends it (the default). */
const PLAIN_SIZE = 64;
/** The row of the C reference (`first_probe.c`), in place of a checkout. */
const C_ROW = "C reference (first_probe.c)";

type Backend = typeof BACKENDS[number] | "c";

/** One round's output of `_first_probe_run.ts`. */
interface Round {
  io: Backend;
  clockSteps?: number;
  rtt: (number | null)[];
  forward?: (number | null)[];
  backward?: (number | null)[];
  reflector?: (number | null)[];
}

function median(values: number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : sorted[Math.floor(sorted.length / 2)]!;
}

/** Probe `seq`'s value over the run's median of the same series. */
function overMedian(values: (number | null)[] | undefined, seq = 0): number {
  const value = values?.[seq];
  if (values === undefined || value === null || value === undefined) {
    return NaN;
  }
  return value / median(values.filter((v): v is number => v !== null));
}

/**
 * Later probes, one a quarter, a half and three quarters through the run:
 * each waited the same interval as probe 0's successors, so their ratios
 * to the median show how far one probe strays on this host by chance.
 */
function controlProbes(count: number): number[] {
  return [1, 2, 3].map((k) => Math.floor(count * k / 4));
}

/** `server.ts` of checkout `root`, with `--stamp` or not, on `--io io`. */
function startServerOf(root: string, stamp: boolean, io: string) {
  return startServer(
    [...(stamp ? ["--stamp"] : []), "-q", "-p", "0", "--io", io],
    new URL("server.ts", `file://${root}/`).pathname,
    ["--allow-net", "--allow-ffi", `--allow-read=${root}`],
  );
}

/** One round of the C reference: plain probes, its own T1 and kernel T4. */
async function runCRound(
  program: string,
  port: number,
  options: { count: number; interval: number },
): Promise<Round> {
  const output = await new Deno.Command(program, {
    args: [
      "127.0.0.1",
      String(port),
      String(options.count),
      String(options.interval),
      String(PLAIN_SIZE),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(
      `Cannot run the C reference: ${new TextDecoder().decode(output.stderr)}`,
    );
  }
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

async function runRound(
  root: string,
  io: Backend,
  port: number,
  options: { count: number; interval: number; stamp: boolean },
): Promise<Round> {
  const output = await new Deno.Command(Deno.execPath(), {
    cwd: root,
    args: [
      "run",
      "--unstable-net",
      ...ENGINE,
      "bench/_first_probe_run.ts",
      `--port=${port}`,
      `--io=${io}`,
      `--count=${options.count}`,
      `--interval=${options.interval}`,
      ...(options.stamp ? ["--stamp"] : []),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    throw new Error(
      `Cannot run a round on ${io}: ${new TextDecoder().decode(output.stderr)}`,
    );
  }
  return JSON.parse(text);
}

function partsOff(round: Round): number {
  let off = 0;
  round.rtt.forEach((rtt, seq) => {
    const parts = round.forward![seq]! + round.backward![seq]! +
      round.reflector![seq]!;
    if (rtt !== null && !(Math.abs(parts - rtt) <= PARTS_TOLERANCE_MS)) off++;
  });
  return off;
}

const x = (value: number) => `${value.toFixed(2)}x`;

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      rounds: { type: "string", default: "10" },
      count: { type: "string", default: "200" },
      interval: { type: "string", default: "10" },
      root: { type: "string", multiple: true },
      "server-io": { type: "string", default: "auto" },
      "fresh-server": { type: "boolean", default: false },
    },
  });
  const serverIo = values["server-io"];
  const fresh = values["fresh-server"];
  const rounds = Number(values.rounds);
  const count = Number(values.count);
  const interval = Number(values.interval);
  const roots = (values.root ?? [new URL(ROOT).pathname]).map((root) =>
    Deno.realPathSync(root)
  );
  const here = new URL(ROOT).pathname.replace(/\/$/, "");
  // The C reference runs plain probes only, and only where `cc` is.
  const tools = await Deno.makeTempDir({ prefix: "first_probe_" });
  const cProgram = await buildC(tools).then(
    (built) => built.first_probe,
    (error) => {
      console.error(`no C reference row: ${error.message}`);
      return undefined;
    },
  );
  const servers = fresh ? undefined : {
    plain: await startServerOf(here, false, serverIo),
    stamp: await startServerOf(here, true, serverIo),
  };
  const results = new Map<string, Round[]>();
  try {
    for (let r = 0; r < rounds; r++) {
      // Every checkout and backend takes each place in the order in turn.
      const cells: { root: string; io: Backend }[] = roots.flatMap((root) =>
        BACKENDS.map((io) => ({ root, io }))
      );
      for (const mode of ["plain", "stamp"] as const) {
        const all = mode === "plain" && cProgram !== undefined
          ? [...cells, { root: C_ROW, io: "c" as const }]
          : cells;
        const order = all.map((_, k) => all[(k + r) % all.length]!);
        for (const { root, io } of order) {
          const own = fresh
            ? await startServerOf(
              io === "c" ? here : root,
              mode === "stamp",
              serverIo,
            )
            : undefined;
          const server = own ?? servers![mode];
          const round = await (io === "c"
            ? runCRound(cProgram!, server.port, { count, interval })
            : runRound(root, io, server.port, {
              count,
              interval,
              stamp: mode === "stamp",
            })).finally(() =>
              own?.stop()
            );
          const key = `${root}|${mode}|${io}`;
          results.set(key, [...results.get(key) ?? [], round]);
        }
      }
      console.error(`round ${r + 1} of ${rounds} done`);
    }
  } finally {
    await servers?.plain.stop();
    await servers?.stamp.stop();
    await Deno.remove(tools, { recursive: true });
  }
  const load = await new Deno.Command("cat", { args: ["/proc/loadavg"] })
    .output()
    .then((out) => new TextDecoder().decode(out.stdout).split(" ")[0])
    .catch(() => "unknown");
  console.log(
    `${rounds} rounds of ${count} probes every ${interval} ms per cell, a fresh process each, order rotated, against ${
      fresh
        ? "a fresh server.ts of the checkout per round"
        : "this checkout's server.ts"
    } (--io ${serverIo}); load average ${load} at the end\n`,
  );
  console.log(
    "| checkout | mode | backend | probe 0 / median RTT: median (range) | rounds within 2x | later probes / median RTT: median (range), within 2x | probe 0 forward / backward / reflector over their medians | probes whose parts differ from the RTT by > 1 µs | replies judged across a clock step |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const [key, list] of results) {
    const [root, mode, io] = key.split("|");
    const ratios = list.map((round) => overMedian(round.rtt));
    const controls = list.flatMap((round) =>
      controlProbes(round.rtt.length).map((seq) => overMedian(round.rtt, seq))
    ).filter(Number.isFinite);
    const controlsWithin = controls.filter((ratio) => ratio <= 2).length;
    const within = ratios.filter((ratio) => ratio <= 2).length;
    const stamp = mode === "stamp";
    const parts = stamp
      ? (["forward", "backward", "reflector"] as const).map((part) =>
        x(median(list.map((round) => overMedian(round[part]))))
      ).join(" / ")
      : "";
    const off = stamp
      ? `${list.reduce((sum, round) => sum + partsOff(round), 0)} of ${
        list.reduce((sum, round) => sum + round.rtt.length, 0)
      }`
      : "";
    console.log(
      `| ${root} | ${mode} | ${io} | ${x(median(ratios))} (${
        x(Math.min(...ratios))
      } to ${x(Math.max(...ratios))}) | ${within} of ${list.length} | ${
        x(median(controls))
      } (${x(Math.min(...controls))} to ${
        x(Math.max(...controls))
      }), ${controlsWithin} of ${controls.length} | ${parts} | ${off} | ${
        list.reduce((sum, round) => sum + (round.clockSteps ?? 0), 0)
      } |`,
    );
  }
  return 0;
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
