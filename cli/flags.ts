/**
 * Command-line flags through `node:util`'s strict `parseArgs`.
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";

/**
 * Parses command-line flags with `node:util`'s strict `parseArgs`, turning its
 * verbose errors into a short `TypeError` ("unknown flag --x").
 */
export function parseFlags<T extends ParseArgsConfig["options"]>(
  args: string[],
  options: T,
): {
  values: ReturnType<typeof parseArgs<{ options: T }>>["values"];
  positionals: string[];
} {
  try {
    const parsed = parseArgs({
      args,
      options,
      allowPositionals: true,
      strict: true,
    });
    return { values: parsed.values, positionals: parsed.positionals };
  } catch (error) {
    const code = (error as { code?: string }).code;
    const message = (error as Error).message;
    // Name a flag by its long form where the message gives one.
    const flag = /--[\w-]+/.exec(message)?.[0] ??
      /'(-[^',]*)'/.exec(message)?.[1];
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      throw new TypeError(
        `Cannot parse flags: unknown flag ${flag} (see --help)`,
      );
    }
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
      throw new TypeError(
        message.includes("argument missing")
          ? `Cannot parse flags: ${flag} needs a value`
          : message.includes("ambiguous")
          ? `Cannot parse flags: ${flag} needs a value (write ${flag}=VALUE for one that starts with "-")`
          : `Cannot parse flags: ${flag} takes no value`,
      );
    }
    throw new TypeError(`Cannot parse flags: ${message}`);
  }
}
