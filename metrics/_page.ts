/**
 * The monitor's live page, served at `/`: one self-contained HTML document
 * (inline style and script, nothing fetched from elsewhere) that reads
 * `/api/links` every few seconds and shows one row per source → target
 * link. Every state is written as a word as well as coloured. The script
 * builds the table with `textContent` only, so no label can inject markup,
 * and the Content-Security-Policy allows exactly this style and script
 * (by their hashes) and requests to the monitor itself.
 *
 * Each data cell carries `data-col` (its column) and, for a figure,
 * `data-value` (the raw number from `/api/links`), so a test can read the
 * table without parsing the text meant for people.
 *
 * @module
 */

/** How often the page reads `/api/links`, in ms. */
export const PAGE_REFRESH_MS = 5000;

const STYLE = `
:root { color-scheme: light dark; font: 13px/1.35 ui-monospace, monospace; }
body { margin: 1em; }
h1 { font-size: 1.2em; margin: 0 0 .3em; }
#status { margin: 0 0 .8em; }
#status.error { font-weight: bold; }
table { border-collapse: collapse; }
th, td { padding: .15em .5em; border-bottom: 1px solid #8884; white-space: nowrap; }
thead { position: sticky; top: 0; background: Canvas; }
th { text-align: left; }
td.num { text-align: right; }
thead tr:first-child th { border-bottom: none; }
td.state { font-weight: bold; }
tr.down td.state { background: #d3333340; }
tr.partial td.state { background: #e0a00040; }
tr.up td.state { background: #2e9e4440; }
tr.down td.state::before { content: "\\2716  "; }
tr.partial td.state::before { content: "\\25D0  "; }
tr.up td.state::before { content: "\\2714  "; }
td.bad { font-weight: bold; text-decoration: underline; }
tbody tr:nth-child(even) { background: #8881; }
`;

const SCRIPT = `
"use strict";
const REFRESH_MS = ${PAGE_REFRESH_MS};
const body = document.getElementById("links");
const status = document.getElementById("status");
let renders = 0;
function ms(seconds) {
  if (seconds === null || seconds === undefined) return "n/a";
  const v = seconds * 1000;
  return (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(3)) + " ms";
}
function share(count, sent) {
  if (count === null || count === undefined) return "n/a";
  if (!sent) return String(count);
  return count + " (" + (100 * count / sent).toFixed(2) + "%)";
}
function cell(row, col, text, value, cls) {
  const td = document.createElement("td");
  td.dataset.col = col;
  td.textContent = text;
  if (value !== undefined && value !== null) td.dataset.value = String(value);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}
function render(doc) {
  const rows = [];
  const states = { up: 0, down: 0, partial: 0, unknown: 0 };
  for (const link of doc.links) {
    const tr = document.createElement("tr");
    const state = link.up.of === 0 ? "unknown"
      : link.up.flows === link.up.of ? "up"
      : link.up.flows === 0 ? "down" : "partial";
    tr.className = state;
    states[state]++;
    cell(tr, "source", link.source || "(this monitor)");
    cell(tr, "target", link.target);
    const flows = link.up.of > 1 ? " " + link.up.flows + "/" + link.up.of : "";
    cell(tr, "state", state.toUpperCase() + flows, state, "state");
    cell(tr, "sent", String(link.sent), link.sent, "num");
    const lossCell = (col, count) => {
      const td = cell(tr, col, share(count, link.sent), count, "num");
      if (count && link.sent && count / link.sent > 0.01) td.classList.add("bad");
    };
    lossCell("lost", link.lost);
    lossCell("lost-forward", link.lostForward);
    lossCell("lost-backward", link.lostBackward);
    const spread = (name, list) => doc.quantiles.forEach((q, k) => {
      const v = list ? list[k] : null;
      cell(tr, name + "-p" + Math.round(q * 100), ms(v), v, "num");
    });
    spread("rtt", link.rtt);
    spread("forward", link.forward);
    spread("backward", link.backward);
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  const more = doc.leftOut > 0 ? "; " + doc.leftOut + " more links not shown" : "";
  status.className = "";
  const counts = Object.entries(states).filter(([, n]) => n > 0)
    .map(([state, n]) => n + " " + state).join(", ");
  status.textContent = doc.links.length + " links (" + counts + "), read at " + doc.generated +
    " (figures since the monitor started; refreshed every " + REFRESH_MS / 1000 + " s)" + more;
  if (doc.node) document.getElementById("node").textContent = doc.node;
  document.body.dataset.renders = String(++renders);
}
let timer;
async function refresh() {
  clearTimeout(timer);
  try {
    // A monitor that stopped, or a path that drops everything, would hold
    // the read (and every refresh after it) for good: give up in time.
    const response = await fetch("/api/links", {
      cache: "no-store",
      signal: AbortSignal.timeout(REFRESH_MS),
    });
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
  } catch (error) {
    status.className = "error";
    status.textContent = "Cannot read /api/links: " + error.message +
      "; the table shows the last figures read. Retrying.";
  } finally {
    timer = setTimeout(refresh, REFRESH_MS);
  }
}
window.udpEchoRefresh = refresh;
refresh();
`;

const HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>udp-echo monitor</title>
<style>${STYLE}</style>
</head>
<body>
<h1>udp-echo monitor <span id="node"></span></h1>
<p id="status">Reading /api/links…</p>
<table>
<thead>
<tr><th colspan="4"></th><th colspan="3">lost (share of sent)</th><th colspan="3">round trip</th><th colspan="3">one way there (→)</th><th colspan="3">one way back (←)</th></tr>
<tr><th>source</th><th>target</th><th>state</th><th>sent</th><th>either way</th><th>→ there</th><th>← back</th><th>p50</th><th>p90</th><th>p99</th><th>p50</th><th>p90</th><th>p99</th><th>p50</th><th>p90</th><th>p99</th></tr>
</thead>
<tbody id="links"></tbody>
</table>
<script>${SCRIPT}</script>
</body>
</html>
`;

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(text),
  );
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

let headers: Promise<Record<string, string>> | undefined;

/** The page and its response header fields (the CSP names the inline parts by hash). */
export async function livePage(): Promise<
  { body: string; headers: Record<string, string> }
> {
  headers ??= (async () => ({
    "content-type": "text/html; charset=utf-8",
    "content-security-policy": [
      "default-src 'none'",
      `script-src 'sha256-${await sha256(SCRIPT)}'`,
      `style-src 'sha256-${await sha256(STYLE)}'`,
      "connect-src 'self'",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join("; "),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
  }))();
  return { body: HTML, headers: await headers };
}
