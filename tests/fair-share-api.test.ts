import { startCli } from './support/cli-run';
import { useDevServer } from './support/dev-server';
import { rowCounts } from './support/http-invoke';
import { appRegistry } from './support/registry';

// Priority and fair share from outside: the CoreMachine-Priority and -Fairness-* headers, the
// submissions queue's fields, and the CLI's flags; bad values are a 400 naming the header.

const KEY = 'fair-share-api-key';
const dev = useDevServer(appRegistry(), { functionKey: KEY });

interface JobJson {
  jobId: string;
  status: string;
  priority: string | null;
  fairnessKey: string | null;
  fairnessWeight: number | null;
  error?: { type: string; issues?: Array<{ path: unknown[]; message: string }> };
}

async function post(n: number, headers: Record<string, string> = {}): Promise<{ status: number; body: JobJson }> {
  const response = await fetch(`${dev.server.url}/api/jobs/hello_world`, {
    method: 'POST',
    headers: { 'x-functions-key': KEY, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ n }),
  });
  return { status: response.status, body: (await response.json()) as JobJson };
}

const cli = (args: string[]) =>
  startCli(args, { isTTY: false, env: { COREMACHINE_URL: dev.server.url, COREMACHINE_FUNCTION_KEY: KEY }, pollIntervalMs: 30 }).done;

test('headers set priority, fairness key (percent-decoded) and weight; a job without them is outside the scheme', async () => {
  const keyed = await post(3, {
    'CoreMachine-Priority': 'high',
    'CoreMachine-Fairness-Key': encodeURIComponent('tenant Ä, 100%'),
    'CoreMachine-Fairness-Weight': '5',
  });
  expect(keyed.status).toBe(202);
  expect(keyed.body).toMatchObject({ priority: 'high', fairnessKey: 'tenant Ä, 100%', fairnessWeight: 5 });
  const onlyPriority = await post(4, { 'CoreMachine-Priority': 'low' });
  expect(onlyPriority.body).toMatchObject({ priority: 'low', fairnessKey: null, fairnessWeight: 1 });
  const plain = await post(5);
  expect(plain.body).toMatchObject({ priority: null, fairnessKey: null, fairnessWeight: null });
  for (const job of [keyed, onlyPriority, plain]) {
    const response = await fetch(`${dev.server.url}/api/jobs/${job.body.jobId}?waitSeconds=20`, { headers: { 'x-functions-key': KEY } });
    expect(((await response.json()) as JobJson).status).toBe('COMPLETED');
  }
  // Its tasks carry the job's class and key; the plain job's are outside the scheme.
  const tasks = await dev.db.pool.query<{ job_id: string; fair_rank: number | null; fair_key: string | null }>(
    'SELECT DISTINCT job_id, fair_rank, fair_key FROM coremachine.tasks WHERE job_id = ANY($1)',
    [[keyed.body.jobId, onlyPriority.body.jobId, plain.body.jobId]],
  );
  expect(new Map(tasks.rows.map((row) => [row.job_id, [row.fair_rank, row.fair_key]]))).toEqual(
    new Map([
      [keyed.body.jobId, [0, 'tenant Ä, 100%']],
      [onlyPriority.body.jobId, [2, '']],
      [plain.body.jobId, [null, null]],
    ]),
  );
});

test('bad priority and fairness headers are a 400 naming the header, and nothing is stored', async () => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ 'CoreMachine-Priority': 'urgent' }, /high.*normal.*low/],
    [{ 'CoreMachine-Priority': 'HIGH' }, /high.*normal.*low/],
    [{ 'CoreMachine-Fairness-Key': '%00' }, /NUL/],
    [{ 'CoreMachine-Fairness-Key': 'a%0Ab' }, /printable/],
    [{ 'CoreMachine-Fairness-Key': '50% off' }, /percent-encoded/],
    [{ 'CoreMachine-Fairness-Key': 'k'.repeat(201) }, /<=200 characters/],
    [{ 'CoreMachine-Fairness-Key': 'k', 'CoreMachine-Fairness-Weight': '0' }, /at least 1/],
    [{ 'CoreMachine-Fairness-Key': 'k', 'CoreMachine-Fairness-Weight': '101' }, /at most 100/],
    [{ 'CoreMachine-Fairness-Key': 'k', 'CoreMachine-Fairness-Weight': '1e2' }, /whole number/],
    [{ 'CoreMachine-Fairness-Key': 'k', 'CoreMachine-Fairness-Weight': '99999999999999999999' }, /whole number/],
    [{ 'CoreMachine-Fairness-Weight': '3' }, /needs a fairness key/],
  ];
  await dev.runtime.worker.drain();
  const before = await rowCounts(dev.db.pool);
  for (const [headers, message] of cases) {
    const reply = await post(9, headers);
    expect({ headers, status: reply.status, type: reply.body.error?.type }).toEqual({ headers, status: 400, type: 'ValidationError' });
    const issues = reply.body.error?.issues?.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ');
    expect(`${JSON.stringify(headers)} → ${issues}`).toMatch(message);
  }
  expect(await rowCounts(dev.db.pool)).toEqual(before);
});

test('a submission message carries priority and fairness fields; unknown values are refused with the issues', async () => {
  const machine = dev.runtime.machine;
  const { job } = await machine.submitFromMessage({
    jobType: 'hello_world',
    parameters: { n: 6 },
    priority: 'normal',
    fairnessKey: 'queue-tenant',
    fairnessWeight: 2,
  });
  expect(job).toMatchObject({ priority: 'normal', fairnessKey: 'queue-tenant', fairnessWeight: 2 });
  await expect(machine.submitFromMessage({ jobType: 'hello_world', parameters: { n: 7 }, priority: 'asap' })).rejects.toMatchObject({
    type: 'ValidationError',
    issues: [expect.objectContaining({ path: ['priority'] })],
  });
  await dev.runtime.worker.drain();
});

test('the CLI sends --priority, --fairness-key and --fairness-weight, prints them in status, and exits 1 on a bad value', async () => {
  const run = await cli([
    'submit',
    'hello_world',
    '--params',
    '{"n": 8}',
    '--priority',
    'high',
    '--fairness-key',
    'cli tenant',
    '--fairness-weight',
    '2',
    '--wait',
  ]);
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
  const jobId = /job ([0-9a-f]{64})/.exec(run.stdout)?.[1] ?? '';
  const status = await cli(['status', jobId]);
  expect(status.stdout).toContain('priority  high key cli tenant weight 2\n');
  const bad = await cli(['submit', 'hello_world', '--params', '{"n": 9}', '--priority', 'soon']);
  expect(bad.code).toBe(1);
  expect(bad.stderr).toMatch(/CoreMachine-Priority/);
  expect(bad.stderr).toMatch(/high/);
});
