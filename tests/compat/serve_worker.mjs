// The official SDK's EnvironmentWorker (`client.beta.environments.work.worker(...).run()`)
// serving a session through `shed serve`, the session driven by agent-side
// events (LOCAL, admin key): it claims the item, heartbeats, answers 20
// bash/read/write/edit/glob/grep calls (run on this host in a temp workdir:
// that is the SDK's behaviour), its results are recorded once each, and it
// stops the item after its idle timeout.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { adminClient, environmentKey, resultFor, sleep, startSdkWorker, step, text } from './lib.mjs';

const admin = adminClient();
const deadline = Date.now() + 100_000;

const env = await admin.beta.environments.create({ name: 'sdk-worker', config: { type: 'self_hosted' } });
const envKey = await environmentKey(env.id);
const sess = await admin.beta.sessions.create({ environment_id: env.id, agent: 'agent_compat' });
const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'shed-compat-'));

step('start the SDK worker');
const ctrl = new AbortController();
const runP = startSdkWorker(
  { environmentId: env.id, environmentKey: envKey, workdir, maxIdleMs: 1500, workerId: 'sdk-worker-1' }, ctrl);

async function call(name, input) {
  const sent = await admin.beta.sessions.events.send(sess.id, { events: [{ type: 'agent.tool_use', name, input }] });
  return resultFor(admin, sess.id, sent.data[0].id, deadline);
}

step('20 tool calls');
const calls = [
  ['write', { file_path: 'notes/a.txt', content: 'alpha\nbeta\ngamma\n' }, (r, t) => assert.match(t, /wrote 17 bytes/)],
  ['read', { file_path: 'notes/a.txt' }, (r, t) => assert.match(t, /beta/)],
  ['edit', { file_path: 'notes/a.txt', old_string: 'beta', new_string: 'BETA' }, (r, t) => assert.match(t, /1 replacement/)],
  ['read', { file_path: 'notes/a.txt' }, (r, t) => assert.match(t, /BETA/)],
  ['grep', { pattern: 'gam+a' }, (r, t) => assert.match(t, /a\.txt/)],
  ['glob', { pattern: '**/*.txt' }, (r, t) => assert.match(t, /notes\/a\.txt/)],
  ['bash', { command: 'echo hello from bash' }, (r, t) => assert.match(t, /hello from bash/)],
  ['bash', { command: 'export SHED_X=42' }, () => {}],
  ['bash', { command: 'echo x=$SHED_X' }, (r, t) => assert.match(t, /x=42/, 'the shell persists')],
  ['bash', { command: 'cat notes/a.txt | wc -l' }, (r, t) => assert.match(t, /3/)],
  ['write', { file_path: 'src/main.c', content: 'int main(void) { return 0; }\n' }, () => {}],
  ['glob', { pattern: 'src/*.c' }, (r, t) => assert.match(t, /main\.c/)],
  ['grep', { pattern: 'return 0', path: 'src' }, (r, t) => assert.match(t, /main\.c/)],
  ['edit', { file_path: 'src/main.c', old_string: 'return 0', new_string: 'return 7' }, () => {}],
  ['bash', { command: 'grep -c "return 7" src/main.c' }, (r, t) => assert.match(t, /1/)],
  ['read', { file_path: 'missing.txt' }, (r) => assert.equal(r.is_error, true, 'a tool error is recorded as is_error')],
  ['edit', { file_path: 'notes/a.txt', old_string: 'nope', new_string: 'x' }, (r) => assert.equal(r.is_error, true)],
  ['bash', { command: 'exit 3' }, () => {}],
  ['bash', { command: 'ls notes src' }, (r, t) => assert.match(t, /a\.txt/)],
  ['read', { file_path: 'src/main.c' }, (r, t) => assert.match(t, /return 7/)],
];
assert.equal(calls.length, 20);
for (const [name, input, check] of calls) {
  const r = await call(name, input);
  check(r, text(r));
}
assert.ok(fs.readFileSync(path.join(workdir, 'src/main.c'), 'utf8').includes('return 7'), 'tools ran in the workdir');

step('the item is active and heartbeated while the session runs');
const items = (await admin.beta.environments.work.list(env.id)).data;
assert.equal(items.length, 1, 'one work item for the session');
const work = items[0];
assert.equal(work.state, 'active');
assert.ok(work.acknowledged_at && work.started_at && work.latest_heartbeat_at);
const stats = await admin.beta.environments.work.stats(env.id);
assert.equal(stats.workers_polling, 1);

step('idle: the worker stops the item after its idle timeout');
await admin.beta.sessions.events.send(sess.id, { events: [{ type: 'session.status_idle', stop_reason: { type: 'end_turn' } }] });
let final;
while (Date.now() < deadline) {
  final = await admin.beta.environments.work.retrieve(work.id, { environment_id: env.id });
  if (final.state === 'stopped') break;
  await sleep(100);
}
assert.equal(final.state, 'stopped', 'the worker stopped the item');

step('every call answered exactly once, in order');
const hist = [];
for await (const ev of admin.beta.sessions.events.list(sess.id, { limit: 1000 })) hist.push(ev);
const uses = hist.filter((e) => e.type === 'agent.tool_use');
const results = hist.filter((e) => e.type === 'user.tool_result');
assert.equal(uses.length, 20);
assert.equal(results.length, 20);
assert.deepEqual(new Set(results.map((r) => r.tool_use_id)), new Set(uses.map((u) => u.id)));
const beats = work.latest_heartbeat_at;
assert.ok(beats);

ctrl.abort();
await runP;
fs.rmSync(workdir, { recursive: true, force: true });
console.log('sdk worker ok');
