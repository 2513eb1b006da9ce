/**
 * A minimal DNS responder over UDP for tests: A, AAAA and SRV answers
 * from a table, NXDOMAIN for a name not in it, an empty answer for a type
 * it lacks. `Deno.resolveDns` reads the system's resolv.conf and ignores
 * `/etc/hosts`, so a test that wants the monitor to resolve names of its
 * own runs this where that resolv.conf points.
 *
 * As a script it serves the table in a JSON file, read again at every
 * query so a test can change the answers, and prints `listening
 * HOST:PORT` once it is ready:
 *
 * ```sh
 * deno run --unstable-net --allow-net --allow-read testing/dns_responder.ts 127.0.0.1:0 records.json
 * ```
 *
 * @module
 */

import { parseAddress, WORDS } from "../net/address.ts";

/** One SRV record: where a service listens. */
export interface SrvRecord {
  /** The host name of the service's instance. */
  target: string;
  /** Its port. */
  port: number;
  /** Lower first; default 0. */
  priority?: number;
  /** Default 0. */
  weight?: number;
}

/** The records of one name. */
export interface DnsRecords {
  A?: string[];
  AAAA?: string[];
  SRV?: SrvRecord[];
}

/** Names (with or without the final dot, any case) and their records. */
export type DnsTable = Record<string, DnsRecords>;

const TYPES: Record<number, keyof DnsRecords> = {
  1: "A",
  28: "AAAA",
  33: "SRV",
};
const TYPE_CODES = { A: 1, AAAA: 28, SRV: 33 } as const;
const NXDOMAIN = 3;
const FORMERR = 1;

/** A name without its final dot, in lower case. */
function canonical(name: string): string {
  return (name.endsWith(".") ? name.slice(0, -1) : name).toLowerCase();
}

function encodeName(name: string): number[] {
  const bytes: number[] = [];
  for (const label of canonical(name).split(".").filter(Boolean)) {
    const encoded = new TextEncoder().encode(label);
    bytes.push(encoded.length, ...encoded);
  }
  bytes.push(0);
  return bytes;
}

function addressBytes(text: string, family: 4 | 6): number[] {
  if (parseAddress(text) !== family) {
    throw new TypeError(`Cannot answer with "${text}": not IPv${family}`);
  }
  const bytes: number[] = [];
  for (let k = 0; k < (family === 4 ? 1 : 4); k++) {
    const word = WORDS[k]!;
    bytes.push(
      word >>> 24,
      (word >>> 16) & 255,
      (word >>> 8) & 255,
      word & 255,
    );
  }
  return bytes;
}

function u16(value: number): number[] {
  return [(value >>> 8) & 255, value & 255];
}

/** The question of a query: its name, type and where it ends. */
function readQuestion(
  query: Uint8Array,
): { name: string; type: number; end: number } | undefined {
  let at = 12;
  const labels: string[] = [];
  while (at < query.length && query[at] !== 0) {
    const length = query[at]!;
    // A query's question carries no compression pointers.
    if (length > 63 || at + 1 + length > query.length) return undefined;
    labels.push(
      new TextDecoder().decode(query.subarray(at + 1, at + 1 + length)),
    );
    at += 1 + length;
  }
  if (at + 5 > query.length) return undefined;
  const type = query[at + 1]! << 8 | query[at + 2]!;
  return { name: labels.join("."), type, end: at + 5 };
}

/**
 * The response to one query from `table`; `undefined` for a datagram too
 * short to be a query at all.
 */
export function answer(
  query: Uint8Array,
  table: DnsTable,
): Uint8Array | undefined {
  if (query.length < 12) return undefined;
  const question = readQuestion(query);
  const header = [
    query[0]!,
    query[1]!,
    // QR, the query's opcode and RD; RA.
    0x80 | (query[2]! & 0x79),
    0x80,
  ];
  if (question === undefined) {
    header[3]! |= FORMERR;
    return new Uint8Array([
      ...header,
      ...u16(0),
      ...u16(0),
      ...u16(0),
      ...u16(0),
    ]);
  }
  const records = Object.entries(table).find(([name]) =>
    canonical(name) === canonical(question.name)
  )?.[1];
  const answers: number[][] = [];
  const kind = TYPES[question.type];
  if (records === undefined) header[3]! |= NXDOMAIN;
  else if (kind !== undefined) {
    for (const record of records[kind] ?? []) {
      let data: number[];
      if (kind === "SRV") {
        const srv = record as SrvRecord;
        data = [
          ...u16(srv.priority ?? 0),
          ...u16(srv.weight ?? 0),
          ...u16(srv.port),
          ...encodeName(srv.target),
        ];
      } else {
        data = addressBytes(record as string, kind === "A" ? 4 : 6);
      }
      answers.push([
        // A pointer to the question's name, at offset 12.
        0xc0,
        12,
        ...u16(TYPE_CODES[kind]),
        ...u16(1),
        // TTL 0: every lookup asks again.
        0,
        0,
        0,
        0,
        ...u16(data.length),
        ...data,
      ]);
    }
  }
  return new Uint8Array([
    ...header,
    ...u16(1),
    ...u16(answers.length),
    ...u16(0),
    ...u16(0),
    ...query.subarray(12, question.end),
    ...answers.flat(),
  ]);
}

/** A running responder. */
export interface DnsResponder {
  /** Where it listens. */
  addr: Deno.NetAddr;
  /** The questions asked so far, as `TYPE NAME`. */
  questions: string[];
  /** Stops it. */
  close(): Promise<void>;
}

/**
 * Answers DNS queries on UDP `hostname:port` from the table `table()`
 * returns at each query, until closed.
 */
export function serveDns(
  hostname: string,
  port: number,
  table: () => DnsTable | Promise<DnsTable>,
): DnsResponder {
  const conn = Deno.listenDatagram({ transport: "udp", hostname, port });
  const questions: string[] = [];
  const serving = (async () => {
    try {
      for await (const [query, from] of conn) {
        const question = readQuestion(query);
        if (question !== undefined) {
          questions.push(
            `${TYPES[question.type] ?? question.type} ${
              canonical(question.name)
            }`,
          );
        }
        const response = answer(query, await table());
        if (response !== undefined) await conn.send(response, from);
      }
    } catch {
      // Closed.
    }
  })();
  return {
    addr: conn.addr as Deno.NetAddr,
    questions,
    async close() {
      conn.close();
      await serving;
    },
  };
}

if (import.meta.main) {
  const [listen, file] = Deno.args;
  const match = /^\[?([^\]]+)\]?:(\d+)$/.exec(listen ?? "");
  if (match === null || file === undefined) {
    console.error("usage: dns_responder.ts HOST:PORT RECORDS.json");
    Deno.exit(2);
  }
  const responder = serveDns(
    match[1]!,
    Number(match[2]),
    async () => JSON.parse(await Deno.readTextFile(file)),
  );
  const { hostname, port } = responder.addr;
  console.log(
    `listening ${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`,
  );
}
