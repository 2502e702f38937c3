import { readFileSync } from 'node:fs';
import path from 'node:path';
import { CONFIG_SETTING_NAMES, DEFAULT_API_URL, loadConfig, remoteSettings } from '../core/config';

test('defaults: the janitor windows and cadence, lease losses and the shutdown grace', () => {
  const config = loadConfig({});
  expect(config.janitor).toEqual({ stallAfterMs: 5 * 60_000, outboxAgeMs: 5000, batchSize: 500, maxLeaseLosses: 3 });
  expect(config.janitorIntervalMs).toBe(10_000);
  expect(config.shutdownGraceMs).toBe(20_000);
  expect(config.workerToken).toBeUndefined();
  expect(config.functionKey).toBeUndefined();
  expect(remoteSettings({})).toEqual({ apiUrl: DEFAULT_API_URL, functionKey: undefined });
});

test('settings override the defaults; an empty key or token is none', () => {
  const config = loadConfig({
    JANITOR_STALL_AFTER_SECONDS: '600',
    JANITOR_OUTBOX_AGE_SECONDS: '5',
    JANITOR_BATCH_SIZE: '50',
    COREMACHINE_JANITOR_INTERVAL_SECONDS: '2',
    COREMACHINE_WORKER_TOKEN: 'token',
    COREMACHINE_FUNCTION_KEY: '',
  });
  expect(config).toMatchObject({
    janitor: { stallAfterMs: 600_000, outboxAgeMs: 5000, batchSize: 50 },
    janitorIntervalMs: 2000,
    workerToken: 'token',
    functionKey: undefined,
  });
  expect(loadConfig({ COREMACHINE_WORKER_TOKEN: '' }).workerToken).toBeUndefined();
  expect(remoteSettings({ COREMACHINE_URL: 'http://api:1', COREMACHINE_FUNCTION_KEY: 'k' })).toEqual({ apiUrl: 'http://api:1', functionKey: 'k' });
});

test('a bad value is refused at startup, naming the setting', () => {
  expect(() => loadConfig({ JANITOR_BATCH_SIZE: '0' })).toThrow(/JANITOR_BATCH_SIZE/);
  expect(() => loadConfig({ JANITOR_STALL_AFTER_SECONDS: 'soon' })).toThrow(/JANITOR_STALL_AFTER_SECONDS/);
});

test("docs/configuration.md's settings table lists every setting loadConfig reads", () => {
  const page = readFileSync(path.resolve(__dirname, '../docs/configuration.md'), 'utf8');
  const start = page.indexOf('\n## Settings\n');
  expect(start).toBeGreaterThan(0);
  const next = page.indexOf('\n## ', start + 1);
  const table = page.slice(start, next < 0 ? undefined : next);
  const listed = new Set([...table.matchAll(/^\| `([A-Za-z_]+)` \|/gm)].map((m) => m[1]));
  expect(CONFIG_SETTING_NAMES.length).toBeGreaterThan(10);
  expect(CONFIG_SETTING_NAMES.filter((name) => !listed.has(name))).toEqual([]);
});
