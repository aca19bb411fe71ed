// Two official SDK EnvironmentWorkers on one environment of `shed serve`:
// every work item is served exactly once. Each session gets one bash call
// that appends "<worker workdir> <session id>" to a shared log; at the end
// every session appears there exactly once, every item is stopped, and the
// control plane holds exactly one result per call.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { adminClient, environmentKey, sleep, startSdkWorker } from './lib.mjs';

const N = Number(process.env.SESSIONS ?? 8);
const admin = adminClient();
const deadline = Date.now() + 100_000;

const env = await admin.beta.environments.create({ name: 'two-workers', config: { type: 'self_hosted' } });
const envKey = await environmentKey(env.id);
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'shed-compat2-'));
const log = path.join(root, 'served.log');
fs.writeFileSync(log, '');

const ctrl = new AbortController();
const runs = ['w1', 'w2'].map((name) => {
  const workdir = path.join(root, name);
  fs.mkdirSync(workdir);
  return startSdkWorker({ environmentId: env.id, environmentKey: envKey, workdir, maxIdleMs: 1000, workerId: name },
    ctrl, 'error');
});

console.log(`--- ${N} sessions, each one call and then terminated`);
const sessions = [];
for (let i = 0; i < N; i++) {
  const s = await admin.beta.sessions.create({ environment_id: env.id, agent: 'agent_compat' });
  const sent = await admin.beta.sessions.events.send(s.id, {
    events: [{ type: 'agent.tool_use', name: 'bash', input: { command: `echo "$(pwd) ${s.id}" >> ${log}` } }],
  });
  sessions.push({ id: s.id, use: sent.data[0].id });
}
const pending = new Set(sessions.map((s) => s.id));
while (pending.size && Date.now() < deadline) {
  for (const s of sessions) {
    if (!pending.has(s.id)) continue;
    const page = await admin.beta.sessions.events.list(s.id, { limit: 100 });
    if (page.data.some((e) => e.type === 'user.tool_result' && e.tool_use_id === s.use)) {
      pending.delete(s.id);
      await admin.beta.sessions.events.send(s.id, { events: [{ type: 'session.status_terminated' }] });
    }
  }
  await sleep(100);
}
assert.equal(pending.size, 0, `sessions never served: ${[...pending]}`);

console.log('--- every item stopped');
let items;
while (Date.now() < deadline) {
  items = [];
  for await (const w of admin.beta.environments.work.list(env.id)) items.push(w);
  if (items.every((w) => w.state === 'stopped')) break;
  await sleep(100);
}
assert.equal(items.length, N, 'one item per session');
assert.ok(items.every((w) => w.state === 'stopped'), `states: ${items.map((w) => w.state)}`);
ctrl.abort();
await Promise.all(runs);

console.log('--- each session served exactly once');
const lines = fs.readFileSync(log, 'utf8').trim().split('\n');
const bySession = new Map();
for (const l of lines) {
  const [dir, sid] = l.split(' ');
  bySession.set(sid, [...(bySession.get(sid) ?? []), path.basename(dir)]);
}
for (const s of sessions) assert.equal(bySession.get(s.id)?.length, 1, `${s.id} served by ${bySession.get(s.id)}`);
assert.equal(lines.length, N);
const perWorker = {};
for (const [, ws] of bySession) perWorker[ws[0]] = (perWorker[ws[0]] ?? 0) + 1;
console.log('served per worker:', JSON.stringify(perWorker));
for (const s of sessions) {
  const hist = (await admin.beta.sessions.events.list(s.id, { limit: 100 })).data;
  assert.equal(hist.filter((e) => e.type === 'user.tool_result').length, 1, `one result in ${s.id}`);
}
fs.rmSync(root, { recursive: true, force: true });
console.log('two sdk workers ok');
