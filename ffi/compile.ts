/** Running a compiler for the FFI shims (ffi/cuda, ffi/cpu) without exposing half-written output. */

/**
 * Runs a compiler that writes `tmp`, then renames it to `out`, so a concurrent loader never sees
 * a half-written library; a failure removes `tmp` and throws. `quiet` keeps the compiler's own
 * output off the terminal unless it fails (then it is in the error).
 */
export async function compileInto(
  compiler: string,
  args: string[],
  tmp: string,
  out: string,
  opts: { quiet?: boolean } = {},
): Promise<void> {
  let code: number;
  let stderr = "";
  try {
    const io = opts.quiet ? "piped" : "inherit";
    const r = await new Deno.Command(compiler, { args, stdout: io, stderr: io }).output();
    code = r.code;
    if (opts.quiet) stderr = new TextDecoder().decode(r.stderr).trim();
  } catch (e) {
    throw new Error(`${compiler} not runnable: ${e instanceof Error ? e.message : e}`);
  }
  if (code !== 0) {
    await Deno.remove(tmp).catch(() => {});
    const detail = stderr ? `: ${stderr.split("\n").slice(0, 3).join(" | ")}` : "";
    throw new Error(`${compiler} failed with exit code ${code}${detail}`);
  }
  await Deno.rename(tmp, out);
}
