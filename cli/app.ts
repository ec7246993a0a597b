/**
 * The duaf command dispatcher; cli/main.ts is the process entry point. Kept apart so commands
 * (demo) can run other commands without importing the entry module while it is still loading.
 */
import { commands } from "./commands/index.ts";
import { isUserError } from "../core/errors.ts";
import { VERSION } from "../core/version.ts";

function help(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    `duaf ${VERSION}: multimodal sequential recommendation (DuAF-MAT and baselines)`,
    "",
    "usage: duaf COMMAND [options]      (duaf help COMMAND for details)",
    "",
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  // DUAF_DEBUG=1 prints stacks of user errors too; make them deep enough to find the cause.
  if (Deno.env.get("DUAF_DEBUG") === "1") Error.stackTraceLimit = 64;
  const [name, ...rest] = argv;
  if (!name || name === "help" || name === "--help" || name === "-h") {
    const target = rest[0] && commands.find((c) => c.name === rest[0]);
    console.log(target ? target.usage : help());
    return 0;
  }
  if (name === "--version" || name === "version") {
    console.log(VERSION);
    return 0;
  }
  const cmd = commands.find((c) => c.name === name);
  if (!cmd) {
    console.error(`duaf: unknown command '${name}' (see duaf help)`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(cmd.usage);
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (e) {
    if (isUserError(e)) {
      console.error(`duaf ${name}: ${e.message}`);
      if (Deno.env.get("DUAF_DEBUG") === "1") console.error(e.stack);
      return e.exitCode;
    }
    console.error(`duaf ${name}: internal error`);
    console.error(e);
    return 3;
  }
}
