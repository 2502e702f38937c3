/**
 * `coremachine delete` when the payload store refused to delete the job's blobs after its rows were
 * gone: the job is deleted (exit 0), and the operator is told how many blobs were left and why. The
 * server's side (DELETE answering blobsLeft and blobError) runs for real in payloads.test.ts; here
 * a loopback server answers with that documented body, so the CLI's rendering of it is what is tested.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { runCliCaptured } from './support/cli-run';

const JOB_ID = 'a'.repeat(64);

async function serve(body: unknown): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer((request, response) => {
    const expected = request.method === 'DELETE' && request.url === `/api/jobs/${JOB_ID}`;
    response.writeHead(expected ? 200 : 404, { 'content-type': 'application/json' });
    response.end(JSON.stringify(expected ? body : { error: { type: 'JobNotFoundError', message: 'no such route in this test' } }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

const counts = { jobs: 1, stages: 2, tasks: 6, events: 9, deadLetters: 0, outbox: 0, taskLogs: 0 };

test('blobs a failed delete left: exit 0, the counts on stdout, a warning naming how many and why on stderr (control characters made visible)', async () => {
  const server = await serve({
    jobId: JOB_ID,
    deleted: {
      ...counts,
      blobsDeleted: 0,
      blobsLeft: 5,
      blobError: { type: 'PayloadStoreUnavailableError', message: 'the payload store is unavailable for now (deleting 5 blob(s)): unreachable\u001b[2J' },
    },
  });
  try {
    const run = await runCliCaptured(['delete', JOB_ID], { isTTY: false, env: { COREMACHINE_URL: server.url } });
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`deleted job ${JOB_ID}: 2 stage(s), 6 task(s), 9 event(s), 0 dead letter(s), 0 outbox row(s), 0 log line(s)\n`);
    expect(run.stderr).toMatch(/^warning: 5 payload blob\(s\) of the job could not be deleted \(PayloadStoreUnavailableError: .*unreachable/);
    expect(run.stderr).toMatch(/the janitor's orphan sweep deletes them later\n$/);
    expect(run.stderr).not.toContain('\u001b');
  } finally {
    await server.close();
  }
});

test('blobs all deleted: their count on stdout and nothing on stderr', async () => {
  const server = await serve({ jobId: JOB_ID, deleted: { ...counts, blobsDeleted: 7, blobsLeft: 0 } });
  try {
    const run = await runCliCaptured(['delete', JOB_ID], { isTTY: false, env: { COREMACHINE_URL: server.url } });
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/, 0 log line\(s\), 7 payload blob\(s\)\n$/);
  } finally {
    await server.close();
  }
});
