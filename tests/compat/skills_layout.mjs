// The same session set-up under the SDK's own EnvironmentWorker and under
// `shed worker` (issue #9): a skill created with the SDK client, an agent
// and a memory store on `shed serve`; one session served by each worker.
// The skill tree in <workdir>/skills/ (names, types, modes, sizes) and the
// memory folder at the store's mount_path must be the same under both; a
// memory written by a tool call reaches the store from both.
import Anthropic, { toFile } from '@anthropic-ai/sdk';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const baseURL = process.env.SHED_URL;
const adminKey = process.env.SHED_ADMIN_KEY;
const shed = process.env.SHED;
const admin = new Anthropic({ apiKey: adminKey, baseURL, maxRetries: 0 });
const step = (s) => console.log('---', s);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const deadline = Date.now() + (Number(process.env.DEADLINE_MS) || 150_000);
const tag = crypto.randomBytes(4).toString('hex');

step('skill, agent, memory store, environment');
const name = `layout-${tag}`;
const skill = await admin.beta.skills.create({
  display_name: 'Layout',
  files: [
    await toFile(Buffer.from(`---\nname: ${name}\ndescription: layout test\n---\n# x\n`), 'layout/SKILL.md'),
    await toFile(Buffer.from('#!/bin/sh\necho hi\n'), 'layout/bin/hello.sh'),
    await toFile(Buffer.from('deep'), 'layout/docs/a/b/c.md'),
    await toFile(Buffer.from(''), 'layout/empty.txt'),
  ],
});
const agent = await admin.beta.agents.create({
  name: 'layout agent',
  model: 'claude-sonnet-4-5',
  skills: [{ type: 'custom', skill_id: skill.id, version: 'latest' }],
});
const store = await admin.beta.memoryStores.create({ name: `layout ${tag}` });
await admin.beta.memoryStores.memories.create(store.id, { path: '/prefs.md', content: 'tea' });
await admin.beta.memoryStores.memories.create(store.id, { path: '/notes/deep/x.md', content: 'x' });
const env = await admin.beta.environments.create({ name: 'layout', config: { type: 'self_hosted' } });
const kr = await fetch(`${baseURL}/v1/environments/${env.id}/keys`, { method: 'POST', headers: { 'x-api-key': adminKey } });
const envKey = (await kr.json()).key;

async function newSession() {
  return admin.beta.sessions.create({
    environment_id: env.id,
    agent: { type: 'agent', id: agent.id },
    resources: [{ type: 'memory_store', memory_store_id: store.id }],
  });
}
async function call(sess, name, input) {
  const sent = await admin.beta.sessions.events.send(sess.id, { events: [{ type: 'agent.tool_use', name, input }] });
  const id = sent.data[0].id;
  while (Date.now() < deadline) {
    const page = await admin.beta.sessions.events.list(sess.id, { order: 'desc', limit: 50 });
    const r = page.data.find((e) => e.type === 'user.tool_result' && e.tool_use_id === id);
    if (r) return [r, r.content.map((b) => b.text ?? '').join('')];
    await sleep(50);
  }
  throw new Error(`no result for ${id}`);
}
async function stopped(sess) {
  while (Date.now() < deadline) {
    const items = (await admin.beta.environments.work.list(env.id)).data.filter((w) => w.data.id === sess.id);
    if (items.length && items.every((w) => w.state === 'stopped')) return;
    await sleep(200);
  }
  throw new Error(`the item of ${sess.id} was not stopped`);
}
// names, types, modes, sizes; owners differ by design (the SDK runs as
// itself, shed as the sandbox user)
const LIST = (dir) => `cd ${dir} && find . -mindepth 1 -printf '%y %m %s %p\\n' | LC_ALL=C sort`;

async function observe(sess, who) {
  const mount = sess.resources[0].mount_path;
  let [r, skills] = await call(sess, 'bash', { command: LIST(`skills/${name}`) });
  assert.equal(r.is_error, false, `${who}: ${skills}`);
  let mem;
  [r, mem] = await call(sess, 'bash', { command: LIST(mount) + ` && cat ${mount}/.anthropic-memory-store` });
  assert.equal(r.is_error, false, `${who}: ${mem}`);
  [r] = await call(sess, 'write', { file_path: `${mount}/from-${who}.md`, content: `by ${who}` });
  assert.equal(r.is_error, false, `${who} write`);
  await admin.beta.sessions.events.send(sess.id, { events: [{ type: 'session.status_idle', stop_reason: { type: 'end_turn' } }] });
  await stopped(sess);
  const got = (await admin.beta.memoryStores.memories.retrieve(
    (await admin.beta.memoryStores.memories.list(store.id, { path_prefix: '/' })).data.find((m) => m.path === `/from-${who}.md`).id,
    { memory_store_id: store.id })).content;
  assert.equal(got, `by ${who}`, `${who}: the memory written reached the store`);
  await admin.beta.memoryStores.memories.delete(
    (await admin.beta.memoryStores.memories.list(store.id)).data.find((m) => m.path === `/from-${who}.md`).id,
    { memory_store_id: store.id });
  return { skills, mem: mem.replace(store.id, 'STORE') };
}

step("the SDK's EnvironmentWorker");
const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'shed-layout-'));
const ctrl = new AbortController();
const sdk = new Anthropic({ apiKey: 'unused', baseURL, logLevel: 'warn' });
const runP = sdk.beta.environments.work
  .worker({ environmentId: env.id, environmentKey: envKey, workdir, maxIdleMs: 1500, workerId: 'sdk-layout' })
  .run(ctrl.signal)
  .catch((e) => { if (!ctrl.signal.aborted) throw e; });
const a = await observe(await newSession(), 'sdk');
ctrl.abort();
await runP;
fs.rmSync(workdir, { recursive: true, force: true });

step('shed worker');
const wdir = fs.mkdtempSync(path.join(os.tmpdir(), 'shed-layout-w-'));
fs.chmodSync(wdir, 0o711); // the sandbox user traverses it to its workspace
fs.writeFileSync(path.join(wdir, 'key'), envKey + '\n', { mode: 0o600 });
const w = spawn(shed, ['worker', '--environment-id', env.id, '--environment-key-file', path.join(wdir, 'key'),
                       '--base-url', baseURL, '--state-dir', path.join(wdir, 'state'), '--max-idle', '2',
                       '--admin-socket', ''],
                { stdio: ['ignore', 'ignore', fs.openSync(path.join(wdir, 'worker.log'), 'a')] });
let b;
try {
  b = await observe(await newSession(), 'shed');
} catch (e) {
  console.error(fs.readFileSync(path.join(wdir, 'worker.log'), 'utf-8').slice(-4000));
  throw e;
} finally {
  w.kill('SIGTERM');
  await new Promise((r) => w.on('exit', r));
}
fs.rmSync(wdir, { recursive: true, force: true });

console.log('skills (SDK):\n' + a.skills + '\nskills (shed):\n' + b.skills);
console.log('memory (SDK):\n' + a.mem + '\nmemory (shed):\n' + b.mem);
assert.equal(b.skills, a.skills, 'the same skill tree under both workers');
assert.equal(b.mem, a.mem, 'the same memory folder under both workers');
console.log('skills layout compat ok');
