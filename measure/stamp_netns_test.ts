/**
 * The STAMP Session-Sender between two network namespaces, against
 * `server.ts --stamp`, with nftables dropping packets each way or rewriting
 * the source address: the rules' counters are the ground truth for the
 * directional loss, the NAT rule for the Location TLV's hint.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { type Lan, NetnsServer, nsTest, reportSkip } from "../testing/netns.ts";
import { ROOT, runScript } from "../testing/cli.ts";

reportSkip("the STAMP directional loss and NAT tests in namespaces");

const IO_MODES = ["socket", "batch"] as const;

/** Runs `client.ts` in namespace `ns` with `permissions`; its exit code and JSON document. */
async function clientIn(
  ns: string,
  args: string[],
  permissions = ["--allow-net", "--allow-ffi", `--allow-read=${ROOT.pathname}`],
): Promise<{ code: number; document: ReturnType<typeof JSON.parse> }> {
  const { code, stdout, stderr } = await runScript(
    "client.ts",
    ["--json", ...args],
    { permissions, namespace: ns },
  );
  ok(stdout.startsWith("{"), `${stdout}\n${stderr}`);
  return { code, document: JSON.parse(stdout) };
}

/** Starts `server.ts --stamp` with `flags` on 10.1.0.1 in the server's namespace; its port. */
async function stampServer(
  lan: Lan,
  io: string,
  flags: string[],
): Promise<{ server: NetnsServer; port: number }> {
  const server = new NetnsServer(lan.server, [
    "-H",
    "10.1.0.1",
    "--stamp",
    "--io",
    io,
    ...flags,
  ], []);
  return { server, port: await server.port() };
}

/**
 * Drops replies and requests at the server with `numgen inc`: every 10th
 * reply from its 6th (`backward`), every 7th request from its 3rd
 * (`forward`). Neither drops the last of 200 probes or its reply, so every
 * loss falls before the last reply and the split is exact.
 */
async function dropAtServer(
  lan: Lan,
  port: number,
  ways: ("forward" | "backward")[],
): Promise<void> {
  const nft = (rule: string) => `ip netns exec ${lan.server} nft '${rule}'`;
  await lan.sh([
    nft("add table inet stamp"),
    nft("add chain inet stamp out { type filter hook output priority 0; }"),
    nft("add chain inet stamp in { type filter hook input priority 0; }"),
    ...(ways.includes("backward")
      ? [
        nft(
          `add rule inet stamp out udp sport ${port} numgen inc mod 10 == 5 counter drop`,
        ),
      ]
      : []),
    ...(ways.includes("forward")
      ? [
        nft(
          `add rule inet stamp in udp dport ${port} numgen inc mod 7 == 2 counter drop`,
        ),
      ]
      : []),
  ]);
}

const PROBES = ["--stamp", "-c", "200", "-i", "2", "-t", "1000"];

for (const io of IO_MODES) {
  nsTest(
    `client.ts --stamp --io ${io} splits loss backward only (told the reflector is stateful or not) and both ways against server.ts --stamp-stateful as nftables counted it`,
    async (lan) => {
      const { server, port } = await stampServer(lan, io, ["--stamp-stateful"]);
      try {
        const target = ["-H", "10.1.0.1", "-p", String(port), "--io", io];
        await dropAtServer(lan, port, ["backward"]);
        // Backward only: every reply carries the sender's own number, as a
        // stateless reflector's would. Unless told, the client cannot know.
        const unsure = await clientIn(lan.peer, [...target, ...PROBES]);
        const backward = await lan.counter(lan.server, "mod 10");
        ok(backward > 0);
        equal(unsure.document.lost, backward);
        equal(unsure.document.stamp.stateful, false);
        equal(unsure.document.stamp.directional_loss, null);
        ok(
          unsure.document.stamp.directional_loss_unknown.includes(
            "--reflector-stateful",
          ),
        );
        const told = await clientIn(lan.peer, [
          ...target,
          ...PROBES,
          "--reflector-stateful",
        ]);
        const backwardNow = await lan.counter(lan.server, "mod 10");
        equal(told.document.stamp.stateful, true);
        deepEqual(told.document.stamp.directional_loss, {
          forward: 0,
          backward: backwardNow - backward,
          undetermined: 0,
        });
        // Both ways: the reflector's numbers fall behind the sender's, so it
        // is seen to be stateful without being told.
        await lan.sh([
          `ip netns exec ${lan.server} nft flush table inet stamp`,
        ]);
        await dropAtServer(lan, port, ["forward", "backward"]);
        const both = await clientIn(lan.peer, [...target, ...PROBES]);
        const forward = await lan.counter(lan.server, "mod 7");
        const backwardBoth = await lan.counter(lan.server, "mod 10");
        ok(forward > 0 && backwardBoth > 0);
        equal(both.document.stamp.stateful, true);
        deepEqual(both.document.stamp.directional_loss, {
          forward,
          backward: backwardBoth,
          undetermined: 0,
        });
        equal(both.document.lost, forward + backwardBoth);
      } finally {
        await server.stop();
      }
    },
  );
}

nsTest(
  "client.ts --stamp-tlv location sees a source NAT on a wildcard-bound socket, and says unknown where it cannot learn its source",
  async (lan) => {
    const { server, port } = await stampServer(lan, "socket", []);
    try {
      const target = [
        "-H",
        "10.1.0.1",
        "-p",
        String(port),
        "-c",
        "3",
        "-i",
        "10",
      ];
      const ask = ["--stamp", "--stamp-tlv", "location"];
      const plain = await clientIn(lan.peer, [...target, ...ask]);
      equal(plain.code, 0);
      equal(plain.document.stamp.location.rewritten, false);
      ok(plain.document.stamp.location.sent_from.startsWith("10.1.0.2:"));
      // The peer's packets to the server leave from a second address of its
      // own: the port is kept, only the address differs.
      await lan.sh([
        `ip -n ${lan.peer} addr add 10.1.0.3/24 dev ${lan.peerLink}`,
        `ip netns exec ${lan.peer} nft 'add table ip nat'`,
        `ip netns exec ${lan.peer} nft 'add chain ip nat post { type nat hook postrouting priority 100; }'`,
        `ip netns exec ${lan.peer} nft 'add rule ip nat post ip daddr 10.1.0.1 udp dport ${port} counter snat to 10.1.0.3'`,
      ]);
      for (const io of IO_MODES) {
        const nat = await clientIn(lan.peer, [...target, ...ask, "--io", io]);
        equal(nat.code, 0);
        ok(await lan.counter(lan.peer, "snat to") >= 1);
        const { location } = nat.document.stamp;
        equal(location.rewritten, true, JSON.stringify(location));
        ok(location.source_seen.startsWith("10.1.0.3:"), location.source_seen);
        ok(location.sent_from.startsWith("10.1.0.2:"), location.sent_from);
        equal(
          location.source_seen.split(":")[1],
          location.sent_from.split(":")[1],
        );
      }
      // Without FFI a socket bound to the wildcard cannot learn its source.
      const blind = await clientIn(lan.peer, [...target, ...ask], [
        "--allow-net",
      ]);
      const { location } = blind.document.stamp;
      equal(location.rewritten, null);
      ok(location.rewritten_unknown.includes("--allow-ffi"));
    } finally {
      await server.stop();
    }
  },
);
