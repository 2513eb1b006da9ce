/**
 * The echo policy (`policy.ts`) as a decide module for the batch engine: the
 * Worker builds its own {@linkcode EchoPolicy} from the same options the
 * socket backend uses, registers its socket, and asks it once per datagram,
 * with one `now` per batch.
 *
 * @module
 */

import type { DecideHook } from "./batch.ts";
import { EchoPolicy, type PolicyOptions } from "../policy/policy.ts";

/** Builds the policy's decide hook for one batch socket. */
export function createDecideHook(
  options: PolicyOptions,
  local: Deno.NetAddr,
): DecideHook {
  const policy = new EchoPolicy(options);
  policy.addLocal(local);
  const hook: DecideHook = (facts) => {
    const verdict = policy.decide(facts, facts.size, facts.now);
    return verdict === "echo" ? undefined : verdict;
  };
  hook.activeSources = (now) => policy.activeSources(now);
  return hook;
}
