/**
 * duaf command-line entry point. Clean data goes to stdout; logs and progress go to stderr.
 * Exit codes: 0 ok, 1 a requested check failed, 2 bad input or usage, 3 internal error.
 */
import { main } from "./app.ts";

export { main };

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
