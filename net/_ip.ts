/**
 * IP literals parsed without allocating: the one parser behind the policy's
 * per-datagram checks and the canonical address comparison.
 *
 * @module
 */

// Scratch space for parsing one address: no allocation per datagram.
const GROUPS = new Uint16Array(8);
/** Where {@linkcode parseAddress} leaves the address it parsed. */
export const WORDS: Uint32Array = new Uint32Array(4);

function hexValue(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  const lower = code | 0x20;
  if (lower >= 97 && lower <= 102) return lower - 87;
  return -1;
}

/** Parses a dotted quad in `text[start, end)`; returns -1 when it is none. */
function parseIPv4(text: string, start: number, end: number): number {
  let value = 0;
  let parts = 0;
  let i = start;
  while (parts < 4) {
    const first = i;
    let part = 0;
    while (i < end) {
      const digit = text.charCodeAt(i) - 48;
      if (digit < 0 || digit > 9) break;
      part = part * 10 + digit;
      i++;
    }
    const length = i - first;
    // Leading zeros read as octal in some parsers: refuse the ambiguity.
    if (length === 0 || length > 3 || part > 255) return -1;
    if (length > 1 && text.charCodeAt(first) === 48) return -1;
    value = value * 256 + part;
    parts++;
    if (parts < 4) {
      if (i >= end || text.charCodeAt(i) !== 46) return -1;
      i++;
    }
  }
  return i === end ? value : -1;
}

/**
 * Parses an IP literal into {@linkcode WORDS}: returns 4 with the address in
 * `WORDS[0]` (IPv4-mapped IPv6 included), 6 with the 128 bits in `WORDS`, or
 * 0 when the text is no IP address. A zone (`%eth0`) is ignored.
 */
export function parseAddress(text: string): 0 | 4 | 6 {
  if (text.indexOf(":") < 0) {
    const v4 = parseIPv4(text, 0, text.length);
    if (v4 < 0) return 0;
    WORDS[0] = v4;
    return 4;
  }
  let end = text.indexOf("%");
  if (end < 0) end = text.length;
  let i = 0;
  let count = 0;
  let gap = -1;
  if (text.charCodeAt(0) === 58) {
    if (text.charCodeAt(1) !== 58) return 0;
    gap = 0;
    i = 2;
  }
  while (i < end) {
    const start = i;
    let value = 0;
    while (i < end) {
      const digit = hexValue(text.charCodeAt(i));
      if (digit < 0) break;
      value = value * 16 + digit;
      i++;
    }
    if (i < end && text.charCodeAt(i) === 46) {
      if (count > 6) return 0;
      const v4 = parseIPv4(text, start, end);
      if (v4 < 0) return 0;
      GROUPS[count++] = v4 >>> 16;
      GROUPS[count++] = v4 & 0xffff;
      i = end;
      break;
    }
    if (i === start || i - start > 4 || count === 8) return 0;
    GROUPS[count++] = value;
    if (i === end) break;
    if (text.charCodeAt(i) !== 58) return 0;
    i++;
    if (i < end && text.charCodeAt(i) === 58) {
      if (gap >= 0) return 0;
      gap = count;
      i++;
    } else if (i === end) {
      return 0;
    }
  }
  if (gap < 0) {
    if (count !== 8) return 0;
  } else {
    if (count > 7) return 0;
    const tail = count - gap;
    for (let k = 0; k < tail; k++) GROUPS[7 - k] = GROUPS[count - 1 - k]!;
    for (let k = gap; k < 8 - tail; k++) GROUPS[k] = 0;
  }
  for (let k = 0; k < 4; k++) {
    WORDS[k] = GROUPS[2 * k]! * 0x10000 + GROUPS[2 * k + 1]!;
  }
  // ::ffff:a.b.c.d is an IPv4 peer on a dual-stack socket.
  if (WORDS[0] === 0 && WORDS[1] === 0 && WORDS[2] === 0xffff) {
    WORDS[0] = WORDS[3]!;
    return 4;
  }
  return 6;
}
