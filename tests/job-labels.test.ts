import { z } from 'zod';
import { listJobs } from '../core/state/jobs-store';
import { shiftJobClocks } from '../core/state/clock-store';
import type { Queryable } from '../core/db/pool';
import { defineJob, defineTask, ListJobsQuery, type JobEvent } from '../models';
import { defineRegistration } from 'coremachine';
import { createTestKit } from 'coremachine/testing';
import { rowCounts } from './support/http-invoke';
import { useDevServer } from './support/dev-server';
import { appRegistry } from './support/registry';
import { createTestDatabase } from './support/test-database';

// Who and what (issue 26 item 2): a job's name, createdBy and labels, over HTTP headers, code and
// the submissions queue; the list filters by them (with indexes); job events carry them.

const KEY = 'labels-test-key';
const step = defineTask({ type: 'test.labels.step', parameters: z.object({ tag: z.string() }), handler: ({ tag }) => ({ tag }) });
const labelled = defineJob({ type: 'test.labels', parameters: z.object({ tag: z.string().min(1) }) })
  .stage({ name: 'only', task: step, fanOut: ({ parameters }) => [{ tag: parameters.tag }] })
  .finalize(({ parameters }) => ({ tag: parameters.tag }));

const dev = useDevServer(appRegistry(labelled), { functionKey: KEY });

interface JobJson {
  jobId: string;
  status: string;
  name: string | null;
  createdBy: string | null;
  labels: Record<string, string>;
}
interface Refusal {
  error: { type: string; message: string; issues?: Array<{ path: unknown[]; message: string }> };
}

async function post(tag: string, headers: Record<string, string> = {}): Promise<{ status: number; body: JobJson & Refusal }> {
  const response = await fetch(`${dev.server.url}/api/jobs/test.labels`, {
    method: 'POST',
    headers: { 'x-functions-key': KEY, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ tag }),
  });
  return { status: response.status, body: (await response.json()) as JobJson & Refusal };
}

async function get<T>(path: string): Promise<{ status: number; body: T }> {
  const response = await fetch(`${dev.server.url}/api/${path}`, { headers: { 'x-functions-key': KEY } });
  return { status: response.status, body: (await response.json()) as T };
}

/** The ids GET jobs lists for a query string (one page of up to 500), newest first. */
async function listed(search: string): Promise<string[]> {
  const { status, body } = await get<{ jobs: JobJson[] } & Refusal>(`jobs?limit=500&${search}`);
  expect({ status, error: body.error }).toEqual({ status: 200, error: undefined });
  return body.jobs.map((job) => job.jobId);
}

const until = async (jobId: string) => (await get<JobJson>(`jobs/${jobId}?waitSeconds=20`)).body;

test('headers name the job, say who created it and label it; percent-encoded text arrives decoded; a resubmission changes none of it', async () => {
  const first = await post('who-and-what', {
    'CoreMachine-Job-Name': encodeURIComponent('Café import, run 1'),
    'CoreMachine-Created-By': 'ops%40example.com',
    'CoreMachine-Labels': `team=data, env=prod,note=${encodeURIComponent('a,b=c 100%')}`,
  });
  expect(first.status).toBe(202);
  expect(first.body).toMatchObject({ name: 'Café import, run 1', createdBy: 'ops@example.com', labels: { team: 'data', env: 'prod', note: 'a,b=c 100%' } });
  expect(await until(first.body.jobId)).toMatchObject({ status: 'COMPLETED', name: 'Café import, run 1', labels: { team: 'data' } });

  // Same type and parameters: the existing job, with the name and labels it was first given.
  const again = await post('who-and-what', { 'CoreMachine-Job-Name': 'renamed', 'CoreMachine-Created-By': 'mallory', 'CoreMachine-Labels': 'team=other' });
  expect(again.status).toBe(200);
  expect(again.body).toMatchObject({ jobId: first.body.jobId, name: 'Café import, run 1', createdBy: 'ops@example.com' });
  expect(again.body.labels).toEqual({ team: 'data', env: 'prod', note: 'a,b=c 100%' });

  // Without the headers: no name, no creator, no labels.
  const plain = await post('plain');
  expect(plain.body).toMatchObject({ name: null, createdBy: null, labels: {} });
  await until(plain.body.jobId);
});

test('bad names, creators and labels are a 400 ValidationError naming what is wrong, and nothing is stored', async () => {
  const many = Array.from({ length: 21 }, (_, i) => `k${i}=v`).join(',');
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ 'CoreMachine-Job-Name': 'a%00b' }, /NUL/],
    [{ 'CoreMachine-Created-By': 'eve%1B%5B2J' }, /printable/],
    [{ 'CoreMachine-Job-Name': 'line%0Abreak' }, /printable/],
    [{ 'CoreMachine-Job-Name': encodeURIComponent('evil\u202etxt.exe') }, /bidirectional/],
    [{ 'CoreMachine-Job-Name': 'x'.repeat(201) }, /<=200 characters/],
    [{ 'CoreMachine-Created-By': '%20%20' }, /blank/],
    [{ 'CoreMachine-Job-Name': '50% off' }, /percent-encoded/],
    [{ 'CoreMachine-Labels': many }, /at most 20 labels, not 21/],
    [{ 'CoreMachine-Labels': `k=${'v'.repeat(201)}` }, /<=200 characters/],
    [{ 'CoreMachine-Labels': `${'k'.repeat(64)}=v` }, /at most 63 characters/],
    [{ 'CoreMachine-Labels': 'Team=data' }, /label key "Team"/],
    [{ 'CoreMachine-Labels': 'a%20b=1' }, /label key "a b"/],
    [{ 'CoreMachine-Labels': '-x=1' }, /label key "-x"/],
    [{ 'CoreMachine-Labels': 'team=a,team=b' }, /"team" is given twice/],
    [{ 'CoreMachine-Labels': 'team' }, /is not key=value/],
    [{ 'CoreMachine-Labels': 'k=%00' }, /NUL/],
    [{ 'CoreMachine-Labels': 'k=tab%09here' }, /printable/],
  ];
  await dev.runtime.worker.drain();
  const before = await rowCounts(dev.db.pool);
  for (const [headers, message] of cases) {
    const reply = await post('refused', headers);
    expect({ headers, status: reply.status, type: reply.body.error?.type }).toEqual({ headers, status: 400, type: 'ValidationError' });
    const issues = reply.body.error.issues?.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ');
    expect(`${JSON.stringify(headers)} → ${issues}`).toMatch(message);
    // The issue names the header it came from.
    expect(reply.body.error.issues?.[0]?.path[0]).toBe(Object.keys(headers)[0]);
  }
  expect(await rowCounts(dev.db.pool)).toEqual(before);

  // From code, values that are not strings or keys zod's record would take are refused the same way.
  const machine = dev.runtime.machine;
  await expect(machine.submitJob('test.labels', { tag: 'code' }, { labels: { team: 7 } as unknown as Record<string, string> })).rejects.toMatchObject({
    type: 'ValidationError',
    issues: [expect.objectContaining({ path: ['labels', 'team'] })],
  });
  await expect(machine.submitJob('test.labels', { tag: 'code' }, { labels: { constructor: 'x', 'a\u0000': 'y' } })).rejects.toMatchObject({
    type: 'ValidationError',
  });
  await expect(machine.submitJob('test.labels', { tag: 'code' }, { name: '' })).rejects.toMatchObject({ type: 'ValidationError' });
  expect(await rowCounts(dev.db.pool)).toEqual(before);

  // At the bounds: 20 labels, a 63-character key, a 200-character value and name, an empty value.
  const edge = await post('edges', {
    'CoreMachine-Labels': [`${'k'.repeat(63)}=${'v'.repeat(200)}`, ...Array.from({ length: 19 }, (_, i) => `a.b/c-${i}_x=`)].join(','),
    'CoreMachine-Job-Name': 'n'.repeat(200),
  });
  expect(edge.status).toBe(202);
  expect(Object.keys(edge.body.labels)).toHaveLength(20);
  expect(edge.body.labels['a.b/c-0_x']).toBe('');
  await until(edge.body.jobId);
});

test('the list filters by one label, by two, by createdBy and by a name prefix, combined with status and type', async () => {
  const submit = async (tag: string, headers: Record<string, string>) => {
    const { status, body } = await post(tag, headers);
    expect(status).toBe(202);
    return body.jobId;
  };
  const a = await submit('f-a', {
    'CoreMachine-Labels': 'squad=data,tier=prod',
    'CoreMachine-Created-By': 'alice',
    'CoreMachine-Job-Name': 'nightly import 1',
  });
  const b = await submit('f-b', { 'CoreMachine-Labels': 'squad=data,tier=dev', 'CoreMachine-Created-By': 'bob', 'CoreMachine-Job-Name': 'nightly import 2' });
  const c = await submit('f-c', { 'CoreMachine-Labels': 'squad=web,tier=prod', 'CoreMachine-Created-By': 'alice', 'CoreMachine-Job-Name': 'adhoc' });
  // LIKE's wildcards in a name prefix are plain characters.
  const d = await submit('f-d', { 'CoreMachine-Job-Name': encodeURIComponent('a_b%c'), 'CoreMachine-Labels': 'url=http://x:8080/a' });
  const e = await submit('f-e', { 'CoreMachine-Job-Name': 'axbyc' });
  for (const id of [a, b, c, d, e]) await until(id);

  expect(await listed('label=squad:data')).toEqual([b, a]);
  expect(await listed('label=squad:data&label=tier:prod')).toEqual([a]);
  expect(await listed('label=tier:prod')).toEqual([c, a]);
  expect(await listed('label=squad:nobody')).toEqual([]);
  // The value may hold ':' (only the first one splits).
  expect(await listed(`label=${encodeURIComponent('url:http://x:8080/a')}`)).toEqual([d]);
  expect(await listed('createdBy=alice')).toEqual([c, a]);
  expect(await listed('createdBy=alice&label=squad:data')).toEqual([a]);
  expect(await listed('name=nightly')).toEqual([b, a]);
  expect(await listed(`name=${encodeURIComponent('nightly import 1')}`)).toEqual([a]);
  expect(await listed('name=Nightly')).toEqual([]);
  expect(await listed(`name=${encodeURIComponent('a_')}`)).toEqual([d]);
  expect(await listed(`name=${encodeURIComponent('a_b%')}`)).toEqual([d]);
  expect(await listed('label=squad:data&status=COMPLETED&jobType=test.labels')).toEqual([b, a]);
  expect(await listed('label=squad:data&status=FAILED')).toEqual([]);
  expect(await listed('label=squad:data&jobType=hello_world')).toEqual([]);
  // The engine's own listJobs (what the package's host exposes) takes the same query.
  expect((await dev.runtime.machine.listJobs({ label: ['squad:data', 'tier:dev'] })).jobs.map((job) => job.jobId)).toEqual([b]);
  expect((await dev.runtime.machine.listJobs({ label: 'squad:web' })).jobs.map((job) => job.jobId)).toEqual([c]);

  const bad: Array<[string, RegExp]> = [
    ['label=squad', /key:value/],
    ['label=Squad:data', /label key "Squad"/],
    ['label=squad:a&label=squad:b', /two different values/],
    [Array.from({ length: 21 }, (_, i) => `label=k${i}:v`).join('&'), /at most 20 label filters/],
    [`createdBy=${'x'.repeat(201)}`, /<=200 characters/],
    ['name=%1B%5B2J', /printable/],
  ];
  for (const [search, message] of bad) {
    const { status, body } = await get<Refusal>(`jobs?${search}`);
    expect({ search, status, type: body.error.type }).toEqual({ search, status: 400, type: 'ValidationError' });
    expect(`${search} → ${body.error.message}`).toMatch(message);
  }
});

test('paging with filters: every page holds only matching jobs, none twice, none skipped', async () => {
  const matching: string[] = [];
  for (let i = 0; i < 7; i++) {
    matching.unshift((await post(`page-${i}`, { 'CoreMachine-Labels': 'batch=paged', 'CoreMachine-Created-By': 'pager' })).body.jobId);
    // Jobs between them that a filter must skip.
    await post(`page-other-${i}`, { 'CoreMachine-Labels': 'batch=other', 'CoreMachine-Created-By': 'pager' });
  }
  for (const search of ['label=batch:paged', 'label=batch:paged&createdBy=pager']) {
    const seen: string[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    do {
      const page: { body: { jobs: JobJson[]; nextCursor: string | null } } = await get(`jobs?limit=3&${search}${cursor ? `&cursor=${cursor}` : ''}`);
      sizes.push(page.body.jobs.length);
      seen.push(...page.body.jobs.map((job) => job.jobId));
      expect(page.body.jobs.every((job) => job.labels.batch === 'paged')).toBe(true);
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(sizes).toEqual([3, 3, 1]);
    expect(seen).toEqual(matching);
  }
  await dev.runtime.worker.drain();
});

test('job events carry the name, createdBy and labels; a job without them publishes events without the keys', async () => {
  const seen: JobEvent[] = [];
  const unsubscribe = dev.runtime.machine.events.subscribe((event) => void seen.push(event));
  try {
    const { body } = await post('events', { 'CoreMachine-Job-Name': 'evented', 'CoreMachine-Created-By': 'carol', 'CoreMachine-Labels': 'team=data' });
    const { body: plain } = await post('events-plain');
    expect((await until(body.jobId)).status).toBe('COMPLETED');
    await until(plain.jobId);
    await dev.runtime.worker.drain();
    const mine = seen.filter((event) => event.jobId === body.jobId);
    expect(mine.map((event) => event.type)).toEqual(['StageCompleted', 'JobCompleted']);
    for (const event of mine) expect(event).toMatchObject({ name: 'evented', createdBy: 'carol', labels: { team: 'data' } });
    const bare = seen.filter((event) => event.jobId === plain.jobId);
    expect(bare.map((event) => event.type)).toEqual(['StageCompleted', 'JobCompleted']);
    for (const event of bare) expect(Object.keys(event).filter((key) => ['name', 'createdBy', 'labels'].includes(key))).toEqual([]);
  } finally {
    unsubscribe();
  }
});

test('a submission message carries name, createdBy and labels; a bad label dead-letters it with nothing stored', async () => {
  const { transport, worker, machine } = dev.runtime;
  await worker.drain();
  const before = await rowCounts(dev.db.pool);
  transport.submissions.send([
    { messageId: 'labels-bad', body: { jobType: 'test.labels', parameters: { tag: 'by-message-bad' }, labels: { 'Bad Key': 'x' } } },
    { messageId: 'labels-nul', body: { jobType: 'test.labels', parameters: { tag: 'by-message-nul' }, name: 'a\u0000b' } },
  ]);
  await worker.drain();
  expect(await rowCounts(dev.db.pool)).toMatchObject({ jobs: before.jobs, stages: before.stages, tasks: before.tasks });
  const dead = transport.submissions.deadLetters.filter((letter) => letter.messageId.startsWith('labels-'));
  expect(dead.map((letter) => [letter.messageId, letter.deadLetterReason])).toEqual([
    ['labels-bad', 'ValidationError'],
    ['labels-nul', 'ValidationError'],
  ]);
  expect(dead[0]?.deadLetterErrorDescription).toContain('label key "Bad Key"');

  transport.submissions.send([
    {
      messageId: 'labels-good',
      body: { jobType: 'test.labels', parameters: { tag: 'by-message' }, name: 'from the queue', createdBy: 'system:billing', labels: { source: 'queue' } },
    },
  ]);
  await worker.drain();
  const [job] = (await machine.listJobs({ label: 'source:queue' })).jobs;
  expect(job).toMatchObject({ name: 'from the queue', createdBy: 'system:billing', labels: { source: 'queue' } });
  await until(job?.jobId ?? '');
});

test("a job's labels go with it when it is deleted, and move with it when the test kit's clock moves jobs back", async () => {
  const { body } = await post('short-lived', { 'CoreMachine-Labels': 'lifetime=short,second=label' });
  await until(body.jobId);
  await dev.runtime.worker.drain();
  const labelRows = async () =>
    (await dev.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM coremachine.job_labels WHERE job_id = $1', [body.jobId])).rows[0]?.n;
  expect(await labelRows()).toBe(2);

  await shiftJobClocks(dev.db.pool, 3_600_000);
  const drift = await dev.db.pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM coremachine.job_labels l JOIN coremachine.jobs j ON j.job_id = l.job_id WHERE l.created_at <> j.created_at',
  );
  expect(drift.rows[0]?.n).toBe(0);
  expect(await listed('label=lifetime:short')).toEqual([body.jobId]);

  const deleted = await fetch(`${dev.server.url}/api/jobs/${body.jobId}`, { method: 'DELETE', headers: { 'x-functions-key': KEY } });
  expect(deleted.status).toBe(200);
  expect(await labelRows()).toBe(0);
  expect(await listed('label=lifetime:short')).toEqual([]);
});

test("the package's test kit passes name, createdBy and labels through run() and submitJob(), and filters by them", async () => {
  const admin = process.env.COREMACHINE_TEST_ADMIN_URL;
  if (!admin) throw new Error('jest globalSetup did not pick a server');
  const kit = await createTestKit({ registration: defineRegistration({ jobs: [labelled] }), databaseUrl: admin });
  try {
    const ran = await kit.run('test.labels', { tag: 'kit' }, { name: 'from the kit', createdBy: 'kit-user', labels: { via: 'kit' } });
    expect(ran).toMatchObject({ status: 'COMPLETED', name: 'from the kit', createdBy: 'kit-user', labels: { via: 'kit' } });
    const { job } = await kit.submitJob('test.labels', { tag: 'kit-2' }, { labels: { via: 'submit' } });
    await kit.waitForJob(job.jobId);
    expect((await kit.listJobs({ label: 'via:kit' })).jobs.map((listed) => listed.jobId)).toEqual([ran.jobId]);
    expect((await kit.listJobs({ createdBy: 'kit-user' })).jobs.map((listed) => listed.jobId)).toEqual([ran.jobId]);
    await expect(kit.submitJob('test.labels', { tag: 'kit-3' }, { labels: { 'Not OK': 'x' } })).rejects.toMatchObject({ type: 'ValidationError' });
  } finally {
    await kit.close();
  }
});

test('each filter is answered from an index that yields its jobs newest first (020_job_labels.sql), never by reading the table', async () => {
  // A database of its own with enough jobs that the planner has a choice to make.
  const db = await createTestDatabase();
  try {
    await db.pool.query(
      `INSERT INTO coremachine.jobs (job_id, job_type, status, stage, total_stages, parameters, created_at, finished_at, name, created_by, labels)
       SELECT encode(sha256(g::text::bytea), 'hex'), 'test.labels', 'COMPLETED', 1, 1, '{}', now() - g * interval '1 second', now(),
              'job ' || g, 'user' || (g % 50), jsonb_build_object('shard', (g % 1000)::text, 'env', CASE WHEN g % 2 = 0 THEN 'prod' ELSE 'dev' END)
         FROM generate_series(1, 20000) g`,
    );
    // As insertJob indexes a new job's labels.
    await db.pool.query(
      'INSERT INTO coremachine.job_labels (job_id, created_at, key, value) SELECT j.job_id, j.created_at, l.key, l.value FROM coremachine.jobs j, jsonb_each_text(j.labels) l',
    );
    await db.pool.query('ANALYZE coremachine.jobs, coremachine.job_labels');
    const plans: Record<string, string> = {};
    for (const [what, query] of [
      ['rare label', { label: ['shard:7', 'env:dev'] }],
      ['common label', { label: 'env:prod', status: 'COMPLETED' }],
      ['createdBy', { createdBy: 'user2' }],
      ['name', { name: 'job 1234' }],
    ] as const) {
      // The store's own statement and values, explained as they would run.
      let captured: { text: string; values: unknown[] } | undefined;
      const spy: Queryable = {
        query: ((text: string, values: unknown[]) => {
          captured = { text, values };
          return db.pool.query(text, values);
        }) as Queryable['query'],
      };
      const { rows } = await listJobs(spy, ListJobsQuery.parse(query));
      expect(rows.length).toBeGreaterThan(0);
      if (!captured) throw new Error('listJobs ran no query');
      const explained = await db.pool.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${captured.text}`, captured.values);
      plans[what] = explained.rows.map((row) => row['QUERY PLAN']).join('\n');
    }
    expect(plans['rare label']).toContain('job_labels_filter_idx');
    expect(plans['common label']).toContain('job_labels_filter_idx');
    expect(plans.createdBy).toContain('jobs_created_by_idx');
    expect(plans.name).toContain('jobs_name_idx');
    for (const plan of Object.values(plans)) expect(plan).not.toMatch(/Seq Scan/);
    // A label's or a creator's jobs come out of the index newest first: a page is read, not sorted.
    for (const what of ['rare label', 'common label', 'createdBy']) expect(`${what}: ${plans[what]}`).not.toMatch(/Sort/);
  } finally {
    await db.drop();
  }
});
