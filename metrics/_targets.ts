/**
 * Where the monitor's targets come from besides `-H`: a targets file (one
 * `HOST[:PORT]` per line, read again when it changes) and a DNS name (its
 * A and AAAA records, or its SRV records when the name is a service name,
 * `_service._proto.name`), looked up again every refresh. Both are the
 * operator's configuration, trusted as `-H` is; a version that cannot be
 * read or has a bad line is reported once and the last good set stays.
 *
 * @module
 */

import {
  type AddressFamily,
  familyOf,
  formatAddress,
  type HostPort,
  parseHost,
  parsePort,
  type ResolvedAddress,
  sameHost,
} from "../net/address.ts";
import { resolveTarget } from "../net/resolve.ts";
import { errorMessage } from "../net/errors.ts";

/** The largest targets file read, in bytes. */
export const MAX_TARGETS_FILE_BYTES = 1 << 20;
/** The most targets one source (the file, the DNS name) may give. */
export const MAX_SOURCE_TARGETS = 4096;
/** How long one DNS lookup may take before the refresh gives up on it, in ms. */
const DNS_TIMEOUT_MS = 5000;
/** A change to the file is read this long after it is seen, so a write in steps is read whole. */
const SETTLE_MS = 50;

/**
 * One target line: `HOST`, `HOST:PORT`, `[V6ADDR]:PORT` or a bare IPv6
 * address; the port defaults to `port`. Throws TypeError or RangeError.
 */
export function parseTargetLine(text: string, port: number): HostPort {
  const withPort = /^(\[[^\]]+\]|[^:[\]]+):(\d+)$/.exec(text);
  if (withPort !== null) {
    const hostname = parseHost(withPort[1]!);
    const given = parsePort(withPort[2]!);
    if (given === 0) throw new RangeError("port 0 is no target's port");
    return { hostname, port: given };
  }
  if (text.includes(":") && familyOf(text) !== "IPv6") {
    throw new TypeError(
      "expected HOST, HOST:PORT, [V6ADDR]:PORT or an IPv6 address",
    );
  }
  return { hostname: parseHost(text), port };
}

/**
 * The targets of a targets file's text: one per line; `#` starts a
 * comment; blank lines are skipped. Throws an Error naming the first bad
 * line, or when there are more than {@linkcode MAX_SOURCE_TARGETS}.
 */
export function parseTargetsText(text: string, port: number): HostPort[] {
  const targets: HostPort[] = [];
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") continue;
    try {
      targets.push(parseTargetLine(line, port));
    } catch (error) {
      throw new Error(`line ${index + 1}: ${errorMessage(error)}`);
    }
    if (targets.length > MAX_SOURCE_TARGETS) {
      throw new Error(`more than ${MAX_SOURCE_TARGETS} targets`);
    }
  }
  return targets;
}

/** Reads a targets file of at most {@linkcode MAX_TARGETS_FILE_BYTES}; throws when it cannot. */
export async function readTargetsFile(path: string): Promise<string> {
  using file = await Deno.open(path, { read: true });
  const buffer = new Uint8Array(MAX_TARGETS_FILE_BYTES + 1);
  let length = 0;
  while (length < buffer.length) {
    const read = await file.read(buffer.subarray(length));
    if (read === null) break;
    length += read;
  }
  if (length > MAX_TARGETS_FILE_BYTES) {
    throw new Error(`it is larger than ${MAX_TARGETS_FILE_BYTES} bytes`);
  }
  return new TextDecoder("utf-8", { fatal: true }).decode(
    buffer.subarray(0, length),
  );
}

/** Whether `name` is a service name, `_service._proto.name`, looked up as SRV. */
export function isServiceName(name: string): boolean {
  return /^_[^.]+\._[^.]+\./.test(name);
}

/** Options for {@linkcode resolveDnsTargets}. */
export interface DnsTargetOptions {
  /** Only addresses of this family (`-4`, `-6`). */
  family?: AddressFamily;
  /** A name server to ask instead of the system's (`/etc/resolv.conf`). */
  nameServer?: Deno.ResolveDnsOptions["nameServer"];
  /** Gives up on the lookups. */
  signal?: AbortSignal;
}

/** The records of `name` of one type; none when the name or the type has none. */
async function lookup<T extends "A" | "AAAA" | "SRV">(
  name: string,
  type: T,
  options: DnsTargetOptions,
): Promise<T extends "SRV" ? Deno.SrvRecord[] : string[]> {
  try {
    return await Deno.resolveDns(name, type as "SRV", {
      nameServer: options.nameServer,
      signal: AbortSignal.any([
        AbortSignal.timeout(DNS_TIMEOUT_MS),
        ...(options.signal ? [options.signal] : []),
      ]),
    }) as T extends "SRV" ? Deno.SrvRecord[] : string[];
  } catch (error) {
    // NXDOMAIN and an empty answer both: no addresses, the set is empty.
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
}

/**
 * Runs `tasks` together, each with a signal of its own; when one fails,
 * aborts the others and waits for them before throwing its error, so no
 * lookup outlives the call that started it.
 */
async function allOrNone<T>(
  tasks: ((signal: AbortSignal) => Promise<T>)[],
  outer?: AbortSignal,
): Promise<T[]> {
  const controller = new AbortController();
  const signal = outer
    ? AbortSignal.any([outer, controller.signal])
    : controller.signal;
  let failure: { error: unknown } | undefined;
  const settled = await Promise.allSettled(
    tasks.map((task) =>
      task(signal).catch((error) => {
        failure ??= { error };
        controller.abort();
        throw error;
      })
    ),
  );
  if (failure !== undefined) throw failure.error;
  return settled.map((result) => (result as PromiseFulfilledResult<T>).value);
}

/** The A and AAAA records of `name`, of `family` only when given. */
async function addressesOf(
  name: string,
  port: number,
  options: DnsTargetOptions,
): Promise<ResolvedAddress[]> {
  const { family } = options;
  const [v4, v6] = await allOrNone<string[]>([
    (signal) =>
      family === "IPv6"
        ? Promise.resolve([])
        : lookup(name, "A", { ...options, signal }),
    (signal) =>
      family === "IPv4"
        ? Promise.resolve([])
        : lookup(name, "AAAA", { ...options, signal }),
  ], options.signal);
  return [
    ...v4!.map((hostname) => ({ hostname, port, family: "IPv4" as const })),
    ...v6!.map((hostname) => ({ hostname, port, family: "IPv6" as const })),
  ];
}

/**
 * The targets DNS gives for `name`: every A and AAAA address with `port`,
 * or, for a service name, every SRV record's host (its addresses) and
 * port. An answer without records is an empty set; throws when the
 * lookup fails (a timeout, a refused query) or gives more than
 * {@linkcode MAX_SOURCE_TARGETS}.
 */
export async function resolveDnsTargets(
  name: string,
  port: number,
  options: DnsTargetOptions = {},
): Promise<ResolvedAddress[]> {
  let found: ResolvedAddress[];
  if (isServiceName(name)) {
    const services = await lookup(name, "SRV", options);
    found = (await allOrNone(
      services.map((srv) => (signal) =>
        addressesOf(srv.target, srv.port, { ...options, signal })
      ),
      options.signal,
    )).flat();
  } else {
    found = await addressesOf(name, port, options);
  }
  if (found.length > MAX_SOURCE_TARGETS) {
    throw new Error(`more than ${MAX_SOURCE_TARGETS} targets`);
  }
  return found;
}

/**
 * Whether a change to `paths` (a watch event of the folder of `file`) may
 * change `file`: the file itself, or a name starting with `..`, as the
 * links a Kubernetes ConfigMap volume swaps (`..data`).
 */
export function concernsFile(paths: readonly string[], file: string): boolean {
  const name = file.slice(file.lastIndexOf("/") + 1);
  return paths.some((path) => {
    const changed = path.slice(path.lastIndexOf("/") + 1);
    return changed === name || changed.startsWith("..");
  });
}

/** Options for {@linkcode TargetSources}. */
export interface TargetSourcesOptions {
  /** `--targets-file`. */
  file?: string;
  /** `--targets-dns`. */
  dns?: string;
  /** The port of a target that names none (`-p`). */
  port: number;
  /** `-4` or `-6`. */
  family?: AddressFamily;
  /** `--refresh`, in ms. */
  refreshMs: number;
  /** A name server to ask instead of the system's (tests). */
  nameServer?: Deno.ResolveDnsOptions["nameServer"];
  /** This host's addresses, read at each refresh: targets to skip. */
  ownAddresses: () => readonly string[];
  /** The set changed: every target of both sources, own addresses left out. */
  onChange: (targets: ResolvedAddress[]) => void;
  /** A source failed or recovered; `undefined` when it recovered. */
  onError: (source: string, message: string | undefined) => void;
}

/**
 * The targets of a file and a DNS name, kept current: read once by
 * {@linkcode start}, then again every refresh and, for the file, soon
 * after it changes. A source that fails keeps its last good set.
 */
export class TargetSources {
  #file: ResolvedAddress[] = [];
  #dns: ResolvedAddress[] = [];
  #errors = new Map<string, string>();
  #last = "";
  #stopped = new AbortController();
  #wake: (() => void) | undefined;
  /** The file changed since the last read: read it (alone) at once. */
  #fileChanged = false;
  #watcher: Deno.FsWatcher | undefined;
  #loop: Promise<void> | undefined;

  constructor(readonly options: TargetSourcesOptions) {}

  /**
   * Reads both sources once; throws when the file cannot be read or has a
   * bad line (a DNS failure is reported and retried instead, since names
   * come and go with the fleet). Then refreshes until {@linkcode stop}.
   */
  async start(): Promise<ResolvedAddress[]> {
    const { file } = this.options;
    if (file !== undefined) this.#file = await this.#readFile(file);
    await this.#refresh({ dnsOnly: true });
    if (file !== undefined) this.#watch(file);
    this.#loop = this.#run();
    return this.#current();
  }

  /** Ends the refreshes. */
  async stop(): Promise<void> {
    this.#stopped.abort();
    this.#wake?.();
    try {
      this.#watcher?.close();
    } catch {
      // Closed already.
    }
    await this.#loop;
  }

  async #readFile(path: string): Promise<ResolvedAddress[]> {
    const targets = parseTargetsText(
      await readTargetsFile(path),
      this.options.port,
    );
    return await Promise.all(
      targets.map((target) =>
        resolveTarget(target, { family: this.options.family })
      ),
    );
  }

  /**
   * Refreshes both sources every refresh, and the file alone as soon as it
   * changes (also when it changed during a refresh).
   */
  async #run(): Promise<void> {
    const { refreshMs } = this.options;
    let dueAt = performance.now() + refreshMs;
    while (!this.#stopped.signal.aborted) {
      if (!this.#fileChanged) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(
            done,
            Math.max(0, dueAt - performance.now()),
          );
          function done() {
            clearTimeout(timer);
            resolve();
          }
          this.#wake = done;
        });
        this.#wake = undefined;
      }
      if (this.#stopped.signal.aborted) return;
      const due = performance.now() >= dueAt;
      this.#fileChanged = false;
      await this.#refresh({ dnsOnly: false, fileOnly: !due });
      if (due) dueAt = performance.now() + refreshMs;
    }
  }

  /** Watches the file's folder: a ConfigMap replaces a link there, not the file. */
  #watch(path: string): void {
    const folder = path.includes("/")
      ? path.slice(0, path.lastIndexOf("/")) || "/"
      : ".";
    try {
      this.#watcher = Deno.watchFs(folder, { recursive: false });
    } catch {
      // No watching (a permission, a file system without it): the refresh reads it.
      return;
    }
    (async () => {
      try {
        for await (const event of this.#watcher!) {
          // Other files of a busy folder (/etc, /tmp) wake nothing.
          if (!concernsFile(event.paths, path)) continue;
          setTimeout(() => {
            this.#fileChanged = true;
            this.#wake?.();
          }, SETTLE_MS);
        }
      } catch {
        // Closed.
      }
    })();
  }

  /**
   * Reads the file (unless `dnsOnly`) and looks the name up (unless
   * `fileOnly`: a change of the file asks DNS nothing).
   */
  async #refresh(
    { dnsOnly, fileOnly = false }: { dnsOnly: boolean; fileOnly?: boolean },
  ): Promise<void> {
    const { file, dns } = this.options;
    if (file !== undefined && !dnsOnly) {
      try {
        this.#file = await this.#readFile(file);
        this.#report(`--targets-file ${file}`, undefined);
      } catch (error) {
        this.#report(
          `--targets-file ${file}`,
          `Cannot read targets from ${file}: ${
            errorMessage(error)
          }; the last good set stays`,
        );
      }
    }
    if (dns !== undefined && !fileOnly) {
      try {
        this.#dns = await resolveDnsTargets(dns, this.options.port, {
          family: this.options.family,
          nameServer: this.options.nameServer,
          signal: this.#stopped.signal,
        });
        this.#report(`--targets-dns ${dns}`, undefined);
      } catch (error) {
        // Stopped: the lookup was given up on, not failed.
        if (this.#stopped.signal.aborted) return;
        this.#report(
          `--targets-dns ${dns}`,
          `Cannot resolve targets of ${dns}: ${
            errorMessage(error)
          }; the last good set stays`,
        );
      }
    }
    if (this.#stopped.signal.aborted) return;
    const current = this.#current();
    const key = current.map(formatAddress).join(" ");
    if (key !== this.#last) {
      this.#last = key;
      if (this.#loop !== undefined) this.options.onChange(current);
    }
  }

  #report(source: string, message: string | undefined): void {
    if (this.#errors.get(source) === message) return;
    if (message === undefined) this.#errors.delete(source);
    else this.#errors.set(source, message);
    this.options.onError(source, message);
  }

  /** Both sources' targets, each once, without this host's own addresses. */
  #current(): ResolvedAddress[] {
    const own = this.options.ownAddresses();
    const seen = new Set<string>();
    const targets: ResolvedAddress[] = [];
    for (const target of [...this.#file, ...this.#dns]) {
      const label = formatAddress(target);
      if (seen.has(label)) continue;
      seen.add(label);
      if (own.some((address) => sameHost(address, target.hostname))) continue;
      targets.push(target);
    }
    return targets;
  }
}
