// Compares two runs of the conformance calls: the reference's output and
// shed's (one JSON line per call each). Each side's work directory path is
// replaced by <WORKDIR> before comparing; a call marked "differs": "<id>"
// may differ only if docs/toolset.md has a heading or item tagged {#<id>}
// (the written reason); a call marked "unordered" compares its text's lines
// as a set (ripgrep's order across files is not fixed). Prints every unexpected difference; exit 1 if any.
//
// usage: node tools_compare.mjs --calls FILE --doc docs/toolset.md
//            --ref OUT --ref-workdir DIR --shed OUT --shed-workdir DIR
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';

function arg(name) {
  const i = process.argv.indexOf(name);
  if (i < 0) throw new Error(`missing ${name}`);
  return process.argv[i + 1];
}

function load(file, workdir) {
  const text = readFileSync(file, 'utf8').split(workdir).join('<WORKDIR>');
  return text.split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));
}

const calls = JSON.parse(readFileSync(arg('--calls'), 'utf8'));
const doc = readFileSync(arg('--doc'), 'utf8');
const ref = load(arg('--ref'), arg('--ref-workdir'));
const shed = load(arg('--shed'), arg('--shed-workdir'));
let bad = 0, allowed = 0, same = 0;
const show = (v) => {
  const s = JSON.stringify(v);
  return s.length > 600 ? s.slice(0, 600) + `... (${s.length} chars)` : s;
};
for (let i = 0; i < calls.length; i++) {
  const c = calls[i];
  const a = ref[i], b = shed[i];
  if (a && b && isDeepStrictEqual(a, b)) {
    same++;
    continue;
  }
  // ripgrep searches files in parallel: the order of its lines is not fixed
  const lines = (r) => r?.content?.[0]?.text?.split('\n').sort();
  if (c.unordered && a && b && a.is_error === b.is_error && isDeepStrictEqual(lines(a), lines(b))) {
    same++;
    continue;
  }
  if (c.differs) {
    if (!doc.includes(`{#${c.differs}}`)) {
      console.log(`call ${i} (${c.name}) is marked differs:${c.differs} but docs/toolset.md has no {#${c.differs}}`);
      bad++;
    } else allowed++;
    continue;
  }
  bad++;
  console.log(`call ${i}: ${c.name} ${JSON.stringify(c.input).slice(0, 200)}`);
  console.log(`  reference: ${a === undefined ? '(no line)' : show(a)}`);
  console.log(`  shed:      ${b === undefined ? '(no line)' : show(b)}`);
}
if (ref.length !== calls.length || shed.length !== calls.length) {
  console.log(`line counts: calls ${calls.length}, reference ${ref.length}, shed ${shed.length}`);
  bad++;
}
console.log(`${same} identical, ${allowed} documented differences, ${bad} unexpected differences`);
process.exit(bad ? 1 : 0);
