/**
 * UDP payload limits (RFC 768 over IPv4 and IPv6) and a printable preview of
 * a payload for log lines.
 *
 * @example Check a payload against the IPv4 limit
 * ```ts
 * import { checkPayloadSize, MAX_IPV4_PAYLOAD } from "./payload.ts";
 * import { throws } from "node:assert/strict";
 *
 * checkPayloadSize(MAX_IPV4_PAYLOAD, "IPv4");
 * throws(() => checkPayloadSize(MAX_IPV4_PAYLOAD + 1, "IPv4"), RangeError);
 * ```
 *
 * @module
 */

import type { AddressFamily } from "./address.ts";

/** The largest UDP payload over IPv4: 65,535 less the 20-byte IP and 8-byte UDP headers. */
export const MAX_IPV4_PAYLOAD = 65_507;

/** The largest UDP payload over IPv6: 65,535 less the 8-byte UDP header. */
export const MAX_IPV6_PAYLOAD = 65_527;

/**
 * The size of every receive buffer. Deno's default (65,507) silently cuts
 * IPv6 datagrams, so receive into a buffer larger than any UDP payload.
 */
export const RECEIVE_BUFFER_SIZE = 65_536;

/**
 * Returns the largest UDP payload, in bytes, for an address family: 65,535
 * less the 8-byte UDP header, and over IPv4 less the 20-byte IP header too.
 *
 * @param family The address family.
 * @returns The payload limit in bytes.
 *
 * @example
 * ```ts
 * import { maxPayload } from "./payload.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(maxPayload("IPv4"), 65_507);
 * equal(maxPayload("IPv6"), 65_527);
 * ```
 */
export function maxPayload(family: AddressFamily): number {
  return family === "IPv6" ? MAX_IPV6_PAYLOAD : MAX_IPV4_PAYLOAD;
}

/**
 * Checks that a payload fits in one UDP datagram of the given family.
 *
 * @param size The payload's length in bytes.
 * @param family The address family it is sent over.
 * @throws {RangeError} When `size` is over {@linkcode maxPayload} of the
 * family.
 *
 * @example
 * ```ts
 * import { checkPayloadSize } from "./payload.ts";
 * import { throws } from "node:assert/strict";
 *
 * throws(() => checkPayloadSize(65_508, "IPv4"), {
 *   message: "Cannot send 65508 bytes: an IPv4 UDP payload holds at most 65507",
 * });
 * ```
 */
export function checkPayloadSize(size: number, family: AddressFamily): void {
  const limit = maxPayload(family);
  if (size > limit) {
    throw new RangeError(
      `Cannot send ${size} bytes: an ${family} UDP payload holds at most ${limit}`,
    );
  }
}

/** Options for {@linkcode previewPayload}. */
export interface PreviewOptions {
  /** Show at most this many bytes of the payload. Defaults to 100. */
  maxBytes?: number;
}

const ESCAPES: Record<number, string> = {
  0x09: "\\t",
  0x0a: "\\n",
  0x0d: "\\r",
  0x22: '\\"',
  0x5c: "\\\\",
};

function hexEscape(byte: number): string {
  return `\\x${byte.toString(16).padStart(2, "0")}`;
}

/**
 * Characters beyond ASCII that a terminal acts on rather than shows: C1
 * controls (U+009B is a one-character CSI, U+0085 breaks a line), line and
 * paragraph separators, and every format character (the bidi controls that
 * reverse text, zero-width characters, the byte order mark, tags).
 */
const UNSAFE = /^[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]$/u;

/** Length of the valid UTF-8 sequence starting at `i`, or 0 if there is none. */
function utf8SequenceLength(bytes: Uint8Array, i: number): number {
  const lead = bytes[i]!;
  const [length, min] = lead >= 0xf0 && lead <= 0xf4
    ? [4, 0x10000]
    : lead >= 0xe0 && lead <= 0xef
    ? [3, 0x800]
    : lead >= 0xc2 && lead <= 0xdf
    ? [2, 0x80]
    : [0, 0];
  if (length === 0 || i + length > bytes.length) return 0;
  let codePoint = lead & (0xff >> (length + 1));
  for (let k = 1; k < length; k++) {
    const next = bytes[i + k]!;
    if ((next & 0xc0) !== 0x80) return 0;
    codePoint = (codePoint << 6) | (next & 0x3f);
  }
  const valid = codePoint >= min && codePoint <= 0x10ffff &&
    !(codePoint >= 0xd800 && codePoint <= 0xdfff);
  return valid ? length : 0;
}

/**
 * Renders a payload for a log line: UTF-8 text shown as text in double
 * quotes, long payloads cut with a count of the bytes left out. Nothing in
 * it can move a terminal's cursor, change the text's direction or break the
 * line: ASCII controls, DEL and invalid bytes become `\xNN`, and other
 * controls, separators and format characters (C1 controls, U+2028,
 * U+2029, bidi controls, zero-width characters, U+FEFF) become `\u{X}`,
 * the code point in lower-case hex.
 *
 * @example
 * ```ts
 * import { previewPayload } from "./payload.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(previewPayload(new TextEncoder().encode("hi\n")), '"hi\\n"');
 * equal(previewPayload(new Uint8Array([0xff, 0x41])), '"\\xffA"');
 * equal(previewPayload(new TextEncoder().encode("\u009b2J")), '"\\u{9b}2J"');
 * equal(
 *   previewPayload(new TextEncoder().encode("abcdef"), { maxBytes: 4 }),
 *   '"abcd"... (2 more bytes)',
 * );
 * ```
 */
export function previewPayload(
  data: Uint8Array,
  options: PreviewOptions = {},
): string {
  const maxBytes = options.maxBytes ?? 100;
  const end = Math.min(data.length, maxBytes);
  // ignoreBOM: a U+FEFF in the payload is shown (escaped), never swallowed.
  const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  let text = "";
  let i = 0;
  while (i < end) {
    const byte = data[i]!;
    if (byte < 0x80) {
      text += ESCAPES[byte] ??
        (byte < 0x20 || byte === 0x7f
          ? hexEscape(byte)
          : String.fromCharCode(byte));
      i++;
      continue;
    }
    const length = utf8SequenceLength(data, i);
    if (length === 0 || i + length > end) {
      text += hexEscape(byte);
      i++;
      continue;
    }
    const char = decoder.decode(data.subarray(i, i + length));
    text += UNSAFE.test(char)
      ? `\\u{${char.codePointAt(0)!.toString(16)}}`
      : char;
    i += length;
  }
  const rest = data.length - i;
  return rest > 0
    ? `"${text}"... (${rest} more byte${rest === 1 ? "" : "s"})`
    : `"${text}"`;
}
