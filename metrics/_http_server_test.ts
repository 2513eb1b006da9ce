import { deepEqual, equal, match } from "node:assert/strict";
import { type HttpRequest, listenHttp, plainResponse } from "./_http_server.ts";

const ENCODER = new TextEncoder();

/** Sends `bytes` on a new connection and reads to the end; "" when closed without an answer. */
async function exchange(
  port: number,
  bytes: string | Uint8Array,
): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(typeof bytes === "string" ? ENCODER.encode(bytes) : bytes);
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(4096);
    for (;;) {
      let read: number | null;
      try {
        read = await conn.read(buffer);
      } catch {
        break; // reset
      }
      if (read === null) break;
      chunks.push(buffer.slice(0, read));
    }
    return new TextDecoder().decode(
      new Uint8Array(chunks.flatMap((chunk) => [...chunk])),
    );
  } finally {
    conn.close();
  }
}

function start(options: Partial<Parameters<typeof listenHttp>[2]> = {}) {
  const seen: HttpRequest[] = [];
  const server = listenHttp(
    { hostname: "127.0.0.1", port: 0 },
    (request) => {
      seen.push(request);
      return Promise.resolve(
        request.url.pathname === "/boom"
          ? Promise.reject(new Error("Broken on purpose"))
          : plainResponse(200, `path ${request.url.pathname}`),
      );
    },
    { maxConnections: 8, ...options },
  );
  return { server, port: server.addr.port, seen };
}

Deno.test("listenHttp() answers GET and HEAD once per connection, then closes", async () => {
  const { server, port, seen } = start();
  try {
    const get = await exchange(
      port,
      "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    );
    match(get, /^HTTP\/1\.1 200 OK\r\n/);
    match(
      get,
      /\r\ncontent-length: 14\r\nconnection: close\r\n\r\npath \/metrics\n$/,
    );
    const head = await exchange(port, "HEAD / HTTP/1.0\n\n");
    match(head, /^HTTP\/1\.1 200 OK\r\n[^]*content-length: 7\r\n[^]*\r\n\r\n$/);
    deepEqual(seen.map((r) => [r.method, r.url.pathname, r.url.search]), [
      ["GET", "/metrics", "?x=1"],
      ["HEAD", "/", ""],
    ]);
  } finally {
    await server.close();
  }
});

Deno.test("listenHttp() reads a target that starts with // as a path, never as a host", async () => {
  const { server, port, seen } = start();
  try {
    for (
      const target of ["//metrics", "//evil.example/probe?target=x:7", "//"]
    ) {
      match(
        await exchange(port, `GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`),
        /^HTTP\/1\.1 200 OK\r\n/,
        target,
      );
    }
    deepEqual(seen.map((r) => [r.url.host, r.url.pathname, r.url.search]), [
      ["localhost", "//metrics", ""],
      ["localhost", "//evil.example/probe", "?target=x:7"],
      ["localhost", "//", ""],
    ]);
  } finally {
    await server.close();
  }
});

Deno.test("listenHttp() refuses what it does not serve, each with one line", async () => {
  const { server, port, seen } = start({ maxHeadBytes: 1024 });
  try {
    const cases: [string, RegExp][] = [
      [
        "POST / HTTP/1.1\r\n\r\n",
        /^HTTP\/1\.1 405 [^]*allow: GET, HEAD\r\n[^]*\r\n\r\nCannot POST: only GET and HEAD\n$/,
      ],
      [
        "GET / HTTP/2.0\r\n\r\n",
        /^HTTP\/1\.1 505 [^]*\r\n\r\nCannot answer HTTP\/2\.0/,
      ],
      ["GET /\r\n\r\n", /^HTTP\/1\.1 400 [^]*Cannot read the request line\n$/],
      [
        "GET http://x/ HTTP/1.1\r\n\r\n",
        /^HTTP\/1\.1 400 [^]*expected a path\n$/,
      ],
      [
        "GET / HTTP/1.1\r\nno colon\r\n\r\n",
        /^HTTP\/1\.1 400 [^]*header field\n$/,
      ],
      [
        "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        /^HTTP\/1\.1 400 [^]*with a body\n$/,
      ],
      [
        "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        /^HTTP\/1\.1 400 /,
      ],
      [
        `GET /${"a".repeat(2000)} HTTP/1.1\r\n\r\n`,
        /^HTTP\/1\.1 431 [^]*over 1024 bytes\n$/,
      ],
      // A HEAD refused gets the status and its fields, never a body.
      ["HEAD / HTTP/1.1\r\nno colon\r\n\r\n", /^HTTP\/1\.1 400 [^]*\r\n\r\n$/],
      ["HEAD / HTTP/2.0\r\n\r\n", /^HTTP\/1\.1 505 [^]*\r\n\r\n$/],
      [
        "GET /boom HTTP/1.1\r\n\r\n",
        /^HTTP\/1\.1 500 [^]*Cannot answer: broken on purpose\n$/,
      ],
    ];
    for (const [request, expected] of cases) {
      match(await exchange(port, request), expected, JSON.stringify(request));
    }
    equal(seen.length, 1); // only /boom reached the handler
  } finally {
    await server.close();
  }
});

Deno.test("listenHttp() closes a connection whose head does not come in time", async () => {
  const { server, port } = start({ headerTimeoutMs: 100 });
  try {
    // Nothing, then half a head: both closed without an answer.
    equal(await exchange(port, new Uint8Array(0)), "");
    equal(await exchange(port, "GET / HTTP/1.1\r\nHost: x\r\n"), "");
    while (server.connections() > 0) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  } finally {
    await server.close();
  }
});

Deno.test("listenHttp() past its cap closes the connection that waited longest for its head, so slow heads cannot keep a client out", async () => {
  const { server, port } = start({ maxConnections: 2 });
  const held: Deno.Conn[] = [];
  try {
    for (let k = 0; k < 2; k++) {
      held.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      await held[k]!.write(ENCODER.encode("GET / HTTP/1.1\r\n"));
      while (server.connections() < k + 1) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
    match(await exchange(port, "GET / HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 200 /);
    // The oldest half head made room; the younger one is still open.
    equal(await held[0]!.read(new Uint8Array(1)).catch(() => null), null);
    equal(server.connections(), 1);
  } finally {
    for (const conn of held) conn.close();
    await server.close();
  }
});

Deno.test("listenHttp() past its cap closes a new connection at once when every open one is being answered", async () => {
  let release!: () => void;
  const answering = new Promise<void>((resolve) => release = resolve);
  let handled = 0;
  const server = listenHttp(
    { hostname: "127.0.0.1", port: 0 },
    async () => {
      handled++;
      await answering;
      return plainResponse(200, "late");
    },
    { maxConnections: 2 },
  );
  const port = server.addr.port;
  try {
    const answered = [
      exchange(port, "GET / HTTP/1.1\r\n\r\n"),
      exchange(port, "GET / HTTP/1.1\r\n\r\n"),
    ];
    while (handled < 2) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    equal(await exchange(port, "GET / HTTP/1.1\r\n\r\n"), "");
    release();
    for (const text of await Promise.all(answered)) {
      match(text, /^HTTP\/1\.1 200 /);
    }
  } finally {
    release();
    await server.close();
  }
});

Deno.test("listenHttp() close() ends open connections and a handler still running", async () => {
  let release!: () => void;
  const handling = new Promise<void>((resolve) => release = resolve);
  const server = listenHttp(
    { hostname: "127.0.0.1", port: 0 },
    async () => {
      await handling;
      return plainResponse(200, "late");
    },
    { maxConnections: 4 },
  );
  const idle = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  const waiting = exchange(server.addr.port, "GET / HTTP/1.1\r\n\r\n");
  while (server.connections() < 2) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const closed = server.close();
  release();
  await closed;
  equal(await waiting, "");
  equal(await idle.read(new Uint8Array(1)).catch(() => null), null);
  idle.close();
  equal(server.connections(), 0);
});

/** Keeps `clients` connections trickling a head, each reconnecting as soon as it is closed; prints one line once all are open. */
const FLOOD_SCRIPT = `
const [port, clients] = Deno.args.map(Number);
let opened = 0;
let stopped = false;
Deno.stdin.readable.pipeTo(new WritableStream()).finally(() => stopped = true);
async function client() {
  while (!stopped) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(new TextEncoder().encode("GET / HTTP/1.1\\r\\n"));
      if (++opened === clients) console.log("flooding");
      while ((await conn.read(new Uint8Array(64)).catch(() => null)) !== null);
      conn.close();
    } catch {
      // Refused or reset: connect again.
    }
  }
}
await Promise.all(Array.from({ length: clients }, client));
Deno.exit(0);
`;

Deno.test("listenHttp() past its cap lets a client whose head came whole in, however fast trickling clients reconnect", async () => {
  const { server, port } = start({ maxConnections: 16 });
  const flood = new Deno.Command(Deno.execPath(), {
    args: ["eval", FLOOD_SCRIPT, String(port), "64"],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines = flood.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    let said = "";
    while (!said.includes("flooding")) {
      const { value, done } = await lines.read();
      if (done) throw new Error("The flood ended before it started");
      said += value;
    }
    let refused = 0;
    for (let k = 0; k < 20; k++) {
      const text = await exchange(port, "GET / HTTP/1.1\r\n\r\n");
      if (!text.startsWith("HTTP/1.1 200 ")) refused++;
    }
    equal(refused, 0);
  } finally {
    await flood.stdin.close();
    await server.close();
    await lines.cancel();
    await flood.status;
  }
});
