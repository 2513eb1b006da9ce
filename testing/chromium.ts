/**
 * Headless Chromium for the page tests, driven over the DevTools protocol
 * with Deno's own WebSocket: open a URL, evaluate an expression (a promise
 * is awaited, so a test waits in the page for the state it needs rather
 * than sleeping), capture a screenshot. The browser runs with a profile in
 * a temporary directory that `close()` removes.
 *
 * @module
 */

import { hasProgram } from "./metrics.ts";
import { sh } from "./shell.ts";

/** The Chromium program on PATH, or undefined when there is none. */
export const CHROMIUM: string | undefined = ["chromium", "chromium-browser"]
  .find(hasProgram);

/** A running headless Chromium showing one page. */
export interface Browser {
  /**
   * Evaluates `expression` in the page and resolves to its value (a
   * promise is awaited); rejects with the page's exception. Retries while
   * the page's context is being replaced by a navigation.
   */
  evaluate<T>(expression: string): Promise<T>;
  /** A PNG of the page as shown, `width` CSS pixels wide and as tall as it is. */
  screenshot(width: number): Promise<Uint8Array>;
  /** Ends the browser and removes its profile. */
  close(): Promise<void>;
}

/** Starts headless Chromium on `url`. Throws when there is no Chromium. */
export async function openBrowser(url: string): Promise<Browser> {
  if (CHROMIUM === undefined) throw new Error("Cannot find chromium on PATH");
  const profile = await sh("mktemp -d");
  const child = new Deno.Command(CHROMIUM, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--remote-debugging-address=127.0.0.1",
      "--remote-debugging-port=0",
      `--user-data-dir=${profile}`,
      "--window-size=1300,400",
      url,
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Ended already.
    }
    await child.status;
    // Its helper processes may hold stderr open longer: stop reading it.
    await stderr?.cancel().catch(() => {});
    await stderr?.drained;
    // Its helper processes may write to the profile a moment longer.
    await sh(
      `for try in 1 2 3 4 5 6 7 8 9 10; do rm -rf '${profile}' 2>/dev/null && exit 0; sleep 0.5; done; exit 1`,
    );
  };
  let session: DevTools;
  let stderr: ChromiumStderr | undefined;
  try {
    stderr = await devToolsUrl(child.stderr);
    const browserUrl = stderr.url;
    const { host } = new URL(browserUrl);
    let page: { webSocketDebuggerUrl: string } | undefined;
    for (let tries = 0; page === undefined && tries < 100; tries++) {
      const list = await (await fetch(`http://${host}/json/list`)).json();
      page = list.find((target: { type: string; url: string }) =>
        target.type === "page"
      );
      if (page === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    if (page === undefined) throw new Error("Cannot find the page's target");
    session = await DevTools.connect(page.webSocketDebuggerUrl);
  } catch (error) {
    await stop();
    throw error;
  }
  const browser: Browser = {
    async evaluate<T>(expression: string): Promise<T> {
      for (let tries = 0;; tries++) {
        const result = await session.send("Runtime.evaluate", {
          expression,
          awaitPromise: true,
          returnByValue: true,
        }).catch((error: Error) => {
          // A navigation replaced the context the expression ran in.
          if (tries < 20 && /context|destroyed/i.test(error.message)) {
            return undefined;
          }
          throw error;
        });
        if (result === undefined) continue;
        if (result.exceptionDetails !== undefined) {
          throw new Error(
            `The page threw: ${JSON.stringify(result.exceptionDetails)}`,
          );
        }
        return result.result.value as T;
      }
    },
    async screenshot(width) {
      const height = await browser.evaluate<number>(
        "Math.ceil(document.body.getBoundingClientRect().bottom) + 16",
      );
      await session.send("Emulation.setDeviceMetricsOverride", {
        width,
        height,
        deviceScaleFactor: 1,
        mobile: false,
      });
      const { data } = await session.send("Page.captureScreenshot", {
        format: "png",
      });
      return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    },
    async close() {
      await session.close();
      await stop();
    },
  };
  return browser;
}

/** Chromium's DevTools address, and its stderr, drained until cancelled. */
interface ChromiumStderr {
  url: string;
  cancel(): Promise<void>;
  drained: Promise<void>;
}

/** Reads Chromium's stderr up to its "DevTools listening on ws://…" line. */
async function devToolsUrl(
  stderr: ReadableStream<Uint8Array>,
): Promise<ChromiumStderr> {
  let said = "";
  const reader = stderr.pipeThrough(new TextDecoderStream()).getReader();
  while (true) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`Cannot start chromium: ${said.slice(-800)}`);
    said += value;
    const found = said.match(/DevTools listening on (ws:\/\/\S+)/);
    if (found) {
      // Keep draining, so the browser never blocks on a full pipe.
      const drained = (async () => {
        while (!(await reader.read()).done);
      })().catch(() => {});
      return { url: found[1]!, cancel: () => reader.cancel(), drained };
    }
  }
}

// deno-lint-ignore no-explicit-any
type Result = any;

/** One DevTools protocol connection: commands by id, answers matched. */
class DevTools {
  #socket: WebSocket;
  #next = 1;
  #waiting = new Map<
    number,
    { resolve: (value: Result) => void; reject: (error: Error) => void }
  >();

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      const waiting = this.#waiting.get(message.id);
      if (waiting === undefined) return;
      this.#waiting.delete(message.id);
      if (message.error) waiting.reject(new Error(message.error.message));
      else waiting.resolve(message.result);
    };
    socket.onclose = () => {
      for (const { reject } of this.#waiting.values()) {
        reject(new Error("Cannot hear from chromium: the connection closed"));
      }
      this.#waiting.clear();
    };
  }

  static connect(url: string): Promise<DevTools> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      socket.onopen = () => resolve(new DevTools(socket));
      socket.onerror = () => reject(new Error(`Cannot connect to ${url}`));
    });
  }

  send(method: string, params: Record<string, unknown>): Promise<Result> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#socket.send(JSON.stringify({ id, method, params }));
    });
  }

  close(): Promise<void> {
    if (this.#socket.readyState === WebSocket.CLOSED) return Promise.resolve();
    const closed = new Promise<void>((resolve) =>
      this.#socket.addEventListener("close", () => resolve())
    );
    this.#socket.close();
    return closed;
  }
}
