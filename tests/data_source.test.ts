import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { hashFile, TextSource } from "../core/data/source.ts";
import type { Progress } from "../core/progress.ts";

async function readAll(path: string, progress?: Progress) {
  const src = new TextSource(path, progress);
  const lines: [string, number][] = [];
  for await (const l of src.lines()) lines.push(l);
  return { lines, info: src.info };
}

Deno.test("source: lines with LF/CRLF, no final newline, gzip found by magic bytes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const text = "first\r\nsecond\n\nlast é";
    const raw = new TextEncoder().encode(text);
    await Deno.writeFile(join(dir, "plain.txt"), raw);
    // A gzip file whose name does not say so, large enough to arrive in several chunks.
    const big = Array.from({ length: 20000 }, (_, k) => `line ${k}`).join("\n");
    const gz = gzipSync(new TextEncoder().encode(big));
    await Deno.writeFile(join(dir, "data.json"), gz);

    const a = await readAll(join(dir, "plain.txt"));
    assert.deepEqual(a.lines, [["first", 1], ["second", 2], ["", 3], ["last é", 4]]);
    assert.equal(a.info.bytes, raw.length);
    assert.equal(a.info.sha256, createHash("sha256").update(raw).digest("hex"));

    let ticked = 0;
    const progress: Progress = {
      start: (_label, total) => {
        assert.equal(total, gz.length, "progress counts raw bytes");
        return { tick: (n = 1) => void (ticked += n), done() {} };
      },
      log() {},
    };
    const b = await readAll(join(dir, "data.json"), progress);
    assert.equal(b.lines.length, 20000);
    assert.deepEqual(b.lines[12345], ["line 12345", 12346]);
    assert.equal(ticked, gz.length);
    assert.equal(b.info.sha256, createHash("sha256").update(gz).digest("hex"));
    assert.deepEqual(await hashFile(join(dir, "data.json")), b.info);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "source: stopping early closes the file",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const path = join(dir, "x.txt");
      await Deno.writeTextFile(path, "a\nb\nc\n".repeat(100000));
      // Which descriptors of this process point at the file.
      const openOnFile = () =>
        [...Deno.readDirSync("/proc/self/fd")].filter((e) => {
          try {
            return Deno.readLinkSync(`/proc/self/fd/${e.name}`) === path;
          } catch {
            return false; // closed while listing
          }
        }).length;
      const src = new TextSource(path);
      for await (const [, line] of src.lines()) {
        if (line === 1) assert.ok(openOnFile() >= 1, "open while reading");
        if (line === 2) break;
      }
      // A read in flight holds a duplicate descriptor until it returns: allow it to finish.
      for (let wait = 0; wait < 50 && openOnFile() > 0; wait++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(openOnFile(), 0, "closed after stopping early");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
