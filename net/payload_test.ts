import { equal } from "node:assert/strict";
import { previewPayload } from "./payload.ts";

const preview = (text: string) =>
  previewPayload(new TextEncoder().encode(text));

Deno.test("previewPayload() escapes every C0 control and DEL as \\xNN", () => {
  for (let code = 0; code < 0x20; code++) {
    const expected = { 0x09: "\\t", 0x0a: "\\n", 0x0d: "\\r" }[code] ??
      `\\x${code.toString(16).padStart(2, "0")}`;
    equal(preview(String.fromCharCode(code)), `"${expected}"`, `U+${code}`);
  }
  equal(preview("\x7f"), '"\\x7f"');
  equal(preview("\x1b[2J"), '"\\x1b[2J"');
});

Deno.test("previewPayload() escapes every C1 control as \\u{X}, CSI and NEL included", () => {
  for (let code = 0x80; code <= 0x9f; code++) {
    equal(
      preview(String.fromCharCode(code)),
      `"\\u{${code.toString(16)}}"`,
      `U+${code.toString(16)}`,
    );
  }
  equal(preview("\u009b2J"), '"\\u{9b}2J"');
  equal(preview("a\u0085b"), '"a\\u{85}b"');
});

Deno.test("previewPayload() escapes line and paragraph separators", () => {
  equal(preview("a\u2028b\u2029c"), '"a\\u{2028}b\\u{2029}c"');
});

Deno.test("previewPayload() escapes every bidi control", () => {
  const bidi = [
    0x061c,
    0x200e,
    0x200f,
    0x202a,
    0x202b,
    0x202c,
    0x202d,
    0x202e,
    0x2066,
    0x2067,
    0x2068,
    0x2069,
  ];
  for (const code of bidi) {
    equal(
      preview(`x${String.fromCodePoint(code)}y`),
      `"x\\u{${code.toString(16)}}y"`,
      `U+${code.toString(16)}`,
    );
  }
});

Deno.test("previewPayload() escapes zero-width and other format characters", () => {
  const format = [0x00ad, 0x200b, 0x200c, 0x200d, 0x2060, 0xfeff, 0xe0041];
  for (const code of format) {
    equal(
      preview(String.fromCodePoint(code)),
      `"\\u{${code.toString(16)}}"`,
      `U+${code.toString(16)}`,
    );
  }
  equal(preview("\ufeffstart"), '"\\u{feff}start"', "a leading BOM is shown");
});

Deno.test("previewPayload() keeps printable text beyond ASCII as it is", () => {
  equal(preview("héllo 日本 😀 \u00a0"), '"héllo 日本 😀 \u00a0"');
});

Deno.test("previewPayload() escapes invalid UTF-8 byte by byte", () => {
  equal(previewPayload(new Uint8Array([0xc2, 0x41])), '"\\xc2A"');
  equal(
    previewPayload(new Uint8Array([0xed, 0xa0, 0x80])),
    '"\\xed\\xa0\\x80"',
  );
});
