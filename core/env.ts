/** Environment variables that tune duaf (DUAF_*): read as unset when empty or without --allow-env. */
export function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no --allow-env: behave as if unset
  }
}
