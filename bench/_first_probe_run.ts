/**
 * One round of `bench/first_probe.ts`, in a process of its own so that
 * probe 0 meets a cold start as `client.ts` does: a ping of `--count`
 * probes every `--interval` ms on `--io`, plain or as the STAMP
 * Session-Sender of `client.ts --stamp`, printing one JSON line: each
 * probe's RTT and, with `--stamp`, its forward, backward and reflector
 * times (ms, `null` without a reply), and how many replies were judged to
 * span a step of the wall clock (their RTT is then the monotonic one).
 *
 *     deno run --unstable-net --allow-net --allow-ffi --allow-read=. \
 *       bench/_first_probe_run.ts --port 10000 --io batch --stamp
 *
 * @module
 */

import { parseArgs } from "node:util";
import { runFlows } from "../measure/run.ts";
import { StampRun } from "../measure/stamp_report.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    port: { type: "string" },
    io: { type: "string", default: "socket" },
    count: { type: "string", default: "200" },
    interval: { type: "string", default: "10" },
    stamp: { type: "boolean", default: false },
  },
});
const stamp = values.stamp ? new StampRun({ ssid: 1, tlvs: [] }) : undefined;
const rtt: number[] = [];
const result = await runFlows({
  target: { hostname: "127.0.0.1", port: Number(values.port), family: "IPv4" },
  count: Number(values.count),
  intervalMs: Number(values.interval),
  format: stamp?.format,
  engineFormat: stamp?.engineFormat,
  io: values.io === "batch" ? "batch" : "socket",
  onEvent: (event) => {
    if (event.type === "reply" && !event.duplicate) {
      rtt[event.seq] = event.rttMs;
    }
  },
});
const log = stamp?.logs[0];
const each = (values: number[] | undefined) =>
  Array.from({ length: result.sent }, (_, seq) => values?.[seq] ?? null);
console.log(JSON.stringify({
  io: result.io,
  clockSteps: result.clockSteps ?? 0,
  rtt: each(rtt),
  forward: log && each(log.forward),
  backward: log && each(log.backward),
  reflector: log && each(log.reflector),
}));
