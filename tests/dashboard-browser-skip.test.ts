import { spawn } from 'node:child_process';
import path from 'node:path';

// On a machine without Chromium `npm test` must pass: the browser suite skips with a notice. CI
// sets COREMACHINE_REQUIRE_BROWSER=1, and then a missing Chromium must fail it. Runs jest on the
// browser file with a Chromium path that does not exist, in both modes (the suite never gets as
// far as a database or a browser, so each run is mostly jest's start-up).
const ROOT = path.join(__dirname, '..');

function runBrowserSuite(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [require.resolve('jest/bin/jest'), '--ci', '--colors=false', 'tests/dashboard.browser.test.ts'], {
      cwd: ROOT,
      env: { ...process.env, CHROMIUM_PATH: '/nonexistent/chromium', COREMACHINE_REQUIRE_BROWSER: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

test('without Chromium the browser suite is skipped with a notice; with COREMACHINE_REQUIRE_BROWSER=1 it fails and says why', async () => {
  const [skipped, required] = await Promise.all([runBrowserSuite({}), runBrowserSuite({ COREMACHINE_REQUIRE_BROWSER: '1' })]);

  expect(skipped.code).toBe(0);
  expect(skipped.output).toContain('SKIPPED tests/dashboard.browser.test.ts: no Chromium executable at /nonexistent/chromium');
  expect(skipped.output).toMatch(/Tests:\s+\d+ skipped, \d+ total/);

  expect(required.code).toBe(1);
  expect(required.output).toContain('COREMACHINE_REQUIRE_BROWSER=1 and no Chromium executable at /nonexistent/chromium');
  expect(required.output).toMatch(/Tests:\s+\d+ failed, \d+ total/);
}, 180_000);
