/**
 * A small well-formedness check for the HTML the report writes: every non-void element is closed
 * in order, attribute quotes balance, and script/style bodies are skipped as raw text.
 * Returns the problems found (empty when the document is balanced).
 */
const VOID = new Set([
  "area",
  "base",
  "br",
  "col",
  "embed",
  "hr",
  "img",
  "input",
  "link",
  "meta",
  "source",
  "track",
  "wbr",
]);
const RAW_TEXT = new Set(["script", "style"]);

export function htmlProblems(html: string): string[] {
  const problems: string[] = [];
  const stack: string[] = [];
  const tag =
    /<(\/?)([a-zA-Z][\w-]*)((?:\s+[^\s=>\/]+(?:="[^"]*"|='[^']*')?)*)\s*(\/?)>|<!--[\s\S]*?-->|<!DOCTYPE[^>]*>/g;
  let last = 0;
  for (let m = tag.exec(html); m; m = tag.exec(html)) {
    if (/[<>]/.test(html.slice(last, m.index))) {
      problems.push(`stray < or > near offset ${last}: ${html.slice(last, last + 40)}`);
    }
    last = tag.lastIndex;
    if (!m[2]) continue; // comment or doctype
    const name = m[2].toLowerCase();
    if (m[1]) {
      const open = stack.pop();
      if (open !== name) problems.push(`</${name}> closes <${open ?? "nothing"}>`);
    } else if (!m[4] && !VOID.has(name)) {
      if (RAW_TEXT.has(name)) {
        const end = html.indexOf(`</${name}>`, last);
        if (end < 0) {
          problems.push(`<${name}> never closed`);
          break;
        }
        tag.lastIndex = last = end + name.length + 3;
        continue;
      }
      stack.push(name);
    }
  }
  if (/[<>]/.test(html.slice(last))) problems.push("stray < or > at the end");
  if (stack.length) problems.push(`unclosed: ${stack.join(" > ")}`);
  return problems;
}
