// The anchor of bench/worker.sh: the official SDK's EnvironmentWorker (Node,
// no sandbox at all) polling the same `shed serve`. Benchmark tooling only.
// usage: node worker_sdk.mjs BASE_URL ENVIRONMENT_ID KEY_FILE WORKDIR
import { readFileSync } from 'node:fs';
import Anthropic from '@anthropic-ai/sdk';

const [baseURL, environmentId, keyFile, workdir] = process.argv.slice(2);
const environmentKey = readFileSync(keyFile, 'utf8').trim();
const client = new Anthropic({ baseURL, apiKey: 'unused-by-the-worker', logLevel: 'warn' });
const ctrl = new AbortController();
process.on('SIGTERM', () => ctrl.abort());
process.on('SIGINT', () => ctrl.abort());
const worker = client.beta.environments.work.worker({ environmentId, environmentKey, workdir, maxIdleMs: 600_000 });
try {
  await worker.run(ctrl.signal);
} catch (e) {
  if (!ctrl.signal.aborted) {
    console.error('sdk worker failed:', e);
    process.exit(1);
  }
}
process.exit(0);
