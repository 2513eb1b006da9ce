/**
 * Exit statuses and the version both scripts report.
 *
 * @module
 */

import denoConfig from "../deno.json" with { type: "json" };

/** The version of udp-echo, as published in `deno.json`. */
export const VERSION: string = denoConfig.version;

/** Exit status of a run that did what was asked. */
export const EXIT_OK = 0;
/** Exit status of a run that failed: no reply, a wrong reply, a runtime error. */
export const EXIT_FAILURE = 1;
/** Exit status of a run refused before any work: a bad flag or value. */
export const EXIT_USAGE = 2;
