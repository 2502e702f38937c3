import http from 'node:http';
import { createLogger } from '../core/logger';
import { startLocalRuntime, type LocalRuntime } from '../core/local-runtime';
import { loadConfig } from '../core/config';
import { appRegistry } from './support/registry';
import { startDevServer, type DevServer } from '../bin/cli/dev-server';
import { createTestDatabase, type TestDatabase } from './support/test-database';

// The dev server with no key (the default) and one bound to every address, over one runtime.
let db: TestDatabase;
let runtime: LocalRuntime;
let open: DevServer;
let keyed: DevServer;
let anyHost: DevServer;
let port: number;

beforeAll(async () => {
  db = await createTestDatabase();
  const logger = createLogger('silent');
  runtime = await startLocalRuntime(loadConfig({ DATABASE_URL: db.url, LOG_LEVEL: 'silent' }), appRegistry(), logger);
  open = await startDevServer(runtime, logger, { port: 0, host: '127.0.0.1', functionKey: undefined });
  keyed = await startDevServer(runtime, logger, { port: 0, host: '127.0.0.1', functionKey: 'the-key' });
  anyHost = await startDevServer(runtime, logger, { port: 0, host: '0.0.0.0', functionKey: undefined });
  port = Number(new URL(open.url).port);
});
afterAll(async () => {
  await Promise.all([open.close(), keyed.close(), anyHost.close()]);
  await runtime.close();
  await db.drop();
});

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A raw request: fetch would normalise the very paths and headers these tests send. */
function raw(options: { path: string; method?: string; headers?: Record<string, string>; body?: string; port?: number }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: options.port ?? port,
        method: options.method ?? 'GET',
        path: options.path,
        headers: options.headers,
        setHost: options.headers?.host === undefined,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

const errorOf = (answer: Answer) => (JSON.parse(answer.body) as { error: { type: string; message: string } }).error;
const jobCount = async () => Number((await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM coremachine.jobs')).rows[0]?.n);
const json = { 'content-type': 'application/json' };

/** Streams up to 200 MB of JSON-typed spaces (chunked) until the server answers. */
function hugeUpload(method: string, path: string): Promise<{ status: number; sent: number; body: string }> {
  const chunk = Buffer.alloc(64 * 1024, 0x20);
  return new Promise((resolve, reject) => {
    let sent = 0;
    let answered = false;
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: { ...json, 'transfer-encoding': 'chunked' } }, (res) => {
      answered = true;
      let body = '';
      res.on('data', (data: Buffer) => (body += data.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, sent, body }));
    });
    // The server closes the connection after answering; a write that fails after that is expected.
    req.on('error', (error) => (answered ? undefined : reject(error)));
    const write = () => {
      while (!answered && sent < 200 * 1024 * 1024) {
        sent += chunk.length;
        if (!req.write(chunk)) {
          req.once('drain', write);
          return;
        }
      }
      if (!answered) req.end();
    };
    write();
  });
}

test('a 200 MB chunked body, even to the anonymous health route, is refused at the limit with 413 and memory stays flat', async () => {
  const rssBefore = process.memoryUsage().rss;
  for (const [method, path] of [
    ['GET', '/api/health'],
    ['POST', '/api/jobs/hello_world'],
    ['POST', '/api/workers/claim'],
  ] as const) {
    const answer = await hugeUpload(method, path);
    expect({ path, status: answer.status }).toEqual({ path, status: 413 });
    expect(JSON.parse(answer.body)).toMatchObject({ error: { type: 'PayloadTooLargeError' } });
    // Refused long before the upload could finish: the server stopped reading at 256 KB.
    expect(answer.sent).toBeLessThan(50 * 1024 * 1024);
  }
  // A method the route does not take is refused before a byte of the body is read.
  expect((await hugeUpload('POST', '/api/health')).status).toBe(405);
  expect(process.memoryUsage().rss - rssBefore).toBeLessThan(60 * 1024 * 1024);
  expect((await raw({ path: '/api/health' })).status).toBe(200);
});

test('a declared Content-Length over 256 KB is refused before reading, on every route', async () => {
  for (const path of ['/api/health', '/api/jobs/hello_world', '/api/nothing']) {
    const answer = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path, headers: { ...json, 'content-length': String(300 * 1024) } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.write('{"n":'); // a few bytes of the announced 300 KB, then nothing: the answer must not wait for the rest
    });
    expect({ path, status: answer }).toEqual({ path, status: 413 });
  }
  // Exactly at the limit is still read and handed to the route (which rejects the parameters).
  const atLimit = await raw({ method: 'POST', path: '/api/jobs/hello_world', headers: json, body: `{"n":0,"pad":"${'x'.repeat(256 * 1024 - 16)}"}` });
  expect(atLimit.status).toBe(400);
});

test('malformed percent-encoding and invalid Host headers are 400 JSON, never 500', async () => {
  for (const path of ['/api/jobs/%', '/api/jobs/%E0%A4%A', '/api/jobs/abc%zz/events', '/api/%']) {
    const answer = await raw({ path });
    expect({ path, status: answer.status, type: errorOf(answer).type }).toEqual({ path, status: 400, type: 'BadRequestError' });
  }
  for (const host of ['bad host', '[', 'localhost:99999', 'a_b:1', '']) {
    const answer = await raw({ path: '/api/health', headers: { host } });
    expect({ host, status: answer.status }).toEqual({ host, status: 400 });
    expect(answer.headers['content-type']).toBe('application/json');
  }
  expect((await raw({ path: '/api/health' })).status).toBe(200);
});

test('a request target that starts with // is a path, not an authority: //evil.example/api/dashboard is not the dashboard', async () => {
  const answer = await raw({ path: '//evil.example/api/dashboard' });
  expect(answer.status).toBe(404);
  expect(errorOf(answer).type).toBe('NotFoundError');
  expect(answer.body).not.toContain('<html');
  expect((await raw({ path: '/api/dashboard' })).status).toBe(200);
});

test('bound to loopback, only loopback Host names on the bound port are served (DNS rebinding)', async () => {
  for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`]) {
    expect({ host, status: (await raw({ path: '/api/health', headers: { host } })).status }).toEqual({ host, status: 200 });
  }
  for (const host of [`evil.example:${port}`, 'localhost', `localhost:${port + 1}`, `127.0.0.2:${port}`, `localhost.evil.example:${port}`]) {
    const answer = await raw({ path: '/api/health', headers: { host } });
    expect({ host, status: answer.status, type: errorOf(answer).type }).toEqual({ host, status: 421, type: 'MisdirectedRequestError' });
  }
  // Bound to 0.0.0.0 on purpose: any well-formed Host is served.
  const anyPort = Number(new URL(anyHost.url).port);
  expect((await raw({ port: anyPort, path: '/api/health', headers: { host: 'devbox.lan:8080' } })).status).toBe(200);
  expect((await raw({ port: anyPort, path: '/api/health', headers: { host: 'bad host' } })).status).toBe(400);
});

test('with no key, cross-site and non-JSON requests cannot create jobs; same-origin and curl-like ones can', async () => {
  const before = await jobCount();
  const body = JSON.stringify({ n: 3 });
  const refused: Array<{ headers: Record<string, string>; status: number; type: string }> = [
    { headers: { ...json, origin: 'http://evil.example' }, status: 403, type: 'CrossSiteRequestError' },
    { headers: { ...json, origin: 'null' }, status: 403, type: 'CrossSiteRequestError' },
    { headers: { ...json, origin: `http://localhost:${port + 1}` }, status: 403, type: 'CrossSiteRequestError' },
    { headers: { ...json, 'sec-fetch-site': 'cross-site' }, status: 403, type: 'CrossSiteRequestError' },
    { headers: { ...json, 'sec-fetch-site': 'same-site', origin: `http://127.0.0.1:${port}` }, status: 403, type: 'CrossSiteRequestError' },
    { headers: { 'content-type': 'text/plain' }, status: 415, type: 'UnsupportedMediaTypeError' },
    { headers: { 'content-type': 'application/x-www-form-urlencoded' }, status: 415, type: 'UnsupportedMediaTypeError' },
    { headers: {}, status: 415, type: 'UnsupportedMediaTypeError' },
  ];
  for (const { headers, status, type } of refused) {
    const answer = await raw({ method: 'POST', path: '/api/jobs/hello_world', headers, body });
    expect({ headers, status: answer.status, type: errorOf(answer).type }).toEqual({ headers, status, type });
  }
  expect(await jobCount()).toBe(before);
  // A cross-site page may still read nothing it could not already: GETs are not mutations.
  expect((await raw({ path: '/api/health', headers: { origin: 'http://evil.example', 'sec-fetch-site': 'cross-site' } })).status).toBe(200);

  const sameOrigin = await raw({
    method: 'POST',
    path: '/api/jobs/hello_world',
    headers: { ...json, origin: `http://127.0.0.1:${port}`, 'sec-fetch-site': 'same-origin' },
    body,
  });
  expect(sameOrigin.status).toBe(202);
  const curl = await raw({
    method: 'POST',
    path: '/api/jobs/hello_world',
    headers: { 'content-type': 'application/json; charset=utf-8' },
    body: JSON.stringify({ n: 4 }),
  });
  expect(curl.status).toBe(202);
  expect(await jobCount()).toBe(before + 2);
});

test('with a key: a missing key and a wrong key are both 401, and the message says which', async () => {
  const keyedPort = Number(new URL(keyed.url).port);
  const missing = await raw({ port: keyedPort, path: '/api/jobs' });
  const wrong = await raw({ port: keyedPort, path: '/api/jobs', headers: { 'x-functions-key': 'not-the-key' } });
  const wrongLength = await raw({ port: keyedPort, path: '/api/jobs?code=the-key-but-longer' });
  expect([missing.status, wrong.status, wrongLength.status]).toEqual([401, 401, 401]);
  expect(errorOf(missing).message).toMatch(/needs the function key/);
  expect(errorOf(wrong).message).toMatch(/is wrong/);
  expect(errorOf(wrongLength).message).toMatch(/is wrong/);
  expect((await raw({ port: keyedPort, path: '/api/jobs', headers: { 'x-functions-key': 'the-key' } })).status).toBe(200);
  expect((await raw({ port: keyedPort, path: '/api/jobs?code=the-key' })).status).toBe(200);
});
