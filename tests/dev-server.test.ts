import { useDevServer } from './support/dev-server';
import { appRegistry } from './support/registry';
import { matchRoute } from '../bin/cli/route-match';

const dev = useDevServer(appRegistry(), { functionKey: 'dev-key' });

const api = (path: string, init: RequestInit = {}) =>
  fetch(`${dev.server.url}/api/${path}`, { ...init, headers: { 'x-functions-key': 'dev-key', 'content-type': 'application/json', ...init.headers } });

test('the dev server answers the same routes as the Functions app and runs jobs to completion', async () => {
  const submitted = await api('jobs/hello_world', { method: 'POST', body: JSON.stringify({ n: 7 }) });
  expect(submitted.status).toBe(202);
  const { jobId } = (await submitted.json()) as { jobId: string };
  let job: { status: string; result: unknown } = { status: 'QUEUED', result: null };
  for (let i = 0; i < 200 && ['QUEUED', 'PROCESSING'].includes(job.status); i++) {
    job = (await (await api(`jobs/${jobId}`)).json()) as typeof job;
    await new Promise((r) => setTimeout(r, 20));
  }
  expect(job).toMatchObject({ status: 'COMPLETED', result: { replies: 7 } });
  expect((await api('jobs/hello_world', { method: 'POST', body: JSON.stringify({ n: 7 }) })).status).toBe(200);
  const tasks = (await (await api(`jobs/${jobId}/tasks?stage=2`)).json()) as { tasks: unknown[] };
  expect(tasks.tasks).toHaveLength(7);
  const events = (await (await api(`jobs/${jobId}/events`)).json()) as { events: unknown[] };
  // job ∅→QUEUED→PROCESSING, stage 1 started and completed, job →QUEUED→PROCESSING, stage 2
  // started and completed, job →COMPLETED; first-attempt task successes write no events.
  expect(events.events).toHaveLength(9);
  const list = (await (await api('jobs?status=COMPLETED')).json()) as { jobs: Array<{ jobId: string }> };
  expect(list.jobs.map((j) => j.jobId)).toContain(jobId);
  expect((await api(`jobs/${jobId}/cancel`, { method: 'POST' })).status).toBe(409);
});

test('errors are JSON: 400 with zod issues, 404 unknown type and route, 405 wrong method, 401 without the key', async () => {
  const bad = await api('jobs/hello_world', { method: 'POST', body: '{}' });
  expect(bad.status).toBe(400);
  expect(await bad.json()).toMatchObject({ error: { type: 'ValidationError', issues: [{ path: ['n'] }] } });
  expect((await api('jobs/nope', { method: 'POST', body: '{}' })).status).toBe(404);
  expect((await api('nothing/here')).status).toBe(404);
  expect((await api('jobs', { method: 'DELETE' })).status).toBe(405);
  const anonymous = await fetch(`${dev.server.url}/api/jobs`);
  expect(anonymous.status).toBe(401);
  expect(await anonymous.json()).toMatchObject({ error: { type: 'UnauthorizedError' } });
  expect((await fetch(`${dev.server.url}/api/health`)).status).toBe(200);
});

test('route templates match like the host: parameters, regex constraints, literal segments', () => {
  expect(matchRoute('jobs/{jobId}/events', 'jobs/abc/events')).toEqual({ jobId: 'abc' });
  expect(matchRoute('jobs/{jobId}/{action:regex(^(cancel|pause|resume|retry)$)}', 'jobs/abc/pause')).toEqual({ jobId: 'abc', action: 'pause' });
  expect(matchRoute('jobs/{jobId}/{action:regex(^(cancel|pause|resume|retry)$)}', 'jobs/abc/explode')).toBeUndefined();
  expect(matchRoute('jobs/{jobType}', 'jobs')).toBeUndefined();
});

test('a long-poll whose client has gone stops polling the database', async () => {
  const submitted = await api('jobs/approved_publish', { method: 'POST', body: JSON.stringify({ title: 'long-poll', pages: 1 }) });
  const { jobId } = (await submitted.json()) as { jobId: string };
  const pool = dev.runtime.database.pool;
  const query = jest.spyOn(pool, 'query');
  const statusPolls = () => query.mock.calls.filter(([config]) => (config as { name?: string } | undefined)?.name === 'cm_find_job_status').length;
  try {
    const clients = Array.from({ length: 30 }, () => new AbortController());
    const waits = clients.map((client) => api(`jobs/${jobId}?waitSeconds=60`, { signal: client.signal }).catch((error: unknown) => error));
    // Every wait has polled at least once (on a loaded machine the 30 requests take a while to arrive).
    for (let waited = 0; waited < 10_000 && statusPolls() < 30; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(statusPolls()).toBeGreaterThanOrEqual(30);
    for (const client of clients) client.abort();
    await Promise.all(waits);
    // The server learns of each closed socket a little later, and a wait polls once more as it
    // stops: the baseline is taken once the polls have been quiet for half a second.
    let afterHangUp = statusPolls();
    for (let quiet = 0, waited = 0; quiet < 500 && waited < 10_000; waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const polls = statusPolls();
      quiet = polls === afterHangUp ? quiet + 50 : 0;
      afterHangUp = polls;
    }
    // Unaborted, each wait would poll about once a second for a minute: 30 × ~3 in this window.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect(statusPolls() - afterHangUp).toBe(0);
  } finally {
    query.mockRestore();
    await api(`jobs/${jobId}/cancel`, { method: 'POST' });
  }
});
