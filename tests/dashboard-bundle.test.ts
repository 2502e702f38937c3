import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HttpRequest, HttpResponse, InvocationContext } from '@azure/functions';
import { clientScript, defaultSources, readClientScript } from '../functions/dashboard/bundle';
import { dashboardHandler } from '../functions/http-dashboard';
import { JOB_STATUSES } from '../models/status-values';

// jest runs the TypeScript sources, where no bundle was built: the route must build one. The
// deployed app has only dist/ (a prebuilt bundle, no esbuild): the route must read that one.
const tmp = mkdtempSync(path.join(os.tmpdir(), 'coremachine-bundle-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test('from the sources: the client is bundled on demand into one browser script without zod', async () => {
  const sources = defaultSources();
  expect(sources.entry).toMatch(/functions[/\\]dashboard[/\\]client[/\\]main\.ts$/);
  const script = await clientScript();
  expect(await clientScript()).toBe(script);
  expect(script).toMatch(/^"use strict";\(\(\)=>\{/);
  expect(script).not.toMatch(/<\/script/i);
  // The statuses come from models/, and zod stays out of the browser.
  for (const status of JOB_STATUSES) expect(script).toContain(`"${status}"`);
  expect(script).not.toContain('ZodError');
  expect(script.length).toBeLessThan(60_000);
});

test('a prebuilt bundle (npm run build) is used as is, without esbuild', async () => {
  const prebuilt = path.join(tmp, 'client.bundle.js');
  writeFileSync(prebuilt, '/* prebuilt */(()=>{})();');
  await expect(readClientScript({ prebuilt, entry: path.join(tmp, 'no-such-entry.ts') })).resolves.toBe('/* prebuilt */(()=>{})();');
});

test('neither a bundle nor the sources is a clear error; a bundle that cannot be inlined is refused', async () => {
  const missing = { prebuilt: path.join(tmp, 'none.js'), entry: path.join(tmp, 'none.ts') };
  await expect(readClientScript(missing)).rejects.toThrow(/no dashboard bundle at .*none\.js and no client sources at .*none\.ts: run npm run build/);
  const unsafe = path.join(tmp, 'unsafe.js');
  writeFileSync(unsafe, 'x="</script><script>alert(1)"');
  await expect(readClientScript({ prebuilt: unsafe, entry: missing.entry })).rejects.toThrow('cannot be inlined');
});

test('the page inlines the bundle under the response nonce', async () => {
  const request = new HttpRequest({ method: 'GET', url: 'http://localhost:7071/api/dashboard' });
  const response = new HttpResponse(await dashboardHandler(request, new InvocationContext({ invocationId: 'test', functionName: 'dashboard' })));
  expect(response.status).toBe(200);
  const nonce = /script-src 'nonce-([A-Za-z0-9+/=]+)'/.exec(response.headers.get('content-security-policy') ?? '')?.[1];
  expect(nonce).toBeDefined();
  const html = await response.text();
  expect(html).toContain(`<script nonce="${nonce}">${await clientScript()}</script>`);
  expect(html.match(/<script/g)).toHaveLength(1);
});
