// Runs agent tool calls through the REFERENCE toolset (@anthropic-ai/sdk,
// tools/agent-toolset/node) in-process, printing one JSON line per call in
// the format of `shed tool`: {"name","is_error","content"}.
//
// usage: node tools_ref.mjs --workdir DIR --calls FILE
// Content is converted the way the SDK's session tool runner converts a tool's
// return value for a user.tool_result event (string -> one text block, ""
// -> "(no output)"). A call whose input has "_cancel_after_ms" is aborted
// through its AbortSignal after that many ms (the runner's cancellation).
// Never used by shed itself: test and benchmark tooling only.
import { readFileSync, writeSync } from 'node:fs';
import { betaAgentToolset20260401 } from '@anthropic-ai/sdk/tools/agent-toolset/node';

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

function toSessionContent(content) {
  if (typeof content === 'string') return [{ type: 'text', text: content || '(no output)' }];
  const out = content.map((b) => (b.type === 'text' ? { type: 'text', text: b.text || '(no output)' } : b));
  return out.length > 0 ? out : [{ type: 'text', text: '(no output)' }];
}

function thrownErrorText(e) {
  return `Error: ${e instanceof Error ? e.message : String(e)}`;
}

const workdir = arg('--workdir', process.cwd());
// The natural setup (the CLI's default workdir is "."). It matters: Node's
// fs.glob checks its exclude option against paths relative to the process's
// cwd, so the reference prunes .git and node_modules reliably only then.
process.chdir(workdir);
const calls = JSON.parse(readFileSync(arg('--calls'), 'utf8'));
const tools = betaAgentToolset20260401({ workdir });
const byName = new Map(tools.map((t) => [t.name, t]));

for (const call of calls) {
  const tool = byName.get(call.name);
  let content, isError;
  if (!tool) {
    content = `unknown tool: ${call.name}`;
    isError = true;
  } else {
    const input = { ...(call.input ?? {}) };
    const ctrl = new AbortController();
    let timer;
    if (input._cancel_after_ms !== undefined) {
      timer = setTimeout(() => ctrl.abort(), input._cancel_after_ms);
      delete input._cancel_after_ms;
    }
    try {
      content = await tool.run(tool.parse(input), { toolUse: call, toolUseBlock: call, signal: ctrl.signal });
      isError = false;
    } catch (e) {
      content = e && e.name === 'ToolError' ? e.content : thrownErrorText(e);
      isError = true;
    } finally {
      clearTimeout(timer);
    }
  }
  writeSync(1, JSON.stringify({ name: call.name, is_error: isError, content: toSessionContent(content) }) + '\n');
}
for (const t of tools) await t.close?.();
process.exit(0);
