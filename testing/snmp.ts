/**
 * The kernel's UDP counters of a network namespace, from `/proc/net/snmp`:
 * the ground truth of receive-buffer drops (`RcvbufErrors`) that tests
 * compare what the client and the server report with.
 *
 * @module
 */

import { run } from "./command.ts";

/** The `Udp:` counters of `/proc/net/snmp`, by name (`InDatagrams`, `RcvbufErrors`, …). */
export type UdpCounters = Record<string, number>;

/** Parses the two `Udp:` lines (names, then values) of `/proc/net/snmp`. */
export function parseUdpCounters(snmp: string): UdpCounters {
  const lines = snmp.split("\n").filter((line) => line.startsWith("Udp:"));
  const names = lines[0]?.split(/\s+/).slice(1) ?? [];
  const values = lines[1]?.split(/\s+/).slice(1).map(Number) ?? [];
  if (names.length === 0 || names.length !== values.length) {
    throw new Error(`Cannot read the Udp: lines of /proc/net/snmp: ${snmp}`);
  }
  return Object.fromEntries(names.map((name, k) => [name, values[k]!]));
}

/** The UDP counters of network namespace `ns` (needs root). */
export async function udpCounters(ns: string): Promise<UdpCounters> {
  const { success, stdout, stderr } = await run("ip", [
    "netns",
    "exec",
    ns,
    "cat",
    "/proc/net/snmp",
  ]);
  if (!success) {
    throw new Error(`Cannot read /proc/net/snmp in ${ns}: ${stderr}`);
  }
  return parseUdpCounters(stdout);
}
