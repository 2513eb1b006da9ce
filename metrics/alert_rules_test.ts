import { equal } from "node:assert/strict";
import { ROOT } from "../testing/cli.ts";
import { hasProgram } from "../testing/metrics.ts";

const HAS_PROMTOOL = hasProgram("promtool");
if (!HAS_PROMTOOL) {
  console.log(
    "skipping the alert rule tests: promtool is not installed (apt-get install prometheus; .ci/run does)",
  );
}

const DEPLOY = new URL("deploy/prometheus/", ROOT).pathname;

async function promtool(args: string[]): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command("promtool", {
    args,
    cwd: DEPLOY,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  const said = decoder.decode(stdout) + decoder.decode(stderr);
  equal(code, 0, said);
  return said;
}

Deno.test({
  name:
    "deploy/prometheus: promtool checks the configuration with its rules, and the rules pass their unit tests",
  ignore: !HAS_PROMTOOL,
  async fn() {
    await promtool(["check", "config", "prometheus.yml"]);
    await promtool(["test", "rules", "rules_test.yml"]);
  },
});
