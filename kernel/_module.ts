/**
 * The one computed import of the kernel engine's Workers: the module a
 * Worker is told to load by URL, which is not known before run time. The
 * echo Worker loads the policy (`_policy_hook.ts`) or another decide
 * module, and the STAMP Session-Reflector (`server/_stamp_hook.ts`); the
 * probe loop loads a probe format (`measure/stamp_probe.ts`).
 *
 * It stays computed on purpose, and `deno publish` warns that it cannot
 * analyse it: a literal `import()` of each would make every Worker read and
 * parse them at start-up (Deno loads the modules a literal dynamic import
 * names with the rest of the graph), so the plain echo Worker would load
 * the policy and `stamp/`, and the plain probe loop `stamp/`. The modules
 * it loads are in the package (`publish.include` in `deno.json`) and named
 * by `--include` in `deno task compile`.
 *
 * @module
 */

/** Imports the module at `url` (absolute) and returns its namespace. */
export async function loadModule<T>(url: string): Promise<T> {
  return await import(url);
}
