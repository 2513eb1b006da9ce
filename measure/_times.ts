/**
 * The small time-keeping pieces of the modes: a wait that can be cut
 * short, a send loop's turn for the event loop, and per-probe times.
 *
 * @module
 */

const INITIAL_TIMES = 256;
/**
 * The longest a send loop runs without giving the event loop a turn, in ms:
 * a send that completes at once never does, and then neither a signal nor a
 * timer (the deadline) would get through.
 */
const YIELD_EVERY_MS = 5;
/** Resolves after `ms`, or at once on `wake()` or when the signal aborts. */
export class Wakeup {
  #wake: (() => void) | undefined;

  wake(): void {
    this.#wake?.();
  }

  wait(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(id);
        signal?.removeEventListener("abort", done);
        this.#wake = undefined;
        resolve();
      };
      const id = setTimeout(done, Math.max(0, ms));
      this.#wake = done;
      signal?.addEventListener("abort", done, { once: true });
    });
  }
}

/**
 * A Float64Array that grows as it is written, NaN where nothing was: an
 * unbounded run must not keep a boxed number per probe.
 */
export class Times {
  #data: Float64Array;
  readonly #mask: number;

  /** `ring` (a power of two): keep the latest `ring` values only, in fixed memory. */
  constructor(ring?: number) {
    this.#data = new Float64Array(ring ?? INITIAL_TIMES).fill(NaN);
    this.#mask = ring === undefined ? 0 : ring - 1;
  }

  get(i: number): number {
    return this.#data[this.#mask === 0 ? i : i & this.#mask] ?? NaN;
  }

  set(i: number, value: number): void {
    if (this.#mask !== 0) {
      this.#data[i & this.#mask] = value;
      return;
    }
    if (i >= this.#data.length) {
      let length = this.#data.length;
      while (length <= i) length *= 2;
      const grown = new Float64Array(length).fill(NaN);
      grown.set(this.#data);
      this.#data = grown;
    }
    this.#data[i] = value;
  }

  slice(n: number): Float64Array {
    return this.#data.slice(0, n);
  }
}

/**
 * Gives the event loop a turn (a macrotask, not a microtask) once `every`
 * ms have passed since the last one, so that signals and timers are heard
 * during a send loop that never has to wait.
 */
export class Yielder {
  #last = performance.now();

  constructor(readonly every = YIELD_EVERY_MS) {}

  async maybeYield(): Promise<void> {
    const now = performance.now();
    if (now - this.#last < this.every) return;
    await new Promise((resolve) => setTimeout(resolve, 0));
    this.#last = performance.now();
  }
}
