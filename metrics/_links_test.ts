import { deepEqual, equal } from "node:assert/strict";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { histogramQuantile, LINK_METRICS as M, readLinks } from "./_links.ts";

Deno.test("histogramQuantile interpolates inside a bucket as Prometheus does, and gives the highest bound for a rank in +Inf", () => {
  const buckets = new Map([[0.001, 10], [0.01, 30], [Infinity, 40]]);
  // Rank 20 of 40: halfway through the second bucket's 20.
  equal(histogramQuantile(0.5, buckets), 0.001 + (0.01 - 0.001) * 0.5);
  // Rank 5: halfway through the first bucket, which starts at 0.
  equal(histogramQuantile(0.125, buckets), 0.0005);
  equal(histogramQuantile(0.99, buckets), 0.01);
  equal(histogramQuantile(0.5, new Map([[0.1, 0], [Infinity, 0]])), null);
});

Deno.test("readLinks adds up a target's flows, splits STAMP loss and delay by direction, and keeps the order of the targets", async () => {
  const registry = new Registry();
  registry.setDefaultLabels({ node: "a" });
  const labelNames = ["target", "flow"];
  const registers = [registry];
  const sent = new Counter({ name: M.sent, help: "s", labelNames, registers });
  const lost = new Counter({ name: M.lost, help: "l", labelNames, registers });
  const up = new Gauge({ name: M.up, help: "u", labelNames, registers });
  const rtt = new Histogram({
    name: M.rtt,
    help: "r",
    labelNames,
    buckets: [0.001, 0.01],
    registers,
  });
  const oneWay = new Histogram({
    name: M.oneWay,
    help: "o",
    labelNames: ["target", "direction"],
    buckets: [0.001, 0.01],
    registers,
  });
  const byDirection = new Counter({
    name: M.lostByDirection,
    help: "d",
    labelNames: ["target", "direction"],
    registers,
  });
  for (const flow of ["0", "1"]) {
    sent.inc({ target: "t2", flow }, 10);
    lost.inc({ target: "t2", flow }, 1);
    sent.inc({ target: "t1", flow }, 5);
    rtt.observe({ target: "t1", flow }, 0.005);
  }
  up.set({ target: "t2", flow: "0" }, 1);
  up.set({ target: "t2", flow: "1" }, 0);
  up.set({ target: "t1", flow: "0" }, 1);
  byDirection.inc({ target: "t2", direction: "forward" }, 2);
  byDirection.inc({ target: "t2", direction: "backward" }, 0);
  // A target that never answered: its loss each way is unknown, not 0.
  sent.inc({ target: "t3", flow: "0" }, 4);
  lost.inc({ target: "t3", flow: "0" }, 4);
  byDirection.inc({ target: "t3", direction: "forward" }, 0);
  byDirection.inc({ target: "t3", direction: "backward" }, 0);
  oneWay.observe({ target: "t2", direction: "backward" }, 0.0005);
  const doc = await readLinks(registry);
  deepEqual(doc.links.map((link) => [link.source, link.target]), [
    ["a", "t2"],
    ["a", "t1"],
    ["a", "t3"],
  ]);
  const [t2, t1, t3] = doc.links;
  deepEqual([t3!.lost, t3!.lostForward, t3!.lostBackward], [4, null, null]);
  deepEqual([t2!.sent, t2!.lost, t2!.up], [20, 2, { flows: 1, of: 2 }]);
  deepEqual([t2!.lostForward, t2!.lostBackward], [2, 0]);
  deepEqual(t2!.rtt, [null, null, null]);
  deepEqual(t2!.forward, null);
  equal(t2!.backward![0], 0.0005);
  deepEqual([t1!.sent, t1!.lost, t1!.lostForward], [10, 0, null]);
  // Both in the bucket from 1 to 10 ms: the median halfway through it.
  equal(t1!.rtt[0], 0.001 + (0.01 - 0.001) * (1 - 0) / (2 - 0));
  equal(doc.leftOut, 0);
});
