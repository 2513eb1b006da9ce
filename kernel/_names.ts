/**
 * The text of an IP address the engine reads from its buffer, cached by the
 * address's bytes: a busy source (or a server's own destination address)
 * is formatted once, not once per datagram.
 *
 * @module
 */

import { formatIp } from "./_sockaddr.ts";

const NAME_CACHE_SIZE = 256;

/** A direct-mapped cache of formatted addresses, keyed by their words. */
export class NameCache {
  #keys = new Int32Array(NAME_CACHE_SIZE * 5);
  #names = new Array<string>(NAME_CACHE_SIZE).fill("");

  /**
   * The address of `family` (4 or 6) whose bytes start at byte `offset`
   * (4-aligned) of the buffer `u8` and `u32` view, formatted as Deno does.
   */
  name(
    u8: Uint8Array,
    u32: Uint32Array,
    offset: number,
    family: 4 | 6,
  ): string {
    const keys = this.#keys;
    const w = offset >> 2;
    let k0: number, k1: number, k2: number, k3: number;
    if (family === 4) {
      k0 = u32[w]! | 0;
      k1 = k2 = k3 = 0;
    } else {
      k0 = u32[w]! | 0;
      k1 = u32[w + 1]! | 0;
      k2 = u32[w + 2]! | 0;
      k3 = u32[w + 3]! | 0;
    }
    let h = k0 ^ k1 ^ k2 ^ k3;
    h = (h ^ (h >>> 8) ^ (h >>> 16) ^ (h >>> 24)) & (NAME_CACHE_SIZE - 1);
    const e = h * 5;
    if (
      keys[e] === family && keys[e + 1] === k0 && keys[e + 2] === k1 &&
      keys[e + 3] === k2 && keys[e + 4] === k3
    ) {
      return this.#names[h]!;
    }
    const name = formatIp(u8, offset, family);
    keys[e] = family;
    keys[e + 1] = k0;
    keys[e + 2] = k1;
    keys[e + 3] = k2;
    keys[e + 4] = k3;
    this.#names[h] = name;
    return name;
  }
}
