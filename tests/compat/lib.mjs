// Shared by the SDK compatibility scripts (tests/compat/serve*.mjs, run by
// tests/integration/serve*_compat.sh with SHED_URL and SHED_ADMIN_KEY set):
// the admin client, environment keys, the SDK's own EnvironmentWorker, and
// waiting for a call's result. Every call goes through the pinned
// @anthropic-ai/sdk or plain fetch against shed serve; nothing here stands
// in for either.
import Anthropic from '@anthropic-ai/sdk';
import assert from 'node:assert/strict';

export const baseURL = process.env.SHED_URL;
export const adminKey = process.env.SHED_ADMIN_KEY;
export const adminClient = () => new Anthropic({ apiKey: adminKey, baseURL, maxRetries: 0 });
export const step = (s) => console.log('---', s);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const text = (r) => r.content.map((b) => b.text ?? '').join('');

// LOCAL: mint an environment key (not an SDK method: plain fetch, 201).
export async function environmentKey(envId) {
  const kr = await fetch(`${baseURL}/v1/environments/${envId}/keys`, {
    method: 'POST',
    headers: { 'x-api-key': adminKey },
  });
  assert.equal(kr.status, 201);
  return (await kr.json()).key;
}

// The SDK's EnvironmentWorker (`client.beta.environments.work.worker(opts).run()`),
// stopped by ctrl.abort(); the promise rejects only on an error before that.
export function startSdkWorker(opts, ctrl, logLevel = 'warn') {
  const c = new Anthropic({ apiKey: 'unused-by-the-worker', baseURL, logLevel });
  return c.beta.environments.work
    .worker(opts)
    .run(ctrl.signal)
    .catch((e) => {
      if (!ctrl.signal.aborted) throw e;
    });
}

// The user.tool_result of useId in session sessId, polled until deadline (ms).
export async function resultFor(admin, sessId, useId, deadline) {
  while (Date.now() < deadline) {
    const page = await admin.beta.sessions.events.list(sessId, { order: 'desc', limit: 50 });
    const r = page.data.find((e) => e.type === 'user.tool_result' && e.tool_use_id === useId);
    if (r) return r;
    await sleep(50);
  }
  throw new Error(`no result for ${useId}`);
}
