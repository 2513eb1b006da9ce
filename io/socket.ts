/**
 * The portable I/O backend: `Deno.listenDatagram`.
 *
 * @module
 */

/**
 * Throws a `TypeError` when Deno runs without UDP support, which needs the
 * `--unstable-net` flag (or `"unstable": ["net"]` in `deno.json`).
 */
export function checkUnstableNet(): void {
  if (typeof Deno.listenDatagram !== "function") {
    throw new TypeError(
      "Cannot open a UDP socket: Deno.listenDatagram needs the --unstable-net flag",
    );
  }
}
