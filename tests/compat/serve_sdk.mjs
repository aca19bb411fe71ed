// The official @anthropic-ai/sdk's own resource methods against `shed serve`
// (environments, sessions, work, events incl. the SSE stream), unchanged but
// for the base URL. Run by tests/integration/serve_compat.sh with SHED_URL
// and SHED_ADMIN_KEY set.
import Anthropic from '@anthropic-ai/sdk';
import assert from 'node:assert/strict';
import { adminClient, baseURL, environmentKey, step } from './lib.mjs';

const admin = adminClient();

step('environments: create / retrieve / list / update / archive');
const env = await admin.beta.environments.create({ name: 'compat', config: { type: 'self_hosted' } });
assert.equal(env.type, 'environment');
assert.match(env.id, /^env_/);
assert.deepEqual(env.config, { type: 'self_hosted' });
assert.equal((await admin.beta.environments.retrieve(env.id)).name, 'compat');
const upd = await admin.beta.environments.update(env.id, { metadata: { team: 'shed' } });
assert.deepEqual(upd.metadata, { team: 'shed' });
const extra = await admin.beta.environments.create({ name: 'compat2', config: { type: 'self_hosted' } });
const seen = [];
for await (const e of admin.beta.environments.list({ limit: 1 })) seen.push(e.id); // auto-pagination
assert.ok(seen.includes(env.id) && seen.includes(extra.id), 'list pages through every environment');
const arch = await admin.beta.environments.archive(extra.id);
assert.ok(arch.archived_at);

const envKey = await environmentKey(env.id); // asserts 201
const worker = new Anthropic({ authToken: envKey, apiKey: null, baseURL, maxRetries: 0 });

step('sessions: create / retrieve');
const sess = await admin.beta.sessions.create({ environment_id: env.id, agent: 'agent_compat', metadata: { k: 'v' } });
assert.equal(sess.type, 'session');
assert.match(sess.id, /^sesn_/);
const got = await worker.beta.sessions.retrieve(sess.id);
assert.equal(got.environment_id, env.id);
assert.deepEqual(got.metadata, { k: 'v' });
assert.ok(Array.isArray(got.resources) && Array.isArray(got.agent.skills));

const listed = [];
for await (const s of admin.beta.sessions.list({ limit: 1 })) listed.push(s.id);
assert.ok(listed.includes(sess.id), 'sessions.list pages through');

step('work: stats / list / poll / ack / heartbeat / retrieve / update / stop');
let stats = await admin.beta.environments.work.stats(env.id);
assert.equal(stats.type, 'work_queue_stats');
assert.equal(stats.depth, 1);
const items = [];
for await (const w of worker.beta.environments.work.list(env.id)) items.push(w);
assert.equal(items.length, 1);
assert.equal(items[0].data.id, sess.id);
const polled = await worker.beta.environments.work.poll(env.id, { block_ms: 500, 'Anthropic-Worker-ID': 'compat-1' });
assert.equal(polled.id, items[0].id);
assert.ok(polled.secret, 'poll returns a secret');
const empty = await worker.beta.environments.work.poll(env.id, { block_ms: 100, 'Anthropic-Worker-ID': 'compat-1' });
assert.equal(empty, null, 'an empty poll is null to the SDK');
stats = await admin.beta.environments.work.stats(env.id);
assert.equal(stats.pending, 1);
assert.equal(stats.workers_polling, 1);
const acked = await worker.beta.environments.work.ack(polled.id, { environment_id: env.id });
assert.equal(acked.state, 'starting');
const hb = await worker.beta.environments.work.heartbeat(polled.id, {
  environment_id: env.id,
  expected_last_heartbeat: 'NO_HEARTBEAT',
});
assert.equal(hb.type, 'work_heartbeat');
assert.equal(hb.state, 'active');
assert.equal(hb.lease_extended, true);
assert.ok(hb.ttl_seconds > 0);
const hb2 = await worker.beta.environments.work.heartbeat(polled.id, {
  environment_id: env.id,
  expected_last_heartbeat: hb.last_heartbeat,
});
await assert.rejects(
  worker.beta.environments.work.heartbeat(polled.id, { environment_id: env.id, expected_last_heartbeat: hb.last_heartbeat }),
  (e) => {
    assert.equal(e.status, 412);
    assert.equal(e.constructor.name, 'BetaHeartbeatPreconditionFailedError', 'the SDK maps our 412 to its typed error');
    assert.equal(e.errorCode, 'heartbeat_precondition_failed');
    assert.equal(e.details.current_state.last_heartbeat, hb2.last_heartbeat);
    assert.equal(e.details.current_state.state, 'active');
    return true;
  },
);
const retrieved = await admin.beta.environments.work.retrieve(polled.id, { environment_id: env.id });
assert.equal(retrieved.state, 'active');
assert.equal(retrieved.secret, null);
const patched = await admin.beta.environments.work.update(polled.id, { environment_id: env.id, metadata: { a: 'b' } });
assert.deepEqual(patched.metadata, { a: 'b' });

step('events: send / list / stream');
const stream = await worker.beta.sessions.events.stream(sess.id);
const it = stream[Symbol.asyncIterator]();
const sent = await admin.beta.sessions.events.send(sess.id, {
  events: [{ type: 'agent.tool_use', name: 'bash', input: { command: 'true' } }],
});
assert.equal(sent.data.length, 1);
const use = sent.data[0];
assert.match(use.id, /^sevt_/);
const first = await it.next();
assert.equal(first.value.type, 'agent.tool_use');
assert.equal(first.value.id, use.id);
await worker.beta.sessions.events.send(sess.id, {
  events: [{ type: 'user.tool_result', tool_use_id: use.id, content: [{ type: 'text', text: 'ok' }], is_error: false }],
});
const second = await it.next();
assert.equal(second.value.type, 'user.tool_result');
await assert.rejects(
  worker.beta.sessions.events.send(sess.id, { events: [{ type: 'user.tool_result', tool_use_id: use.id, content: [] }] }),
  (e) => e.status === 409,
  'a second result for the same call is a conflict',
);
await assert.rejects(
  worker.beta.sessions.events.send(sess.id, { events: [{ type: 'user.tool_result', tool_use_id: 'sevt_unknown', content: [] }] }),
  (e) => e.status === 400,
);
const hist = [];
for await (const ev of worker.beta.sessions.events.list(sess.id, { limit: 1 })) hist.push(ev.type);
assert.deepEqual(hist, ['agent.tool_use', 'user.tool_result']);
const onlyResults = (await worker.beta.sessions.events.list(sess.id, { types: ['user.tool_result'] })).data;
assert.deepEqual(onlyResults.map((e) => e.type), ['user.tool_result'], 'types[] as the SDK sends it');
await admin.beta.sessions.events.send(sess.id, { events: [{ type: 'session.status_terminated' }] });
const third = await it.next();
assert.equal(third.value.type, 'session.status_terminated');
assert.equal((await it.next()).done, true, 'the stream ends after termination');

step('stop answers 204; a second stop is a 409 the SDK surfaces');
await worker.beta.environments.work.stop(polled.id, { environment_id: env.id, force: true });
await assert.rejects(worker.beta.environments.work.stop(polled.id, { environment_id: env.id }), (e) => e.status === 409);
assert.equal((await admin.beta.environments.work.retrieve(polled.id, { environment_id: env.id })).state, 'stopped');

step('environments.delete');
const del = await admin.beta.environments.delete(extra.id);
assert.equal(del.id, extra.id);
await assert.rejects(admin.beta.environments.retrieve(extra.id), (e) => e.status === 404);

step('errors: the SDK sees the envelope');
await assert.rejects(admin.beta.environments.retrieve('env_00000000000000000000000000'), (e) => {
  assert.equal(e.status, 404);
  assert.equal(e.error.error.type, 'not_found_error');
  return true;
});
const bad = new Anthropic({ apiKey: 'not-the-key-not-the-key', baseURL, maxRetries: 0 });
await assert.rejects(bad.beta.environments.list(), (e) => e.status === 401);
console.log('sdk resources ok');
