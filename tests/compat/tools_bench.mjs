// Benchmark helper for bench/tools.sh.
//   node tools_bench.mjs ref --workdir DIR --calls FILE --repeat N
//       runs the calls N times through the REFERENCE toolset in-process and
//       prints one JSON line per call {"label","elapsed_us"} (first round dropped)
//   node tools_bench.mjs stats FILE...
//       reads such lines (or shed tool --timing lines) and prints, per label,
//       count, p50 and p99 in microseconds as one JSON object
// The label of a call is its "label" field in the calls file.
import { readFileSync, writeSync } from 'node:fs';
import { betaAgentToolset20260401 } from '@anthropic-ai/sdk/tools/agent-toolset/node';

const [mode, ...rest] = process.argv.slice(2);
const arg = (name) => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : undefined;
};

if (mode === 'ref') {
  const workdir = arg('--workdir');
  process.chdir(workdir);
  const calls = JSON.parse(readFileSync(arg('--calls'), 'utf8'));
  const repeat = Number(arg('--repeat') ?? 1000);
  const tools = new Map(betaAgentToolset20260401({ workdir }).map((t) => [t.name, t]));
  const out = [];
  for (let r = 0; r <= repeat; r++) {
    for (const c of calls) {
      const tool = tools.get(c.name);
      const t0 = process.hrtime.bigint();
      let ok = true;
      try {
        if (!tool) throw new Error('unknown tool');
        await tool.run(c.input, {});
      } catch {
        ok = false;
      }
      const us = Number(process.hrtime.bigint() - t0) / 1000;
      if (r > 0) out.push(JSON.stringify({ label: c.label, elapsed_us: us, ok }));
    }
  }
  writeSync(1, out.join('\n') + '\n');
  for (const t of tools.values()) await t.close?.();
  process.exit(0);
} else if (mode === 'stats') {
  // shed tool lines carry "name" and the content; the label comes from the calls file order
  const calls = arg('--calls') ? JSON.parse(readFileSync(arg('--calls'), 'utf8')) : null;
  const skip = Number(arg('--skip') ?? 0);
  const files = rest.filter((x, i) => !x.startsWith('--') && !(i > 0 && rest[i - 1].startsWith('--')));
  const by = new Map();
  let n = 0;
  for (const f of files) {
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      if (!line.startsWith('{')) continue;
      const j = JSON.parse(line);
      if (j.elapsed_us === undefined) continue;
      const idx = n++;
      const label = j.label ?? calls[idx % calls.length].label;
      if (calls && idx < skip * calls.length) continue;
      if (!by.has(label)) by.set(label, []);
      by.get(label).push(j.elapsed_us);
    }
  }
  const res = {};
  for (const [label, v] of by) {
    v.sort((a, b) => a - b);
    const q = (p) => v[Math.min(v.length - 1, Math.floor(p * v.length))];
    res[label] = { n: v.length, p50_us: Math.round(q(0.5)), p99_us: Math.round(q(0.99)) };
  }
  writeSync(1, JSON.stringify(res) + '\n');
} else {
  console.error('usage: tools_bench.mjs ref|stats ...');
  process.exit(2);
}
