import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { runCliCaptured } from './support/cli-run';

// The CLI sends its function key (and request bodies) to the origin it was given and nowhere else:
// it never follows a redirect, and it speaks plain http only to this machine unless told
// --insecure-http. Real HTTP servers on loopback stand in for the API and for where a redirect points.

const KEY = 'origin-test-key';

interface Received {
  method: string;
  url: string;
  key: string | undefined;
  body: string;
}

interface Recorder {
  url: string;
  received: Received[];
  close: () => Promise<void>;
}

/** A server that records every request and answers with `answer`. */
async function recorder(answer: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<Recorder> {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const key = req.headers['x-functions-key'];
      received.push({ method: req.method ?? '', url: req.url ?? '', key: typeof key === 'string' ? key : undefined, body: Buffer.concat(chunks).toString() });
      answer(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

let elsewhere: Recorder;
let redirectTo: (req: http.IncomingMessage) => { status: number; location: string | undefined } = () => ({ status: 302, location: undefined });
let redirector: Recorder;

beforeAll(async () => {
  // Where a redirect points: it must never hear from the CLI. It answers like the API would.
  elsewhere = await recorder((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ jobs: [], nextCursor: null }));
  });
  redirector = await recorder((req, res) => {
    const { status, location } = redirectTo(req);
    res.writeHead(status, location === undefined ? {} : { location });
    res.end();
  });
});
afterAll(async () => {
  await elsewhere.close();
  await redirector.close();
});
beforeEach(() => {
  elsewhere.received.length = 0;
  redirector.received.length = 0;
});

const cli = (args: string[], env: Record<string, string | undefined> = {}) => runCliCaptured(args, { isTTY: false, env });
const JOB_ID = 'a'.repeat(64);

test.each([302, 307, 308])('HTTP %i to another origin: nothing reaches it (no key, no body), exit 1 says why and what to do', async (status) => {
  redirectTo = (req) => ({ status, location: `${elsewhere.url}${req.url ?? '/'}` });
  const runs = [
    await cli(['jobs', '--url', redirector.url, '--key', KEY]),
    await cli(['submit', 'hello_world', '--params', '{"secret": "body-data"}', '--url', redirector.url, '--key', KEY]),
    await cli(['signal', JOB_ID, 'approval', '--data', '{"approved": true}', '--url', redirector.url, '--key', KEY]),
    await cli(['cancel', JOB_ID], { COREMACHINE_URL: redirector.url, COREMACHINE_FUNCTION_KEY: KEY }),
  ];
  expect(elsewhere.received).toEqual([]);
  // The configured origin did get each request, once: no retry, no second hop.
  expect(redirector.received.map((r) => [r.method, r.key])).toEqual([
    ['GET', KEY],
    ['POST', KEY],
    ['POST', KEY],
    ['POST', KEY],
  ]);
  for (const run of runs) {
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain(
      `error: RedirectRefusedError (HTTP ${status}): ${redirector.url} answered HTTP ${status}, redirecting to ${elsewhere.url}/api/`,
    );
    expect(run.stderr).toContain('the CLI does not follow redirects, because it would send the function key (and the request body) there too');
    // Same API path under another origin: the suggestion is that origin as --url.
    expect(run.stderr).toContain(`use --url ${elsewhere.url}\n`);
  }
});

test('http → https and relative redirects name the --url to use; a redirect without Location is refused too', async () => {
  const port = new URL(elsewhere.url).port;
  redirectTo = (req) => ({ status: 301, location: `https://localhost:${port}${req.url ?? '/'}` });
  const upgrade = await cli(['jobs', '--url', redirector.url, '--key', KEY]);
  expect(upgrade).toMatchObject({ code: 1, stdout: '' });
  expect(upgrade.stderr).toMatch(
    /^error: RedirectRefusedError \(HTTP 301\): .*redirecting to https:\/\/localhost:\d+\/api\/jobs; .*e\.g\. http → https\), use --url https:\/\/localhost:\d+\n$/,
  );

  redirectTo = () => ({ status: 307, location: '/prefix/api/jobs' });
  const relative = await cli(['jobs', '--url', redirector.url, '--key', KEY]);
  expect(relative).toMatchObject({ code: 1, stderr: expect.stringContaining(`redirecting to ${redirector.url}/prefix/api/jobs;`) as unknown });
  expect(relative.stderr).toContain(`use --url ${redirector.url}/prefix\n`);

  redirectTo = () => ({ status: 302, location: undefined });
  const bare = await cli(['jobs', '--url', redirector.url, '--key', KEY]);
  expect(bare).toMatchObject({
    code: 1,
    stderr: expect.stringMatching(/^error: RedirectRefusedError \(HTTP 302\): .*a redirect without a Location.*Check --url\n$/) as unknown,
  });
  expect(redirector.received).toHaveLength(3);
  expect(elsewhere.received).toEqual([]);
});

test('plain http to a host that is not this machine is a usage error naming --insecure-http, from --url and COREMACHINE_URL alike', async () => {
  const flag = await cli(['jobs', '--url', 'http://example.invalid:8080', '--key', KEY]);
  expect(flag.code).toBe(2);
  expect(flag.stdout).toBe('');
  expect(flag.stderr).toMatch(
    /^coremachine jobs: --url "http:\/\/example\.invalid:8080" is plain http to example\.invalid, which is not this machine: .*unencrypted\. Use https \(https:\/\/example\.invalid:8080\), or add --insecure-http/,
  );
  // Refused before any connection: a lookup of example.invalid would have said ConnectionError.
  expect(flag.stderr).not.toContain('ConnectionError');
  expect(flag.stderr).toContain('usage: coremachine jobs');

  const env = await cli(['submit', 'hello_world', '--params', '{}'], { COREMACHINE_URL: 'http://10.1.2.3:7071', COREMACHINE_FUNCTION_KEY: KEY });
  expect(env).toMatchObject({
    code: 2,
    stdout: '',
    stderr: expect.stringMatching(
      /^coremachine submit: COREMACHINE_URL "http:\/\/10\.1\.2\.3:7071" is plain http to 10\.1\.2\.3, .*--insecure-http/,
    ) as unknown,
  });

  // Other schemes are refused, whatever the flag says.
  for (const url of ['ftp://127.0.0.1/', 'file:///tmp/api', 'ws://localhost:7071']) {
    const run = await cli(['jobs', '--url', url, '--insecure-http']);
    expect({ url, code: run.code, stderr: run.stderr }).toEqual({
      url,
      code: 2,
      stderr: expect.stringContaining(`--url "${url}" must be an https:// (or, to this machine, http://) URL`) as unknown,
    });
  }

  // Loopback over http needs no flag: these get as far as connecting (and find nothing there).
  for (const url of ['http://127.0.0.1:9', 'http://127.8.9.10:9', 'http://localhost:9', 'http://[::1]:9']) {
    const run = await cli(['jobs', '--url', url]);
    expect({ url, code: run.code }).toEqual({ url, code: 1 });
    expect(run.stderr).toMatch(/^error: ConnectionError: could not reach/);
  }
});

test('--insecure-http lets plain http reach another host (which then fails to connect: exit 1); https needs no flag; the usage names it', async () => {
  const allowed = await cli(['jobs', '--url', 'http://example.invalid', '--key', KEY, '--insecure-http']);
  expect(allowed).toMatchObject({
    code: 1,
    stdout: '',
    stderr: expect.stringMatching(/^error: ConnectionError: could not reach http:\/\/example\.invalid\/api\/jobs/) as unknown,
  });
  const fromEnv = await cli(['jobs', '--insecure-http'], { COREMACHINE_URL: 'http://example.invalid' });
  expect(fromEnv).toMatchObject({ code: 1, stderr: expect.stringMatching(/^error: ConnectionError/) as unknown });
  const https = await cli(['jobs', '--url', 'https://example.invalid']);
  expect(https).toMatchObject({
    code: 1,
    stderr: expect.stringMatching(/^error: ConnectionError: could not reach https:\/\/example\.invalid\/api\/jobs/) as unknown,
  });

  const help = await cli(['jobs', '--help']);
  expect(help.code).toBe(0);
  expect(help.stdout).toMatch(/--insecure-http: allow an http:\/\/ URL to another machine/);
  expect(help.stdout).toContain('redirects are not followed');
});
