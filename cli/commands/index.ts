/** The subcommand table. Each command lives in its own module under cli/commands/. */
import type { Command } from "../command.ts";
import { inspectCommand } from "./inspect.ts";
import { preprocessCommand } from "./preprocess.ts";
import { trainCommand } from "./train.ts";
import { evalCommand } from "./eval.ts";
import { recommendCommand } from "./recommend.ts";
import { exportCommand } from "./export.ts";
import { reportCommand } from "./report.ts";
import { demoCommand } from "./demo.ts";
import { sweepCommand } from "./sweep.ts";
import { benchCommand } from "./bench.ts";

export const commands: Command[] = [
  preprocessCommand,
  inspectCommand,
  trainCommand,
  sweepCommand,
  evalCommand,
  recommendCommand,
  exportCommand,
  reportCommand,
  benchCommand,
  demoCommand,
];
