import { accessSync, constants, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { z } from 'zod';
import { loadConfig } from '../core/config';
import { createLogger } from '../core/logger';
import { startLocalRuntime, type LocalRuntime } from '../core/local-runtime';
import { appRegistry } from './support/registry';
import { defineJob, defineRemoteTask, defineTask, TaskFailure } from '../models';
import { startDevServer } from '../bin/cli/dev-server';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { stuckJobs } from './support/harness';

// Waits use locators, never page.waitForFunction: the dashboard's Content-Security-Policy (rightly)
// refuses the string evaluation that needs.
// Chromium: CHROMIUM_PATH, else Debian's /usr/bin/chromium. Without one the suite is skipped with a
// notice, so `npm test` passes on a fresh machine; CI (.ci/run) installs Chromium and sets
// COREMACHINE_REQUIRE_BROWSER=1, and then a missing browser fails the suite instead.
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const REQUIRE_BROWSER = process.env.COREMACHINE_REQUIRE_BROWSER === '1';
const MISSING = chromiumMissing(CHROMIUM);
if (MISSING && !REQUIRE_BROWSER) {
  console.warn(
    `SKIPPED tests/dashboard.browser.test.ts: ${MISSING}. Install it (apt-get install -y chromium) or set CHROMIUM_PATH; COREMACHINE_REQUIRE_BROWSER=1 makes this a failure.`,
  );
}

function chromiumMissing(file: string): string | undefined {
  try {
    accessSync(file, constants.X_OK);
    return undefined;
  } catch {
    return `no Chromium executable at ${file}`;
  }
}

const KEY = 'browser-test-key';
const ARTIFACTS = path.join(__dirname, '..', 'test-artifacts');
const timings: Record<string, number> = {};

/** Waits until its lease is lost or the job is cancelled (signal), or 30 s: a task to cancel. */
const waitTask = defineTask({
  type: 'test.dashboard.wait',
  parameters: z.object({ index: z.number().int() }),
  handler: async ({ index }, ctx) => {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 30_000);
      const stop = () => {
        clearTimeout(timer);
        resolve();
      };
      if (ctx.signal.aborted) stop();
      else ctx.signal.addEventListener('abort', stop, { once: true });
    });
    if (ctx.signal.aborted) throw new Error(`task ${index} stopped: ${String(ctx.signal.reason)}`);
    return { index };
  },
});
const slowJob = defineJob({ type: 'test.dashboard_slow', parameters: z.object({ n: z.number().int().min(1).max(20) }) })
  .stage({ name: 'wait', task: waitTask, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, index) => ({ index })) })
  .stage({ name: 'again', task: waitTask, fanOut: () => [{ index: 0 }] })
  .finalize(() => ({ done: true }));
/**
 * Stage 1 ends two tasks, fails one at once (tolerated) and keeps one running until the job is
 * cancelled: a current stage of 2 + 1 of 4 for the list's bar, and a stage 2 that stays PENDING.
 */
const mixedTask = defineTask({
  type: 'test.dashboard.mixed',
  parameters: z.object({ index: z.number().int() }),
  handler: async ({ index }, ctx) => {
    if (index === 2) throw new TaskFailure('task 2 fails on purpose', { nonRetryable: true });
    if (index === 3) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 30_000);
        ctx.signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
        if (ctx.signal.aborted) resolve();
      });
      if (ctx.signal.aborted) throw new Error(`task ${index} stopped: ${String(ctx.signal.reason)}`);
    }
    return { index };
  },
});
const mixedJob = defineJob({ type: 'test.dashboard_mixed', parameters: z.object({ tag: z.string() }) })
  .stage({
    name: 'mixed',
    task: mixedTask,
    failurePolicy: { kind: 'tolerate', maxFailures: 1 },
    fanOut: () => [0, 1, 2, 3].map((index) => ({ index })),
  })
  .stage({ name: 'after', task: mixedTask, fanOut: () => [{ index: 0 }] })
  .finalize(() => ({ done: true }));
/** A stage that fans out to no tasks completes at once with a total of 0. */
const emptyJob = defineJob({ type: 'test.dashboard_empty', parameters: z.object({ tag: z.string() }) })
  .stage({ name: 'none', task: mixedTask, fanOut: () => [] })
  .finalize(() => ({ done: true }));
/** One task a remote worker claims over HTTP: a worker for the workers panel. */
const remoteRender = defineRemoteTask({
  type: 'test.dashboard.render',
  parameters: z.object({ index: z.number().int() }),
  result: z.object({ ok: z.boolean() }),
});
const remoteJob = defineJob({ type: 'test.dashboard_remote', parameters: z.object({ tag: z.string() }) })
  .stage({ name: 'render', task: remoteRender, fanOut: () => [{ index: 0 }] })
  .finalize(() => ({ done: true }));
/** Task 0 logs two lines (one with markup in it), task 1 none: the tasks table's Logs column. */
const loggingJob = defineJob({ type: 'test.dashboard_logs', parameters: z.object({ tag: z.string() }) })
  .stage({
    name: 'log',
    task: defineTask({
      type: 'test.dashboard.log',
      parameters: z.object({ index: z.number().int() }),
      handler: ({ index }, ctx) => {
        if (index === 0) {
          ctx.log('info', '<img src=x onerror="window.__pwnedLog=1">', { i: 1 });
          ctx.log('warn', 'second line');
        }
        return {};
      },
    }),
    fanOut: () => [{ index: 0 }, { index: 1 }],
  })
  .finalize(() => ({ done: true }));

(MISSING && !REQUIRE_BROWSER ? describe.skip : describe)('dashboard in Chromium', () => {
  let db: TestDatabase;
  let runtime: LocalRuntime;
  let server: { url: string; close: () => Promise<void> };
  let profileDir: string;
  let context: BrowserContext;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    if (MISSING) throw new Error(`COREMACHINE_REQUIRE_BROWSER=1 and ${MISSING}: install it (apt-get install -y chromium) or set CHROMIUM_PATH.`);
    mkdirSync(ARTIFACTS, { recursive: true });
    db = await createTestDatabase();
    const logger = createLogger('silent');
    runtime = await startLocalRuntime(
      loadConfig({ DATABASE_URL: db.url, LOG_LEVEL: 'silent' }),
      appRegistry(slowJob, remoteJob, loggingJob, mixedJob, emptyJob),
      logger,
    );
    server = await startDevServer(runtime, logger, { port: 0, host: '127.0.0.1', functionKey: KEY });
    profileDir = mkdtempSync(path.join(os.tmpdir(), 'coremachine-chromium-'));
    const launched = Date.now();
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1366, height: 900 },
      timeout: 30_000,
    });
    timings.launchMs = Date.now() - launched;
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(20_000);
    // Script errors and CSP violations (which would mean the page's own code or style is blocked) land here.
    page.on('pageerror', (error) => pageErrors.push(`pageerror: ${error.message}`));
    page.on('console', (message) => {
      // 4xx answers the page expects (the error test) log "Failed to load resource"; anything else is a bug.
      if (message.type() === 'error' && !message.text().includes('status of 4')) pageErrors.push(`console: ${message.text()}`);
    });
  });

  afterAll(async () => {
    const bounded = <T>(work: Promise<T> | undefined, ms: number) => Promise.race([work, new Promise((resolve) => setTimeout(resolve, ms).unref())]);
    await bounded(context?.close(), 10_000);
    if (profileDir) rmSync(profileDir, { recursive: true, force: true });
    await server?.close();
    await runtime?.close();
    if (db) {
      expect(await stuckJobs(db.pool)).toEqual([]);
      await db.drop();
    }
    mkdirSync(ARTIFACTS, { recursive: true });
    writeFileSync(path.join(ARTIFACTS, 'dashboard-timings.json'), `${JSON.stringify(timings, null, 2)}\n`);
  });

  afterEach(() => {
    expect(pageErrors).toEqual([]);
  });

  const api = async <T>(route: string, init: RequestInit = {}): Promise<T> =>
    (await (await fetch(`${server.url}/api/${route}`, { ...init, headers: { 'x-functions-key': KEY, 'content-type': 'application/json' } })).json()) as T;

  async function submitFromPage(jobType: string, parameters: string): Promise<void> {
    await page.locator('#submit-type').fill(jobType);
    await page.locator('#submit-params').fill(parameters);
    await page.getByRole('button', { name: 'Submit job' }).click();
  }

  function jobIdFromUrl(): string {
    const match = /#\/jobs\/([0-9a-f]{64})$/.exec(page.url());
    if (!match?.[1]) throw new Error(`not on a job page: ${page.url()}`);
    return match[1];
  }

  test('submit hello_world from the page and watch both stage bars reach COMPLETED', async () => {
    const started = Date.now();
    const response = await page.goto(`${server.url}/api/dashboard?code=${KEY}`);
    // Only the page's own nonce'd script and style may run, and the key in the URL is neither cached nor sent on.
    const headers = response?.headers() ?? {};
    expect(headers['content-type']).toBe('text/html; charset=utf-8');
    expect(headers['content-security-policy']).toMatch(/script-src 'nonce-[A-Za-z0-9+/=]+'; style-src 'nonce-/);
    expect(headers).toMatchObject({ 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' });
    expect((await fetch(`${server.url}/api/dashboard`)).status).toBe(401);
    await page.getByRole('heading', { name: 'Jobs' }).waitFor();
    expect(await page.locator('#key-notice').isHidden()).toBe(true);
    // The bundled client is inline with the nonce: one script, nothing loaded from elsewhere.
    expect(await page.locator('script').count()).toBe(1);
    expect(await page.locator('script[src]').count()).toBe(0);
    await submitFromPage('hello_world', '{"n": 20}');
    await page.waitForURL(/#\/jobs\/[0-9a-f]{64}$/);
    const jobId = jobIdFromUrl();
    await page.locator('#stages .stage[data-stage="2"][data-status="COMPLETED"]').waitFor();
    await page.locator('#job-heading[data-status="COMPLETED"]').waitFor();
    timings.helloWorldToCompletedMs = Date.now() - started;

    for (const n of [1, 2]) {
      const stage = page.locator(`#stages .stage[data-stage="${n}"]`);
      expect(await stage.getAttribute('data-status')).toBe('COMPLETED');
      expect(await stage.textContent()).toContain('20/20 completed · 0 failed');
      expect(await stage.getByRole('progressbar').getAttribute('aria-valuenow')).toBe('20');
    }
    expect(await page.locator('#job-status').textContent()).toContain('COMPLETED');
    expect(await page.locator('#result').textContent()).toContain('"summary": "20 of 20 greetings answered"');
    // The result is all the outcome shows: no error box, no stray text around it.
    expect(await page.locator('#outcome').textContent()).toBe(await page.locator('#result').textContent());
    expect(await page.locator('#parameters').textContent()).toBe(JSON.stringify({ n: 20 }, null, 2));
    for (const action of ['cancel', 'pause', 'resume', 'retry']) expect(await page.locator(`#action-${action}`).isDisabled()).toBe(true);
    // The poll that saw COMPLETED goes on to load the finished stage's tasks and the rest of the trail.
    await page.locator('#task-rows tr[data-task-status="COMPLETED"]').nth(19).waitFor();
    expect(await page.locator('#task-rows tr').count()).toBe(20);
    // A lease lost to a host that died is shown beside the attempt, not counted as one.
    await db.pool.query('UPDATE coremachine.tasks SET lease_losses = 2 WHERE task_id = $1', [`${jobId}-s1-t5`]);
    await page.locator('#task-stage').selectOption('1');
    await page.locator('#task-rows tr td[title$="-s1-t19"]').waitFor();
    expect(await page.locator('#task-rows tr').count()).toBe(20);
    expect(await page.locator('#task-rows [data-lease-losses]').count()).toBe(1);
    expect(
      await page
        .locator('#task-rows tr', { has: page.locator('td[title$="-s1-t5"]') })
        .locator('[data-lease-losses="2"]')
        .textContent(),
    ).toBe(' +2 lost');
    expect(await page.locator('#tasks-heading ~ .pager').textContent()).toContain('Showing 20 of 20 tasks in stage 1');
    await page.locator('#task-stage').selectOption('current');
    await page.locator('#task-rows tr td[title$="-s2-t19"]').waitFor();
    // Newest first: the job's own COMPLETED event is the last one written, so once it tops the table the trail is complete.
    await page.locator('#event-rows tr:first-child[data-entity="job"]', { hasText: 'PROCESSING → COMPLETED' }).waitFor();
    const apiEvents = await api<{ events: unknown[] }>(`jobs/${jobId}/events`);
    expect(await page.locator('#event-rows tr').count()).toBe(Math.min(200, apiEvents.events.length));
    expect((await api<{ status: string }>(`jobs/${jobId}`)).status).toBe('COMPLETED');
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png'), fullPage: true });
  });

  test('errors from the API are shown as text: markup in them is never interpreted', async () => {
    await page.goto(`${server.url}/api/dashboard?code=${KEY}#/`);
    await submitFromPage('<img src=x onerror="window.__pwned=1">', '{}');
    const box = page.locator('#submit-result .error-box');
    await box.waitFor();
    expect(await box.textContent()).toContain('<img src=x onerror="window.__pwned=1">');
    expect(await page.locator('#submit-result img').count()).toBe(0);
    expect(await page.evaluate<string>('typeof window.__pwned')).toBe('undefined');

    await submitFromPage('hello_world', '{"n": 0}');
    await page.locator('#submit-result .error-box', { hasText: 'ValidationError' }).waitFor();
    expect(await page.locator('#submit-result pre').textContent()).toContain('"n"');
    await submitFromPage('hello_world', '{n: 1}');
    await page.locator('#submit-result .error-box', { hasText: 'not valid JSON' }).waitFor();
    expect(page.url()).toMatch(/#\/$/);
  });

  test('cancel a running job from the page: the dialog can be dismissed, confirming cancels it', async () => {
    await page.goto(`${server.url}/api/dashboard?code=${KEY}#/`);
    await submitFromPage('test.dashboard_slow', '{"n": 3}');
    await page.waitForURL(/#\/jobs\/[0-9a-f]{64}$/);
    const jobId = jobIdFromUrl();
    await page.locator('#stages .stage[data-stage="1"][data-status="PROCESSING"]').waitFor();
    await page.locator('#task-rows tr[data-task-status="PROCESSING"]').first().waitFor();
    expect(await page.locator('#stages .stage[data-stage="2"]').getAttribute('data-status')).toBe('PENDING');
    expect(await page.locator('#action-cancel').isEnabled()).toBe(true);
    expect(await page.locator('#action-pause').isEnabled()).toBe(true);
    expect(await page.locator('#action-resume').isDisabled()).toBe(true);
    expect(await page.locator('#action-retry').isDisabled()).toBe(true);

    // Escape dismisses: nothing is sent, the job keeps running.
    await page.locator('#action-cancel').click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    expect(await dialog.textContent()).toContain('Cancel this job?');
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    expect((await api<{ status: string }>(`jobs/${jobId}`)).status).toBe('PROCESSING');

    const cancelled = Date.now();
    await page.locator('#action-cancel').click();
    await dialog.getByRole('button', { name: 'Cancel job' }).click();
    await page.locator('#job-heading[data-status="CANCELLED"]').waitFor();
    timings.cancelToCancelledMs = Date.now() - cancelled;
    expect(await page.locator('#live').textContent()).toBe('Cancel done: the job is CANCELLED');
    expect(await page.locator('#job-status').textContent()).toContain('CANCELLED');
    for (const action of ['cancel', 'pause', 'resume', 'retry']) expect(await page.locator(`#action-${action}`).isDisabled()).toBe(true);
    expect((await api<{ status: string }>(`jobs/${jobId}`)).status).toBe('CANCELLED');
    // The running handlers were aborted, not left to run out their 30 s.
    await page.locator('#stages .stage[data-stage="1"][data-status="CANCELLED"]').waitFor();
    expect(timings.cancelToCancelledMs).toBeLessThan(10_000);
    // The refresh after the action brings the cancellation into the trail, newest first.
    await page.locator('#event-rows tr[data-entity="job"]', { hasText: '→ CANCELLED' }).waitFor();
    expect(await page.locator('#event-rows tr').first().textContent()).toContain('→ CANCELLED');
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-cancelled.png'), fullPage: true });
  });

  test('the job list filters by status and type and pages with nextCursor', async () => {
    // 26 distinct hello_world jobs (n = 20 already exists): one full page of 25 and one more.
    for (let n = 1; n <= 26; n++) await api(`jobs/hello_world`, { method: 'POST', body: JSON.stringify({ n }) });
    await page.goto(`${server.url}/api/dashboard?code=${KEY}#/`);
    await page.locator('#filter-type').fill('hello_world');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.waitForURL(/#\/\?type=hello_world$/);
    const rows = page.locator('#job-rows tr[data-job-id]');
    const listedIds = async () => Promise.all(Array.from({ length: await rows.count() }, (_, i) => rows.nth(i).getAttribute('data-job-id')));
    // The table says which request its rows answer, so rows left from before a filter or page change never count.
    const rowsFor = async (selector: string, n: number) => {
      await page.locator(`#job-rows${selector}`).waitFor({ state: 'attached' });
      expect(await rows.count()).toBe(n);
    };
    await rowsFor('[data-query*="jobType=hello_world"]:not([data-query*="cursor="])', 25);
    expect(await rows.filter({ hasNotText: 'hello_world' }).count()).toBe(0);
    const firstPage = await listedIds();
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-list.png') });
    expect(await page.getByRole('button', { name: '← Newer' }).isDisabled()).toBe(true);
    await page.getByRole('button', { name: 'Older →' }).click();
    await rowsFor('[data-query*="jobType=hello_world"][data-query*="cursor="]', 1);
    const secondPage = await listedIds();
    expect(secondPage).toHaveLength(1);
    expect(firstPage).not.toContain(secondPage[0]);
    expect(await page.getByRole('button', { name: 'Older →' }).isDisabled()).toBe(true);
    await page.getByRole('button', { name: '← Newer' }).click();
    await rowsFor('[data-query*="jobType=hello_world"]:not([data-query*="cursor="])', 25);

    await page.locator('#filter-status').selectOption('CANCELLED');
    await page.locator('#filter-type').fill('');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await rowsFor('[data-query*="status=CANCELLED"]:not([data-query*="jobType"])', 1);
    expect(await rows.first().textContent()).toContain('test.dashboard_slow');
    expect(await rows.first().textContent()).toContain('stage 1 of 2');
    // Keyboard: the row's link opens the job.
    await rows.first().getByRole('link').focus();
    await page.keyboard.press('Enter');
    await page.locator('#job-heading[data-status="CANCELLED"]').waitFor();
  });

  test('the page calls /api on its own origin even when opened at a path like //evil.example/api/dashboard', async () => {
    // Served through route interception so the test does not depend on how a server parses such
    // a path: the page's location.pathname is //evil.example/api/dashboard either way.
    const requested: string[] = [];
    const record = (request: { url(): string }) => requested.push(request.url());
    page.on('request', record);
    await page.route(
      (url) => url.pathname.startsWith('//evil.example/'),
      async (route) => {
        const real = await fetch(`${server.url}/api/dashboard?code=${KEY}`);
        await route.fulfill({ status: real.status, headers: Object.fromEntries(real.headers), body: await real.text() });
      },
    );
    try {
      await page.goto(`${server.url}//evil.example/api/dashboard?code=${KEY}#/`);
      expect(await page.evaluate<string>('location.pathname')).toBe('//evil.example/api/dashboard');
      await page.locator('#job-rows[data-query]').waitFor({ state: 'attached' });
      expect(await page.locator('#job-rows tr[data-job-id]').count()).toBeGreaterThan(0);
      expect(requested.filter((url) => !url.startsWith(`${server.url}/`))).toEqual([]);
      expect(requested.filter((url) => url.startsWith(`${server.url}/api/jobs?`)).length).toBeGreaterThan(0);
    } finally {
      page.off('request', record);
      await page.unrouteAll();
    }
  });

  test('a job with 30,000 events shows its newest events (the cancellation) first and loads older ones on demand', async () => {
    const submitted = await api<{ jobId: string }>('jobs/test.dashboard_slow', { method: 'POST', body: JSON.stringify({ n: 1 }) });
    const jobId = submitted.jobId;
    // A long trail without 10,000 real tasks: rows as the task trigger writes them, then a real cancel.
    await db.pool.query(
      `INSERT INTO coremachine.events (job_id, entity, stage, task_id, from_status, to_status, attempt)
       SELECT $1, 'task', 1, $1 || '-s1-t' || (g % 10000), 'PROCESSING', 'QUEUED', 1 + g / 10000 FROM generate_series(0, 29999) g`,
      [jobId],
    );
    expect((await api<{ status: string }>(`jobs/${jobId}/cancel`, { method: 'POST' })).status).toBe('CANCELLED');

    await page.goto(`${server.url}/api/dashboard?code=${KEY}#/jobs/${jobId}`);
    await page.locator('#job-heading[data-status="CANCELLED"]').waitFor();
    const rows = page.locator('#event-rows tr');
    // Cancelling writes the job's event, then its tasks' and its stage's: all among the newest rows.
    await page.locator('#event-rows tr[data-entity="job"]', { hasText: '→ CANCELLED' }).waitFor();
    await page.locator('#event-rows tr[data-entity="stage"]', { hasText: '→ CANCELLED' }).waitFor();
    expect(await rows.count()).toBe(200);
    expect(await page.locator('#event-note').textContent()).toBe('Newest first. Showing 200 most recent events; older events exist.');
    const idAt = async (index: number) => Number(await rows.nth(index).getAttribute('data-event-id'));
    const newestPage = await api<{ events: Array<{ id: number }> }>(`jobs/${jobId}/events?order=desc&limit=200`);
    expect(await idAt(0)).toBe(newestPage.events[0]?.id);
    expect(await idAt(199)).toBe(newestPage.events[199]?.id);

    await page.getByRole('button', { name: 'Load older events' }).click();
    await rows.nth(399).waitFor();
    expect(await rows.count()).toBe(400);
    const olderPage = await api<{ events: Array<{ id: number }> }>(`jobs/${jobId}/events?order=desc&limit=200&beforeId=${await idAt(199)}`);
    expect(await idAt(200)).toBe(olderPage.events[0]?.id);
    expect(await idAt(399)).toBe(olderPage.events[199]?.id);
    expect(await page.locator('#live').textContent()).toBe('Loaded 200 older events');
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-events.png'), fullPage: false });
  });

  test('run a job again with an idempotency key, delete it once finished, and pause/resume a schedule', async () => {
    await page.goto(`${server.url}/api/dashboard?code=${KEY}#/`);
    const plain = await api<{ jobId: string }>('jobs/hello_world', { method: 'POST', body: JSON.stringify({ n: 3 }) });
    await page.locator('#submit-key').fill('browser-rerun-1');
    await submitFromPage('hello_world', '{"n": 3}');
    await page.waitForURL(/#\/jobs\/[0-9a-f]{64}$/);
    const rerun = jobIdFromUrl();
    // Same type and parameters, another key: another job.
    expect(rerun).not.toBe(plain.jobId);
    await page.locator('#job-heading[data-status="COMPLETED"]').waitFor();
    expect((await api<{ idempotencyKey: string | null }>(`jobs/${rerun}`)).idempotencyKey).toBe('browser-rerun-1');

    await page.locator('#action-delete:not([disabled])').click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    expect(await dialog.textContent()).toContain('Delete this job?');
    await dialog.getByRole('button', { name: 'Delete job' }).click();
    await page.waitForURL(/#\/$/);
    const gone = await fetch(`${server.url}/api/jobs/${rerun}`, { headers: { 'x-functions-key': KEY } });
    expect(gone.status).toBe(404);

    // The shipped example schedule is declared paused.
    const row = page.locator('#schedule-rows tr[data-schedule="hello_world_hourly"]');
    await row.waitFor();
    expect(await row.textContent()).toContain('PAUSED');
    await row.getByRole('button', { name: 'Resume' }).click();
    await dialog.getByRole('button', { name: 'Resume schedule' }).click();
    await row.getByRole('button', { name: 'Pause' }).waitFor();
    const listed = await api<{ schedules: Array<{ name: string; paused: boolean; nextFireAt: string | null }> }>('schedules');
    const schedule = listed.schedules.find((s) => s.name === 'hello_world_hourly');
    expect(schedule).toMatchObject({ paused: false });
    expect(schedule?.nextFireAt).not.toBeNull();
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-schedules.png'), fullPage: true });
    await row.getByRole('button', { name: 'Pause' }).click();
    await dialog.getByRole('button', { name: 'Pause schedule' }).click();
    await row.getByRole('button', { name: 'Resume' }).waitFor();
    expect(
      (await api<{ schedules: Array<{ name: string; paused: boolean }> }>('schedules')).schedules.find((s) => s.name === 'hello_world_hourly')?.paused,
    ).toBe(true);
  });

  test('the workers panel lists the in-process host and a remote worker with the task it holds; its id is shown as text', async () => {
    const { jobId } = await api<{ jobId: string }>('jobs/test.dashboard_remote', { method: 'POST', body: JSON.stringify({ tag: 'workers' }) });
    const workerId = 'gpu-<img src=x onerror="window.__pwnedWorker=1">';
    let claimed: Array<{ taskId: string; claimId: string }> = [];
    for (let i = 0; i < 200 && claimed.length === 0; i++) {
      const body = JSON.stringify({ workerId, taskTypes: ['test.dashboard.render'] });
      claimed = (await api<{ tasks: typeof claimed }>('workers/claim', { method: 'POST', body })).tasks;
      if (claimed.length === 0) await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(claimed).toHaveLength(1);

    await page.goto(`${server.url}/api/dashboard?code=${KEY}#/`);
    await page.getByRole('heading', { name: 'Workers' }).waitFor();
    const host = page.locator(`#worker-rows tr[data-kind="in-process"][data-worker="${runtime.machine.presence.workerId}"]`);
    await host.waitFor();
    expect(await host.textContent()).toContain('hello_world');
    expect(await host.textContent()).toContain('live');
    const remote = page.locator('#worker-rows tr[data-kind="remote"]');
    await remote.waitFor();
    expect(await remote.getAttribute('data-worker')).toBe(workerId);
    const cells = await remote.locator('td').allTextContents();
    expect(cells.slice(0, 4)).toEqual([workerId, 'remote', 'test.dashboard.render', '1']);
    expect(await page.locator('#worker-rows img').count()).toBe(0);
    expect(await page.evaluate<string>('typeof window.__pwnedWorker')).toBe('undefined');
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-workers.png'), fullPage: true });

    const [task] = claimed;
    await api(`workers/tasks/${task!.taskId}/complete`, { method: 'POST', body: JSON.stringify({ claimId: task!.claimId, result: { ok: true } }) });
    expect((await api<{ status: string }>(`jobs/${jobId}?waitSeconds=10`)).status).toBe('COMPLETED');
    await remote.locator('td.num', { hasText: /^0$/ }).waitFor();
  });

  test('a job waiting for approval shows "Waiting for approval" and a form: a bad payload is refused with its issues, a good one advances the job', async () => {
    await page.goto(`${server.url}/api/dashboard?code=${KEY}#/`);
    await submitFromPage('approved_publish', '{"title": "browser", "pages": 2}');
    await page.waitForURL(/#\/jobs\/[0-9a-f]{64}$/);
    const jobId = jobIdFromUrl();
    const panel = page.locator('#signal-panel');
    await panel.waitFor();
    expect(await page.locator('#signal-heading').textContent()).toBe('Waiting for approval');
    expect(await page.locator('#stages .stage[data-stage="2"]').textContent()).toContain('waiting for signal "approval"');
    // The form survives polling: what is typed stays while the page refreshes the job.
    await page.locator('#signal-payload').fill('{"approved": "yes"}');
    await page.waitForTimeout(1500);
    expect(await page.locator('#signal-payload').inputValue()).toBe('{"approved": "yes"}');
    await page.getByRole('button', { name: 'Send approval' }).click();
    await page.locator('#signal-out .error-box', { hasText: 'ValidationError' }).waitFor();
    expect(await page.locator('#signal-out pre').textContent()).toContain('approvedBy');
    expect((await api<{ status: string; stage: number }>(`jobs/${jobId}`)).stage).toBe(2);

    await page.locator('#signal-payload').fill('{"approvedBy": "browser-user", "approved": true}');
    await page.getByRole('button', { name: 'Send approval' }).click();
    await page.locator('#job-heading[data-status="COMPLETED"]').waitFor();
    expect(await panel.isHidden()).toBe(true);
    expect(await page.locator('#stages .stage[data-stage="2"]').textContent()).toContain('signal "approval" received');
    expect(await page.locator('#result').textContent()).toContain('"approvedBy": "browser-user"');
    await page.locator('#event-rows tr[data-entity="signal"]', { hasText: 'WAITING → RECEIVED' }).waitFor();
    expect(await page.locator('#event-rows tr[data-entity="signal"]').textContent()).toContain('approval');
  });

  test('the list shows names and labels and filters by label (typed, or a label clicked); the job page shows name, creator and labels', async () => {
    const submit = async (n: number, headers: Record<string, string>) => {
      const response = await fetch(`${server.url}/api/jobs/hello_world`, {
        method: 'POST',
        headers: { 'x-functions-key': KEY, 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ n }),
      });
      expect(response.status).toBe(202);
      return ((await response.json()) as { jobId: string }).jobId;
    };
    const red = await submit(101, {
      'CoreMachine-Job-Name': 'browser red',
      'CoreMachine-Created-By': 'tester',
      'CoreMachine-Labels': 'suite=browser,color=red',
    });
    const blue = await submit(102, { 'CoreMachine-Labels': 'suite=browser,color=blue' });
    await submit(103, { 'CoreMachine-Labels': 'suite=other' });
    await page.goto(`${server.url}/api/dashboard?code=${KEY}#/`);
    const rows = page.locator('#job-rows tr[data-job-id]');
    const rowsFor = async (selector: string, ids: string[]) => {
      await page.locator(`#job-rows${selector}`).waitFor({ state: 'attached' });
      expect(await Promise.all(Array.from({ length: await rows.count() }, (_, i) => rows.nth(i).getAttribute('data-job-id')))).toEqual(ids);
    };

    // Typed as the list shows labels (key=value); the API's form is key:value.
    await page.locator('#filter-label').fill('suite=browser');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.waitForURL(/#\/\?label=suite%3Abrowser$/);
    await rowsFor('[data-query="?label=suite%3Abrowser&limit=25"]', [blue, red]);
    const redRow = page.locator(`#job-rows tr[data-job-id="${red}"]`);
    expect(await redRow.textContent()).toContain('browser red');
    expect(await redRow.locator('button.chip').allTextContents()).toEqual(['color=red', 'suite=browser']);

    // A label in a row narrows the list to the jobs that carry it too.
    await redRow.getByRole('button', { name: 'color=red' }).click();
    await rowsFor('[data-query*="label=suite%3Abrowser&label=color%3Ared"]', [red]);
    expect(await page.locator('#active-labels button').allTextContents()).toEqual(['suite=browser ✕', 'color=red ✕']);
    // Removing a filter widens it again; Back restores the narrower list.
    await page.getByRole('button', { name: 'Remove label filter color=red' }).click();
    await rowsFor('[data-query="?label=suite%3Abrowser&limit=25"]', [blue, red]);
    await page.goBack();
    await rowsFor('[data-query*="label=color%3Ared"]', [red]);
    expect(await page.locator('#active-labels button').count()).toBe(2);

    await redRow.getByRole('link').click();
    await page.locator('#job-heading[data-status="COMPLETED"]').waitFor();
    expect(await page.locator('#job-name').textContent()).toBe('browser red');
    expect(await page.locator('#job-created-by').textContent()).toBe('tester');
    expect(await page.locator('.summary a.chip').allTextContents()).toEqual(['color=red', 'suite=browser']);
    // A label on the job page opens the list of the jobs that carry it.
    await page.locator('.summary a.chip', { hasText: 'suite=browser' }).click();
    await rowsFor('[data-query="?label=suite%3Abrowser&limit=25"]', [blue, red]);
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-labels.png') });
  });

  test('each list row shows its current stage as a bar, its name, labels, priority and fairness key, as text; a stage of no tasks draws empty', async () => {
    const submit = async (jobType: string, headers: Record<string, string>) => {
      const response = await fetch(`${server.url}/api/jobs/${jobType}`, {
        method: 'POST',
        headers: { 'x-functions-key': KEY, 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ tag: 'progress' }),
      });
      expect(response.status).toBe(202);
      return ((await response.json()) as { jobId: string }).jobId;
    };
    const name = '<img src=x onerror="window.__pwnedName=1"> nightly';
    const mixed = await submit('test.dashboard_mixed', { 'CoreMachine-Job-Name': name, 'CoreMachine-Labels': 'suite=progress,tier=<b>gold</b>' });
    const empty = await submit('test.dashboard_empty', { 'CoreMachine-Labels': 'suite=progress' });
    expect((await api<{ status: string }>(`jobs/${empty}?waitSeconds=10`)).status).toBe('COMPLETED');
    type Stages = { status: string; stages: Array<{ total: number; completed: number; failed: number }> };
    let job = await api<Stages>(`jobs/${mixed}`);
    for (let i = 0; i < 400 && !(job.stages[0]?.completed === 2 && job.stages[0]?.failed === 1); i++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      job = await api<Stages>(`jobs/${mixed}`);
    }
    expect(job).toMatchObject({ status: 'PROCESSING', stages: [{ total: 4, completed: 2, failed: 1 }, { total: 0 }] });
    // Set in SQL, not submitted: only the list's rendering of priority and key is under test (fair_rank 0 = high).
    await db.pool.query(`UPDATE coremachine.jobs SET fair_rank = 0, fair_key = 'tenant-<a>', fair_weight = 2 WHERE job_id = $1`, [mixed]);

    await page.goto(`${server.url}/api/dashboard?code=${KEY}#/?label=suite%3Aprogress`);
    await page.locator('#job-rows[data-query="?label=suite%3Aprogress&limit=25"]').waitFor({ state: 'attached' });
    const rows = page.locator('#job-rows tr[data-job-id]');
    expect(await Promise.all(Array.from({ length: await rows.count() }, (_, i) => rows.nth(i).getAttribute('data-job-id')))).toEqual([empty, mixed]);

    // The current stage's bar: 2 completed (50%) and 1 failed (25%) of 4; the words under it say where the job is.
    const mixedRow = page.locator(`#job-rows tr[data-job-id="${mixed}"]`);
    const bar = mixedRow.getByRole('progressbar');
    expect([await bar.getAttribute('aria-valuenow'), await bar.getAttribute('aria-valuemax')]).toEqual(['3', '4']);
    expect(await bar.locator('.done').getAttribute('style')).toBe('width: 50%;');
    expect(await bar.locator('.failed').getAttribute('style')).toBe('width: 25%;');
    expect(await mixedRow.locator('td.progress').textContent()).toBe('stage 1 of 2 · 2/4 completed · 1 failed');
    // Name, labels, priority and key arrive as text: the markup in them is shown, never run.
    expect(await mixedRow.locator('.job-name').textContent()).toBe(name);
    expect(await mixedRow.locator('button.chip').allTextContents()).toEqual(['suite=progress', 'tier=<b>gold</b>']);
    expect(await mixedRow.locator('.prio').textContent()).toBe('high');
    expect(await mixedRow.locator('.prio').getAttribute('data-priority')).toBe('high');
    expect(await mixedRow.locator('[data-fairness-key]').textContent()).toBe('tenant-<a>');
    expect(await page.locator('#job-rows img, #job-rows b, #job-rows a:not([href^="#/jobs/"])').count()).toBe(0);
    expect(await page.evaluate<string>('typeof window.__pwnedName')).toBe('undefined');

    // A stage of no tasks: an empty bar, no priority badge for a job without one.
    const emptyRow = page.locator(`#job-rows tr[data-job-id="${empty}"]`);
    const emptyBar = emptyRow.getByRole('progressbar');
    expect([await emptyBar.getAttribute('aria-valuenow'), await emptyBar.getAttribute('aria-valuemax')]).toEqual(['0', '1']);
    expect(await emptyBar.locator('.done').getAttribute('style')).toBe('width: 0%;');
    expect(await emptyBar.locator('.failed').getAttribute('style')).toBe('width: 0%;');
    expect(await emptyRow.locator('td.progress').textContent()).toBe('stage 1 of 1 · 0/0 completed · 0 failed');
    expect(await emptyRow.locator('.prio, [data-fairness-key]').count()).toBe(0);
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-list-progress.png'), fullPage: true });

    // On the job page, a PENDING stage of 0 tasks draws empty (it once drew half green, half red), as does a COMPLETED one of 0.
    await mixedRow.getByRole('link').click();
    const pending = page.locator('#stages .stage[data-stage="2"][data-status="PENDING"]');
    await pending.waitFor();
    expect(await pending.locator('.bar .done').getAttribute('style')).toBe('width: 0%;');
    expect(await pending.locator('.bar .failed').getAttribute('style')).toBe('width: 0%;');
    expect(await pending.getByRole('progressbar').getAttribute('aria-valuenow')).toBe('0');
    expect(await page.locator('#stages .stage[data-stage="1"] .bar .done').getAttribute('style')).toBe('width: 50%;');
    await page.goto(`${server.url}/api/dashboard?code=${KEY}#/jobs/${empty}`);
    const none = page.locator('#stages .stage[data-stage="1"][data-status="COMPLETED"]');
    await none.waitFor();
    expect(await none.locator('.bar .done').getAttribute('style')).toBe('width: 0%;');
    expect(await none.locator('.bar .failed').getAttribute('style')).toBe('width: 0%;');

    expect((await api<{ status: string }>(`jobs/${mixed}/cancel`, { method: 'POST' })).status).toBe('CANCELLED');
  });

  test("a task's log lines open under its row, as text; a task that did not log offers none", async () => {
    const { jobId } = await api<{ jobId: string }>('jobs/test.dashboard_logs', { method: 'POST', body: JSON.stringify({ tag: 'logs' }) });
    expect((await api<{ status: string }>(`jobs/${jobId}?waitSeconds=10`)).status).toBe('COMPLETED');
    await page.goto(`${server.url}/api/dashboard?code=${KEY}#/jobs/${jobId}`);
    await page.locator('#task-rows tr[data-task-status="COMPLETED"]').nth(1).waitFor();
    const button = page.locator(`#task-rows button[data-logs-for="${jobId}-s1-t0"]`);
    expect(await button.textContent()).toBe('2 line(s)');
    expect(await page.locator(`#task-rows button[data-logs-for="${jobId}-s1-t1"]`).count()).toBe(0);
    await button.click();
    const lines = page.locator(`#task-rows pre[data-task-logs="${jobId}-s1-t0"]`);
    await lines.filter({ hasText: 'second line' }).waitFor();
    const text = (await lines.textContent()) ?? '';
    expect(text).toContain('INFO   attempt 1  <img src=x onerror="window.__pwnedLog=1">  {"i":1}');
    expect(text).toContain('WARN   attempt 1  second line');
    expect(await page.locator('#task-rows img').count()).toBe(0);
    expect(await page.evaluate<string>('typeof window.__pwnedLog')).toBe('undefined');
    // Still open after the page refreshes the job; closed again by its button.
    await page.waitForTimeout(1500);
    expect(await lines.count()).toBe(1);
    expect(await button.getAttribute('aria-expanded')).toBe('true');
    await button.click();
    expect(await lines.count()).toBe(0);
  });
});
