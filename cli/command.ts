/** Shape of one CLI subcommand. Commands parse their own flags and call the core library. */
export interface Command {
  name: string;
  /** One line for `duaf help`. */
  summary: string;
  /** Full usage text for `duaf help NAME` / `duaf NAME --help`. */
  usage: string;
  /** Returns the process exit code (0 ok, 1 check failed, 2 bad input or usage). */
  run(args: string[]): Promise<number>;
}
