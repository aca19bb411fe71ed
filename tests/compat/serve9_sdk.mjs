// Skills, agents and memory stores with the official SDK against `shed serve`
// (issue #9, server side), then the SDK's own EnvironmentWorker serving a
// session that uses them: it downloads the skill (versions.retrieve +
// versions.download, the SDK's own unzip) into <workdir>/skills/<name>/,
// mounts the memory store at the mount_path the server derived (using the
// work item's sessions token), and a memory written by a tool call reaches
// the store through the worker's sync.
import Anthropic, { toFile } from '@anthropic-ai/sdk';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { adminClient, baseURL, environmentKey, resultFor, sleep, startSdkWorker, step, text } from './lib.mjs';

const admin = adminClient();
const sha = (s) => crypto.createHash('sha256').update(s, 'utf-8').digest('hex');
const deadline = Date.now() + (Number(process.env.DEADLINE_MS) || 150_000);
const tag = crypto.randomBytes(4).toString('hex');

step('skills.create with files');
const SKILL_MD = `---\nname: shed-compat-${tag}\ndescription: A skill uploaded by the SDK\n---\n# Compat skill ${tag}\n`;
const skill = await admin.beta.skills.create({
  display_name: 'Compat skill',
  files: [
    await toFile(Buffer.from(SKILL_MD), `compat-skill/SKILL.md`),
    await toFile(Buffer.from('#!/bin/sh\necho skill script ran\n'), 'compat-skill/bin/hello.sh'),
  ],
});
assert.match(skill.id, /^skill_/);
assert.equal(skill.display_name, 'Compat skill');
assert.equal(skill.source.type, 'custom');
const ver = await admin.beta.skills.versions.retrieve('latest', { skill_id: skill.id });
assert.equal(ver.id, skill.latest_version_id);
assert.equal(ver.name, `shed-compat-${tag}`);
assert.equal(ver.description, 'A skill uploaded by the SDK');
const listed = [];
for await (const v of admin.beta.skills.versions.list(skill.id)) listed.push(v.id);
assert.deepEqual(listed, [ver.id]);
const dl = await admin.beta.skills.versions.download(ver.id, { skill_id: skill.id });
const zip = Buffer.from(await dl.arrayBuffer());
assert.equal(zip.subarray(0, 4).toString('latin1'), 'PK\x03\x04', 'content is a zip');
const v2 = await admin.beta.skills.versions.create(skill.id, {
  files: [await toFile(Buffer.from(SKILL_MD.replace('Compat skill', 'Compat skill v2')), 'compat-skill/SKILL.md'),
          await toFile(Buffer.from('#!/bin/sh\necho skill script ran\n'), 'compat-skill/bin/hello.sh')],
});
assert.ok(BigInt(v2.id) > BigInt(ver.id), 'a newer version');
assert.equal((await admin.beta.skills.retrieve(skill.id)).latest_version_id, v2.id);
await assert.rejects(
  admin.beta.skills.create({ files: [await toFile(Buffer.from('no frontmatter'), 'x/SKILL.md')] }),
  (e) => e.status === 400 && /frontmatter/.test(e.message),
);

step('agents.create referencing the skill');
const agent = await admin.beta.agents.create({
  name: 'compat agent',
  model: 'claude-sonnet-4-5',
  system: 'You are a test.',
  tools: [{ type: 'agent_toolset_20260401' }],
  skills: [{ type: 'custom', skill_id: skill.id, version: 'latest' }],
});
assert.match(agent.id, /^agent_/);
assert.deepEqual(agent.skills, [{ type: 'custom', skill_id: skill.id, version: 'latest' }]);
assert.equal((await admin.beta.agents.retrieve(agent.id)).name, 'compat agent');

step('memory store and memories');
const store = await admin.beta.memoryStores.create({ name: `shed compat ${tag}`, description: 'compat' });
assert.match(store.id, /^memstore_/);
assert.equal((await admin.beta.memoryStores.retrieve(store.id)).name, `shed compat ${tag}`);
const m1 = await admin.beta.memoryStores.memories.create(store.id, { path: '/prefs.md', content: 'likes tea' });
assert.equal(m1.content_sha256, sha('likes tea'));
const m2 = await admin.beta.memoryStores.memories.create(store.id, { path: '/notes/old.md', content: 'old' });
await assert.rejects(
  admin.beta.memoryStores.memories.create(store.id, { path: '/prefs.md', content: 'x' }),
  (e) => e.status === 409,
);
const upd = await admin.beta.memoryStores.memories.update(m2.id, {
  memory_store_id: store.id,
  content: 'older',
  precondition: { type: 'content_sha256', content_sha256: sha('old') },
});
assert.equal(upd.content_sha256, sha('older'));
await assert.rejects(
  admin.beta.memoryStores.memories.update(m2.id, {
    memory_store_id: store.id,
    content: 'lost',
    precondition: { type: 'content_sha256', content_sha256: sha('old') },
  }),
  (e) => e.status === 409,
);
const full = await admin.beta.memoryStores.memories.retrieve(m1.id, { memory_store_id: store.id });
assert.equal(full.content, 'likes tea');
const items = [];
for await (const it of admin.beta.memoryStores.memories.list(store.id, { view: 'basic', limit: 1 })) items.push(it.path);
assert.deepEqual(items, ['/notes/old.md', '/prefs.md'], 'paged with limit 1');
const top = (await admin.beta.memoryStores.memories.list(store.id, { depth: 1 })).data;
assert.deepEqual(top.map((x) => [x.type, x.path]), [['memory_prefix', '/notes/'], ['memory', '/prefs.md']]);

step('environment, key, session with the agent and the store');
const env = await admin.beta.environments.create({ name: 'serve9-compat', config: { type: 'self_hosted' } });
const envKey = await environmentKey(env.id);
// The environment key is refused on memory stores, as Anthropic's API refuses it.
const envClient = new Anthropic({ apiKey: null, authToken: envKey, baseURL, maxRetries: 0 });
await assert.rejects(envClient.beta.memoryStores.memories.list(store.id), (e) => e.status === 403);
const sess = await admin.beta.sessions.create({
  environment_id: env.id,
  agent: { type: 'agent', id: agent.id },
  resources: [{ type: 'memory_store', memory_store_id: store.id }],
});
assert.deepEqual(sess.agent.skills, agent.skills);
const mount = sess.resources[0].mount_path;
assert.equal(mount, `/mnt/memory/shed-compat-${tag}`);
assert.equal(sess.resources[0].access, 'read_write');
assert.equal((await admin.beta.sessions.retrieve(sess.id)).resources[0].mount_path, mount);

step("the SDK's EnvironmentWorker serves the session");
const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'shed-serve9-'));
const ctrl = new AbortController();
const runP = startSdkWorker(
  { environmentId: env.id, environmentKey: envKey, workdir, maxIdleMs: 2500, workerId: 'sdk-serve9',
    memorySyncIntervalMs: 5000 }, ctrl);

async function call(name, input) {
  const sent = await admin.beta.sessions.events.send(sess.id, { events: [{ type: 'agent.tool_use', name, input }] });
  const r = await resultFor(admin, sess.id, sent.data[0].id, deadline);
  return [r, text(r)];
}

let [r, t] = await call('bash', { command: `cat skills/shed-compat-${tag}/SKILL.md` });
assert.equal(r.is_error, false, t);
assert.match(t, /Compat skill v2/, 'the latest version of the skill is in <workdir>/skills/<name>/');
[r, t] = await call('bash', { command: `sh skills/shed-compat-${tag}/bin/hello.sh` });
assert.match(t, /skill script ran/);
[r, t] = await call('read', { file_path: `${mount}/prefs.md` });
assert.equal(t, 'likes tea', 'the memory store is mounted at its mount_path');
[r, t] = await call('read', { file_path: `${mount}/notes/old.md` });
assert.equal(t, 'older');
[r, t] = await call('write', { file_path: `${mount}/from-sandbox.md`, content: 'written by a tool call' });
assert.equal(r.is_error, false, t);
[r, t] = await call('edit', { file_path: `${mount}/prefs.md`, old_string: 'tea', new_string: 'green tea' });
assert.equal(r.is_error, false, t);

step('the session goes idle: the worker ends with its final memory sync');
await admin.beta.sessions.events.send(sess.id, { events: [{ type: 'session.status_idle', stop_reason: { type: 'end_turn' } }] });

step('the memories written in the sandbox reach the store');
let got = null;
while (Date.now() < deadline) {
  const all = [];
  for await (const it of admin.beta.memoryStores.memories.list(store.id, { view: 'full', limit: 20 })) all.push(it);
  const byPath = Object.fromEntries(all.map((m) => [m.path, m]));
  if (byPath['/from-sandbox.md'] && byPath['/prefs.md'].content === 'likes green tea') {
    got = byPath;
    break;
  }
  await sleep(250);
}
assert.ok(got, 'the worker synced the new and the edited memory back to shed serve');
assert.equal(got['/from-sandbox.md'].content, 'written by a tool call');
assert.equal(got['/from-sandbox.md'].content_sha256, sha('written by a tool call'));

step('the item ends; the worker cleans up');
let stopped = false;
while (Date.now() < deadline && !stopped) {
  const items = (await admin.beta.environments.work.list(env.id)).data;
  stopped = items.length > 0 && items.every((w) => w.state === 'stopped');
  if (!stopped) await sleep(200);
}
assert.ok(stopped, 'the worker stopped its item after its idle timeout');
for (let i = 0; i < 100 && (fs.existsSync(mount) || fs.existsSync(path.join(workdir, 'skills', `shed-compat-${tag}`))); i++)
  await sleep(100);
assert.equal(fs.existsSync(mount), false, 'the memory folder is removed at the end');
assert.equal(fs.existsSync(path.join(workdir, 'skills', `shed-compat-${tag}`)), false, 'the skill is removed at the end');
ctrl.abort();
await runP;
fs.rmSync(workdir, { recursive: true, force: true });
console.log('serve9 sdk compat ok');
