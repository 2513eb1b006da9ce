/**
 * The per-source rate limiter behind the echo policy: GCRA, the
 * virtual-scheduling form of a token bucket, over a linear-probing table in
 * typed arrays sized once, so memory stays flat under a flood of spoofed
 * sources and a decision allocates nothing.
 *
 * Each source keeps one number, the time its bucket will be full again. A
 * source whose bucket is full is indistinguishable from a new one, so such
 * entries are reused freely; when the table is full of busy sources, the
 * entry closest to full of a small sample is evicted, which forgives the
 * least.
 *
 * @module
 */

// How far an eviction looks for a victim when the source table is full.
const EVICT_SAMPLES = 8;
const EVICT_SCAN = 64;

function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** What {@linkcode RateLimiter} enforces. */
export interface RateLimiterOptions {
  /** Datagrams per second per source, above 0. */
  rate: number;
  /** Datagrams a source may send at once, at least 1. */
  burst: number;
  /** The most sources tracked at once. */
  maxSources: number;
  /** Seed for the table's hash. */
  seed: number;
}

/** One token bucket per source key, in a table of fixed size. */
export class RateLimiter {
  readonly #interval: number;
  readonly #tolerance: number;
  readonly #maxSources: number;
  readonly #mask: number;
  readonly #seed: number;
  readonly #family: Uint8Array;
  readonly #keyHigh: Uint32Array;
  readonly #keyLow: Uint32Array;
  readonly #fullAt: Float64Array;
  #sources = 0;
  #hand = 0;

  /** Allocates the table: two slots per source, a power of two. */
  constructor(options: RateLimiterOptions) {
    const { rate, burst, maxSources } = options;
    this.#maxSources = maxSources;
    this.#interval = 1000 / rate;
    // A hair of slack so float rounding never refuses a datagram on time.
    this.#tolerance = (burst - 1 + 1e-6) * this.#interval;
    // Keep the load at most one half so probes stay short.
    let capacity = 8;
    while (capacity < 2 * maxSources) capacity *= 2;
    this.#mask = capacity - 1;
    this.#seed = options.seed >>> 0;
    this.#family = new Uint8Array(capacity);
    this.#keyHigh = new Uint32Array(capacity);
    this.#keyLow = new Uint32Array(capacity);
    this.#fullAt = new Float64Array(capacity);
  }

  /** Bytes held by the table; fixed when the limiter is built. */
  get tableBytes(): number {
    return this.#family.byteLength + this.#keyHigh.byteLength +
      this.#keyLow.byteLength + this.#fullAt.byteLength;
  }

  /**
   * Spends a token of the source keyed `family`/`high`/`low` at `now`
   * (milliseconds); false when its bucket is empty.
   */
  spend(family: number, high: number, low: number, now: number): boolean {
    let slot = this.#find(family, high, low, now);
    if (slot < 0) {
      slot = ~slot;
      // Taking a forgettable entry's slot needs no room; an empty one may.
      if (this.#family[slot] === 0 && this.#sources >= this.#maxSources) {
        this.#evict(now);
        slot = ~this.#find(family, high, low, now);
      }
      if (this.#family[slot] === 0) this.#sources++;
      this.#family[slot] = family;
      this.#keyHigh[slot] = high;
      this.#keyLow[slot] = low;
      this.#fullAt[slot] = now;
    }
    const start = Math.max(this.#fullAt[slot]!, now);
    if (start - now > this.#tolerance) return false;
    this.#fullAt[slot] = start + this.#interval;
    return true;
  }

  #home(family: number, high: number, low: number): number {
    return fmix32(fmix32(high ^ this.#seed) ^ low ^ family) & this.#mask;
  }

  /**
   * Returns the key's slot, or `~slot` for where to put it: the first entry
   * on its probe path whose bucket is full (so forgettable), else the empty
   * slot that ends the path.
   */
  #find(family: number, high: number, low: number, now: number): number {
    let reusable = -1;
    for (
      let slot = this.#home(family, high, low);;
      slot = (slot + 1) & this.#mask
    ) {
      const held = this.#family[slot];
      if (held === 0) return ~(reusable >= 0 ? reusable : slot);
      if (
        held === family && this.#keyHigh[slot] === high &&
        this.#keyLow[slot] === low
      ) {
        return slot;
      }
      if (reusable < 0 && this.#fullAt[slot]! <= now) reusable = slot;
    }
  }

  /** Frees one slot: a full bucket if the sample has one, else the nearest to full. */
  #evict(now: number): void {
    let victim = -1;
    let samples = 0;
    for (
      let scanned = 0;
      scanned <= this.#mask && samples < EVICT_SAMPLES &&
      (scanned < EVICT_SCAN || samples === 0);
      scanned++
    ) {
      const slot = this.#hand;
      this.#hand = (slot + 1) & this.#mask;
      if (this.#family[slot] === 0) continue;
      samples++;
      if (victim < 0 || this.#fullAt[slot]! < this.#fullAt[victim]!) {
        victim = slot;
      }
      if (this.#fullAt[victim]! <= now) break;
    }
    if (victim >= 0) this.#remove(victim);
  }

  /** Empties a slot and shifts its cluster back so every probe path stays whole. */
  #remove(slot: number): void {
    let hole = slot;
    for (let next = (slot + 1) & this.#mask;; next = (next + 1) & this.#mask) {
      const family = this.#family[next]!;
      if (family === 0) break;
      const home = this.#home(
        family,
        this.#keyHigh[next]!,
        this.#keyLow[next]!,
      );
      // The entry may move back into the hole unless its home lies after it.
      const stays = hole <= next
        ? hole < home && home <= next
        : hole < home || home <= next;
      if (stays) continue;
      this.#family[hole] = family;
      this.#keyHigh[hole] = this.#keyHigh[next]!;
      this.#keyLow[hole] = this.#keyLow[next]!;
      this.#fullAt[hole] = this.#fullAt[next]!;
      hole = next;
    }
    this.#family[hole] = 0;
    this.#sources--;
  }

  /** Sources whose bucket is not full at `now`: the ones being limited or recently seen. */
  activeSources(now: number): number {
    let active = 0;
    for (let slot = 0; slot < this.#family.length; slot++) {
      if (this.#family[slot] !== 0 && this.#fullAt[slot]! > now) active++;
    }
    return active;
  }

  /** Entries in the source table, never more than `maxSources`. */
  get trackedSources(): number {
    return this.#sources;
  }
}
