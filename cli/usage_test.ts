/**
 * The flag layer as a user meets it: every flag of both scripts, given a bad
 * value, gets one `error: cannot ...` line on stderr, nothing on stdout and
 * exit status 2.
 */

import { equal } from "node:assert/strict";
import { runScript } from "../testing/cli.ts";

/** Bad command lines and the one line each must print: [args, stderr line]. */
type Case = [string[], string];

/** Runs every case of `script` at once and checks each line and exit status. */
async function refuses(script: string, cases: Case[]): Promise<void> {
  await Promise.all(cases.map(async ([args, line]) => {
    const { code, stdout, stderr } = await runScript(script, args);
    const what = `${script} ${JSON.stringify(args)}`;
    equal(stderr, `${line}\n`, what);
    equal(stdout, "", what);
    equal(code, 2, what);
  }));
}

Deno.test("client.ts refuses bad --port usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [
      ["-p", "0"],
      'error: cannot use --port "0": expected a whole number from 1 to 65535',
    ],
    [
      ["-p", "65536"],
      'error: cannot use --port "65536": expected a whole number from 1 to 65535',
    ],
    [
      ["-p", "-1"],
      'error: cannot use --port "-1": expected a whole number from 1 to 65535',
    ],
    [
      ["--port", "x"],
      'error: cannot use --port "x": expected a whole number from 1 to 65535',
    ],
    [["-p"], "error: cannot use --port: it needs a value"],
  ]);
});

Deno.test("client.ts refuses bad --timeout usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [
      ["-t", "-5"],
      'error: cannot use --timeout "-5": expected a whole number of milliseconds from 1 to 3600000',
    ],
    [
      ["-t", "0"],
      'error: cannot use --timeout "0": expected a whole number of milliseconds from 1 to 3600000',
    ],
    [
      ["--timeout", "3600001"],
      'error: cannot use --timeout "3600001": expected a whole number of milliseconds from 1 to 3600000',
    ],
    [
      ["-t", "1.5"],
      'error: cannot use --timeout "1.5": expected a whole number of milliseconds from 1 to 3600000',
    ],
  ]);
});

Deno.test("client.ts refuses bad --retries usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [
      ["-r", "1e3"],
      'error: cannot use --retries "1e3": expected a whole number from 0 to 100',
    ],
    [
      ["-r", "101"],
      'error: cannot use --retries "101": expected a whole number from 0 to 100',
    ],
    [
      ["--retries", "-1"],
      'error: cannot use --retries "-1": expected a whole number from 0 to 100',
    ],
  ]);
});

Deno.test("client.ts refuses bad --host usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [
      ["-H", "bad host"],
      'error: cannot use --host "bad host": expected a host name, an IPv4 or an IPv6 address',
    ],
    [["--host"], "error: cannot use --host: it needs a value"],
  ]);
});

Deno.test("client.ts refuses bad --quiet usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [["--quiet=yes"], "error: cannot use --quiet: it takes no value"],
  ]);
});

Deno.test("client.ts refuses bad --json usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [["--json=1"], "error: cannot use --json: it takes no value"],
  ]);
});

Deno.test("client.ts refuses bad --help usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [["--help=1"], "error: cannot use --help: it takes no value"],
  ]);
});

Deno.test("client.ts refuses bad --version usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [["--version=1"], "error: cannot use --version: it takes no value"],
  ]);
});

Deno.test("client.ts refuses an unknown long flag with one line and exit 2", async () => {
  await refuses("client.ts", [
    [["--nope"], "error: cannot use --nope: unknown flag (see --help)"],
  ]);
});

Deno.test("client.ts refuses an unknown short flag with one line and exit 2", async () => {
  await refuses("client.ts", [
    [["-x"], "error: cannot use -x: unknown flag (see --help)"],
  ]);
});

Deno.test("client.ts refuses bad arguments with one line and exit 2", async () => {
  await refuses("client.ts", [
    [
      ["a", "-"],
      'error: cannot use "-": it reads standard input, so it stands alone',
    ],
    [
      ["-c", "1", "hello"],
      "error: cannot send a message in ping mode: its probes are the payload",
    ],
  ]);
});

Deno.test("client.ts refuses bad --count usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [
      ["-c", "-1"],
      'error: cannot use --count "-1": expected a whole number from 1 to 1000000000',
    ],
    [
      ["-c", "0x10"],
      'error: cannot use --count "0x10": expected a whole number from 1 to 1000000000',
    ],
    [
      ["-c", "1e12"],
      'error: cannot use --count "1e12": expected a whole number from 1 to 1000000000',
    ],
    [
      ["-c", " 5"],
      'error: cannot use --count " 5": expected a whole number from 1 to 1000000000',
    ],
    [
      ["-c", "5.0"],
      'error: cannot use --count "5.0": expected a whole number from 1 to 1000000000',
    ],
    [
      ["--count", "0"],
      'error: cannot use --count "0": expected a whole number from 1 to 1000000000',
    ],
  ]);
});

Deno.test("client.ts refuses bad --interval usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [
      ["-i", "-1"],
      'error: cannot use --interval "-1": expected a number of milliseconds from 0 to 3600000',
    ],
    [
      ["--interval", "3600001"],
      'error: cannot use --interval "3600001": expected a number of milliseconds from 0 to 3600000',
    ],
  ]);
});

Deno.test("client.ts refuses bad --size usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [
      ["-s", "10"],
      'error: cannot use --size "10": expected a whole number of bytes from 20 to 65527',
    ],
    [
      ["--size", "65528"],
      'error: cannot use --size "65528": expected a whole number of bytes from 20 to 65527',
    ],
  ]);
});

Deno.test("client.ts refuses bad --duration usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [
      ["-d", "0"],
      'error: cannot use --duration "0": expected a number of seconds from 0.001 to 86400',
    ],
    [
      ["--duration", "86401"],
      'error: cannot use --duration "86401": expected a number of seconds from 0.001 to 86400',
    ],
  ]);
});

Deno.test("client.ts refuses bad --wait usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [
      ["--wait", "1e3"],
      'error: cannot use --wait "1e3": expected a number of milliseconds from 0 to 3600000',
    ],
    [
      ["--wait", "-1"],
      'error: cannot use --wait "-1": expected a number of milliseconds from 0 to 3600000',
    ],
  ]);
});

Deno.test("client.ts refuses bad --window usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [
      ["-w", "0"],
      'error: cannot use --window "0": expected a whole number from 1 to 1000000',
    ],
    [
      ["--window", "1000001"],
      'error: cannot use --window "1000001": expected a whole number from 1 to 1000000',
    ],
  ]);
});

Deno.test("client.ts refuses bad --rate usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [
      ["--rate", "-5"],
      'error: cannot use --rate "-5": expected a number of probes per second from 0.001 to 10000000',
    ],
    [
      ["--rate", "0"],
      'error: cannot use --rate "0": expected a number of probes per second from 0.001 to 10000000',
    ],
  ]);
});

Deno.test("client.ts refuses bad --flows usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [
      ["--flows", "1025"],
      'error: cannot use --flows "1025": expected a whole number from 1 to 1024',
    ],
    [
      ["--flows", "0"],
      'error: cannot use --flows "0": expected a whole number from 1 to 1024',
    ],
  ]);
});

Deno.test("client.ts refuses bad --sweep usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [["--sweep=1"], "error: cannot use --sweep: it takes no value"],
    [["--sweep", "-c", "3"], "error: cannot combine --sweep and --count"],
  ]);
});

Deno.test("client.ts refuses -4 with -6 with one line and exit 2", async () => {
  await refuses("client.ts", [
    [
      ["-4", "-6", "-c", "1"],
      "error: cannot combine -4 and -6: pick one family",
    ],
  ]);
});

Deno.test("client.ts refuses bad --ipv4 usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [["--ipv4=1"], "error: cannot use --ipv4: it takes no value"],
  ]);
});

Deno.test("client.ts refuses bad --bind usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [
      ["--bind", "[::1]:x", "-c", "1"],
      'error: cannot use --bind "[::1]:x": expected ADDR, ADDR:PORT, [V6ADDR] or [V6ADDR]:PORT',
    ],
    [
      ["--bind", "127.0.0.1"],
      "error: cannot use --bind without a measurement mode (-c, -w, --sweep ...)",
    ],
  ]);
});

Deno.test("client.ts refuses bad --ndjson usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [
      ["-c", "1", "--ndjson", "--json"],
      "error: cannot combine --json and --ndjson",
    ],
    [["--ndjson=1"], "error: cannot use --ndjson: it takes no value"],
  ]);
});

Deno.test("client.ts refuses bad --max-loss usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [
      ["--max-loss", "101"],
      'error: cannot use --max-loss "101": expected a number from 0 to 100',
    ],
    [
      ["--max-loss", "-1"],
      'error: cannot use --max-loss "-1": expected a number from 0 to 100',
    ],
  ]);
});

Deno.test("client.ts refuses bad --stamp-tlv usage with one line and exit 2", async () => {
  await refuses("client.ts", [
    [
      ["--stamp", "--stamp-tlv", ""],
      'error: cannot use --stamp-tlv "": expected location, timestamp-info or class-of-service',
    ],
    [
      ["--stamp", "--stamp-tlv", "location,"],
      'error: cannot use --stamp-tlv "": expected location, timestamp-info or class-of-service',
    ],
    [
      ["--stamp", "--stamp-tlv", "location,location", "-s", "200"],
      'error: cannot use --stamp-tlv "location,location": location is given twice',
    ],
  ]);
});

Deno.test("server.ts refuses bad --port usage with one line and exit 2", async () => {
  await refuses("server.ts", [
    [
      ["-p", "65536"],
      'error: cannot use --port "65536": expected a whole number from 0 to 65535',
    ],
    [
      ["-p", "-1"],
      'error: cannot use --port "-1": expected a whole number from 0 to 65535',
    ],
    [
      ["--port", "x"],
      'error: cannot use --port "x": expected a whole number from 0 to 65535',
    ],
    [["-p"], "error: cannot use --port: it needs a value"],
  ]);
});

Deno.test("server.ts refuses bad --host usage with one line and exit 2", async () => {
  await refuses("server.ts", [
    [
      ["-H", "bad host"],
      'error: cannot use --host "bad host": expected a host name, an IPv4 or an IPv6 address',
    ],
    [["--host"], "error: cannot use --host: it needs a value"],
  ]);
});

Deno.test("server.ts refuses bad --quiet usage with one line and exit 2", async () => {
  await refuses("server.ts", [
    [["--quiet=1"], "error: cannot use --quiet: it takes no value"],
  ]);
});

Deno.test("server.ts refuses bad --json usage with one line and exit 2", async () => {
  await refuses("server.ts", [
    [["--json=1"], "error: cannot use --json: it takes no value"],
  ]);
});

Deno.test("server.ts refuses bad --rate usage with one line and exit 2", async () => {
  await refuses("server.ts", [
    [
      ["--rate", "-5"],
      'error: cannot use --rate "-5": expected a number of datagrams per second from 0 to 10000000',
    ],
    [
      ["--rate", "1e3"],
      'error: cannot use --rate "1e3": expected a number of datagrams per second from 0 to 10000000',
    ],
    [
      ["--rate", "10000001"],
      'error: cannot use --rate "10000001": expected a number of datagrams per second from 0 to 10000000',
    ],
  ]);
});

Deno.test("server.ts refuses bad --burst usage with one line and exit 2", async () => {
  await refuses("server.ts", [
    [
      ["--burst", "0"],
      'error: cannot use --burst "0": expected a whole number from 1 to 1000000000',
    ],
    [
      ["--burst", "0x10"],
      'error: cannot use --burst "0x10": expected a whole number from 1 to 1000000000',
    ],
  ]);
});

Deno.test("server.ts refuses bad --max-sources usage with one line and exit 2", async () => {
  await refuses("server.ts", [
    [
      ["--max-sources", "1e9"],
      'error: cannot use --max-sources "1e9": expected a whole number from 1 to 4194304',
    ],
    [
      ["--max-sources", "0"],
      'error: cannot use --max-sources "0": expected a whole number from 1 to 4194304',
    ],
    [
      ["--max-sources", "4194305"],
      'error: cannot use --max-sources "4194305": expected a whole number from 1 to 4194304',
    ],
  ]);
});

Deno.test("server.ts refuses bad --allow usage with one line and exit 2", async () => {
  await refuses("server.ts", [
    [
      ["--allow", "10.0.0.0/33"],
      'error: cannot use --allow "10.0.0.0/33": expected an IPv4 or IPv6 address or CIDR, such as 10.0.0.0/8',
    ],
    [
      ["--allow", "10.0.0.1/8"],
      'error: cannot use --allow "10.0.0.1/8": host bits are set; did you mean 10.0.0.0/8?',
    ],
    [
      ["--allow", "[2001:db8:0:0:1::1]/64"],
      'error: cannot use --allow "[2001:db8:0:0:1::1]/64": host bits are set; did you mean 2001:db8::/64?',
    ],
  ]);
});

Deno.test("server.ts refuses bad --deny usage with one line and exit 2", async () => {
  await refuses("server.ts", [
    [
      ["--deny", "example.com"],
      'error: cannot use --deny "example.com": expected an IPv4 or IPv6 address or CIDR, such as 10.0.0.0/8',
    ],
    [
      ["--deny", "192.168.1.77/24"],
      'error: cannot use --deny "192.168.1.77/24": host bits are set; did you mean 192.168.1.0/24?',
    ],
  ]);
});

Deno.test("server.ts refuses bad --max-size usage with one line and exit 2", async () => {
  await refuses("server.ts", [
    [
      ["--max-size", "65536"],
      'error: cannot use --max-size "65536": expected a whole number of bytes from 0 to 65535',
    ],
    [
      ["--max-size", "-1"],
      'error: cannot use --max-size "-1": expected a whole number of bytes from 0 to 65535',
    ],
  ]);
});

Deno.test("server.ts refuses bad --stats-interval usage with one line and exit 2", async () => {
  await refuses("server.ts", [
    [
      ["--stats-interval", "0"],
      'error: cannot use --stats-interval "0": expected a number of seconds from 0.01 to 86400',
    ],
    [
      ["--stats-interval", "0.001"],
      'error: cannot use --stats-interval "0.001": expected a number of seconds from 0.01 to 86400',
    ],
    [
      ["--stats-interval", "1e2"],
      'error: cannot use --stats-interval "1e2": expected a number of seconds from 0.01 to 86400',
    ],
  ]);
});

Deno.test("server.ts refuses bad --io usage with one line and exit 2", async () => {
  await refuses("server.ts", [
    [
      ["--io", "fast"],
      'error: cannot use --io "fast": expected auto, socket or batch',
    ],
  ]);
});

Deno.test("server.ts refuses bad --help usage with one line and exit 2", async () => {
  await refuses("server.ts", [
    [["--help=1"], "error: cannot use --help: it takes no value"],
  ]);
});

Deno.test("server.ts refuses bad --version usage with one line and exit 2", async () => {
  await refuses("server.ts", [
    [["--version=1"], "error: cannot use --version: it takes no value"],
  ]);
});

Deno.test("server.ts refuses bad arguments with one line and exit 2", async () => {
  await refuses("server.ts", [
    [["extra"], 'error: cannot use "extra": unexpected argument (see --help)'],
  ]);
});

Deno.test("server.ts refuses an unknown flag with one line and exit 2", async () => {
  await refuses("server.ts", [
    [["--nope"], "error: cannot use --nope: unknown flag (see --help)"],
  ]);
});

Deno.test("--help and --version answer even when other values are bad", async () => {
  for (const script of ["client.ts", "server.ts"]) {
    for (const flag of ["--help", "-h", "--version", "-V"]) {
      const args = ["-p", "-1", "--rate", "1e3", flag];
      const { code, stdout, stderr } = await runScript(script, args);
      const what = `${script} ${args.join(" ")}`;
      equal(code, 0, what);
      equal(stderr, "", what);
      equal(
        stdout.startsWith(
          flag.startsWith("--h") || flag === "-h"
            ? `Usage: ${script}`
            : `udp-echo ${script.replace(".ts", "")} `,
        ),
        true,
        what,
      );
    }
  }
});
