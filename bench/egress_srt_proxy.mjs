// Anthropic's sandbox-runtime HTTP proxy (npm @anthropic-ai/sandbox-runtime),
// run standalone for bench/egress.sh with the same allow-list the shed run
// gets (one host; srt's filter sees the host as the client spelled it).
// Prints the port it listens on. Usage: node egress_srt_proxy.mjs PKG_DIR
import { pathToFileURL } from 'node:url';
const dir = process.argv[2];
const { createHttpProxyServer } = await import(
    pathToFileURL(`${dir}/dist/sandbox/http-proxy.js`).href);
const allowed = new Set(['localhost']);
const server = createHttpProxyServer({ filter: (port, host) => allowed.has(host.toLowerCase()) });
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
