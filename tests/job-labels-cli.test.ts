import { startCli } from './support/cli-run';
import { useDevServer } from './support/dev-server';
import { appRegistry } from './support/registry';

// The CLI's side of who and what: submit --name/--created-by/--label, jobs filtered by them,
// status printing them, and what came from outside printed as one visible line.

const KEY = 'labels-cli-key';
const dev = useDevServer(appRegistry(), { functionKey: KEY });

const cli = (args: string[]) =>
  startCli(args, { isTTY: false, env: { COREMACHINE_URL: dev.server.url, COREMACHINE_FUNCTION_KEY: KEY }, pollIntervalMs: 30 }).done;
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;
const submittedId = (stdout: string) => /job ([0-9a-f]{64})/.exec(stdout)?.[1] ?? '';

let labelledId = '';
let otherId = '';

test('submit --name --created-by --label (repeated) stores them, text a header cannot carry included; status prints them', async () => {
  const run = await cli([
    'submit',
    'hello_world',
    '--params',
    '{"n": 2}',
    '--name',
    'Nightly import: café, 100%',
    '--created-by',
    'ana@example.com',
    '--label',
    'team=data',
    '--label',
    'note=a,b=c',
    '--wait',
  ]);
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
  labelledId = submittedId(run.stdout);
  const other = await cli(['submit', 'hello_world', '--params', '{"n": 3}', '--label', 'team=web', '--created-by', 'bo', '--wait']);
  expect(other.code).toBe(0);
  otherId = submittedId(other.stdout);

  const status = await cli(['status', labelledId]);
  expect(status.code).toBe(0);
  expect(status.stdout).toContain('name      Nightly import: café, 100%\n');
  expect(status.stdout).toContain('createdBy ana@example.com\n');
  expect(status.stdout).toContain('labels    note=a,b=c, team=data\n');
  const json = JSON.parse((await cli(['status', labelledId, '--json'])).stdout) as { name: string; createdBy: string; labels: Record<string, string> };
  expect(json).toMatchObject({ name: 'Nightly import: café, 100%', createdBy: 'ana@example.com', labels: { team: 'data', note: 'a,b=c' } });
  // A job without them prints no such lines.
  const plain = await cli(['status', otherId]);
  expect(plain.stdout).not.toMatch(/^name /m);
  expect(plain.stdout).toContain('labels    team=web\n');
});

test('jobs --label (one or two), --created-by and --name filter the list; NAME and LABELS columns appear when a job has them', async () => {
  const byLabel = await cli(['jobs', '--label', 'team=data']);
  expect(byLabel.code).toBe(0);
  const lines = byLabel.stdout.trimEnd().split('\n');
  expect(lines[0]).toMatch(/^JOB ID\s+NAME\s+TYPE\s+STATUS\s+STAGE\s+CREATED\s+DURATION\s+LABELS$/);
  expect(lines.slice(1)).toHaveLength(1);
  expect(lines[1]).toMatch(new RegExp(`^${labelledId}\\s+Nightly import: café, 100%\\s+hello_world\\s+COMPLETED\\s+.*note=a,b=c, team=data$`));

  const ids = async (args: string[]) =>
    (await cli(['jobs', ...args])).stdout
      .split('\n')
      .slice(1)
      .map((line) => line.split(/\s+/)[0])
      .filter(Boolean);
  expect(await ids(['--label', 'team=data', '--label', 'note=a,b=c'])).toEqual([labelledId]);
  expect(await ids(['--label', 'team=data', '--label', 'note=other'])).toEqual([]);
  expect(await ids(['--created-by', 'bo'])).toEqual([otherId]);
  expect(await ids(['--name', 'Nightly'])).toEqual([labelledId]);
  expect(await ids(['--label', 'team=web', '--created-by', 'bo', '--status', 'COMPLETED'])).toEqual([otherId]);
  // Only jobs without names or labels on the page: the table keeps its old columns.
  const unlabelled = await cli(['submit', 'hello_world', '--params', '{"n": 4}', '--wait']);
  const plain = await cli(['jobs', '--type', 'hello_world', '--limit', '1']);
  expect(plain.stdout.split('\n')[0]).toMatch(/^JOB ID\s+TYPE\s+STATUS\s+STAGE\s+CREATED\s+DURATION$/);
  expect(plain.stdout).toContain(submittedId(unlabelled.stdout));
});

test('a --label without = is a usage error (exit 2, nothing sent); labels the server refuses exit 1 with its ValidationError', async () => {
  const before = (await dev.runtime.machine.listJobs({ limit: 500 })).jobs.length;
  const usage = await cli(['submit', 'hello_world', '--params', '{"n": 5}', '--label', 'team']);
  expect(usage.code).toBe(2);
  expect(usage.stderr).toContain('--label takes key=value, not "team"');
  expect((await cli(['jobs', '--label', 'team'])).code).toBe(2);

  const refused = await cli(['submit', 'hello_world', '--params', '{"n": 5}', '--label', 'Team=data']);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/^error: ValidationError \(HTTP 400\)/);
  expect(refused.stderr).toContain('label key "Team"');
  const tooLong = await cli(['submit', 'hello_world', '--params', '{"n": 5}', '--name', 'x'.repeat(201)]);
  expect(tooLong.code).toBe(1);
  const badFilter = await cli(['jobs', '--label', 'Team=data']);
  expect(badFilter.code).toBe(1);
  expect(badFilter.stderr).toContain('ValidationError');
  expect((await dev.runtime.machine.listJobs({ limit: 500 })).jobs.length).toBe(before);
});

test('a name or label that holds control characters (written around the API) prints as visible escapes, on one line', async () => {
  // The API refuses them; a row written by another writer (or an older version) may still hold them.
  await dev.db.pool.query(`UPDATE coremachine.jobs SET name = $2, created_by = $3, labels = $4 WHERE job_id = $1`, [
    otherId,
    'evil\u001b]0;owned\u0007\nstatus    COMPLETED',
    'x\r\u009b2J',
    JSON.stringify({ team: 'web\u001b[2J' }),
  ]);
  const status = await cli(['status', otherId]);
  expect(status.stdout).not.toMatch(CONTROL);
  expect(status.stdout).toContain('name      evil\\u001b]0;owned\\u0007 status    COMPLETED\n');
  expect(status.stdout).toContain('createdBy x\\u000d\\u009b2J\n');
  expect(status.stdout).toContain('labels    team=web\\u001b[2J\n');
  const list = await cli(['jobs', '--created-by', 'x\r\u009b2J']);
  expect(list.code).toBe(1);
  const listed = await cli(['jobs', '--name', 'evil']);
  expect(listed.stdout).not.toMatch(CONTROL);
  expect(listed.stdout).toContain('evil\\u001b]0;owned\\u0007 status    COMPLETED');
});
