/**
 * Passwordless login: the pg password is an access token from a credential, fetched per new
 * connection, cached, and refreshed before it expires. Proven against a real PostgreSQL cluster
 * that enforces SCRAM password authentication (the shared test server trusts everyone, so it
 * could not tell a right token from a wrong one).
 */
import pg from 'pg';
import { loadConfig } from '../core/config';
import { createPool } from '../core/db/pool';
import {
  DatabaseTokenError,
  databasePoolOptions,
  EntraTokenProvider,
  POSTGRES_ENTRA_SCOPE,
  type AccessTokenLike,
  type TokenSource,
} from '../core/db/entra-token';
import { isTransientDatabaseError } from '../core/db/transient-errors';
import { freePort } from './support/free-port';
import { startPasswordCluster, type PasswordCluster } from './support/password-cluster';

let server: PasswordCluster;
let appUrl: string;
let admin: pg.Client;

/** A stand-in for DefaultAzureCredential: hands out the queued tokens in order and counts calls. */
class StandInCredential implements TokenSource {
  calls: string[][] = [];
  constructor(
    private readonly tokens: Array<AccessTokenLike | Error>,
    private readonly delayMs = 0,
  ) {}
  async getToken(scopes: string | string[]): Promise<AccessTokenLike | null> {
    this.calls.push(Array.isArray(scopes) ? scopes : [scopes]);
    if (this.delayMs) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    const next = this.tokens.shift();
    if (!next) throw new Error('stand-in credential has no token left');
    if (next instanceof Error) throw next;
    return next;
  }
}

async function setRolePassword(password: string): Promise<void> {
  await admin.query(`ALTER ROLE app_identity PASSWORD ${admin.escapeLiteral(password)}`);
}

beforeAll(async () => {
  // A port the OS picked: a fixed range collided with ephemeral ports of other connections.
  server = startPasswordCluster(await freePort());
  appUrl = server.url('app_identity');
  admin = new pg.Client({ connectionString: server.url('postgres', 'postgres') });
  await admin.connect();
  await admin.query('CREATE ROLE app_identity LOGIN');
}, 60_000);

afterAll(async () => {
  await admin?.end();
  server?.stop();
});

test('password authentication is enforced on this server: a wrong password is refused', async () => {
  await setRolePassword('the-right-token');
  const wrong = new pg.Client({ connectionString: server.url('app_identity', 'not-the-token') });
  await expect(wrong.connect()).rejects.toMatchObject({ code: '28P01' });
});

test('a new connection logs in with the token the credential returns, for the PostgreSQL scope', async () => {
  await setRolePassword('token-A');
  const credential = new StandInCredential([{ token: 'token-A', expiresOnTimestamp: Date.now() + 60 * 60_000 }]);
  const pool = createPool(appUrl, { max: 4, password: new EntraTokenProvider(credential).password });
  try {
    const who = await pool.query<{ user: string }>('SELECT current_user AS user');
    expect(who.rows[0]?.user).toBe('app_identity');
    // Four connections at once: one token, fetched once, reused while it is fresh.
    await Promise.all(Array.from({ length: 4 }, () => pool.query('SELECT pg_sleep(0.05)')));
    expect(pool.totalCount).toBe(4);
    expect(credential.calls).toEqual([[POSTGRES_ENTRA_SCOPE]]);
  } finally {
    await pool.end();
  }
});

test('a token the server does not accept fails the connection', async () => {
  await setRolePassword('token-B');
  const credential = new StandInCredential([{ token: 'stale-token', expiresOnTimestamp: Date.now() + 60 * 60_000 }]);
  const pool = createPool(appUrl, { max: 1, password: new EntraTokenProvider(credential).password });
  try {
    await expect(pool.query('SELECT 1')).rejects.toMatchObject({ code: '28P01' });
  } finally {
    await pool.end();
  }
});

test('a token near its expiry is replaced for new connections; open connections keep working', async () => {
  let clock = Date.now();
  const credential = new StandInCredential([
    { token: 'token-1', expiresOnTimestamp: clock + 10 * 60_000 },
    { token: 'token-2', expiresOnTimestamp: clock + 70 * 60_000 },
  ]);
  const provider = new EntraTokenProvider(credential, { now: () => clock });
  const pool = createPool(appUrl, { max: 4, password: provider.password });
  await setRolePassword('token-1');
  const first = await pool.connect();
  try {
    await first.query('SELECT 1');
    expect(credential.calls).toHaveLength(1);

    // 6 minutes later token-1 has 4 minutes left: inside the 5-minute margin. The identity
    // platform has issued token-2 and the server now accepts only it.
    clock += 6 * 60_000;
    await setRolePassword('token-2');
    const refused = new pg.Client({ connectionString: server.url('app_identity', 'token-1') });
    await expect(refused.connect()).rejects.toMatchObject({ code: '28P01' });

    const second = await pool.connect();
    try {
      expect((await second.query<{ user: string }>('SELECT current_user AS user')).rows[0]?.user).toBe('app_identity');
    } finally {
      second.release();
    }
    expect(credential.calls).toHaveLength(2);
    // The server checks a token only at login: the connection opened with token-1 still works.
    await expect(first.query('SELECT 1 AS one')).resolves.toMatchObject({ rows: [{ one: 1 }] });
  } finally {
    first.release();
    await pool.end();
  }
});

test('callers that arrive while a token is being fetched share that one fetch', async () => {
  const credential = new StandInCredential([{ token: 'shared', expiresOnTimestamp: Date.now() + 60 * 60_000 }], 50);
  const provider = new EntraTokenProvider(credential);
  const tokens = await Promise.all(Array.from({ length: 10 }, () => provider.password()));
  expect(new Set(tokens)).toEqual(new Set(['shared']));
  expect(credential.calls).toHaveLength(1);
});

test('a failed token fetch is a transient error that carries its cause, and the next connection tries again', async () => {
  await setRolePassword('token-after-outage');
  const outage = new Error('ManagedIdentityCredential: IMDS endpoint unreachable');
  const credential = new StandInCredential([outage, { token: 'token-after-outage', expiresOnTimestamp: Date.now() + 60 * 60_000 }]);
  const pool = createPool(appUrl, { max: 1, password: new EntraTokenProvider(credential).password });
  try {
    const failure: unknown = await pool.query('SELECT 1').then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(DatabaseTokenError);
    expect((failure as DatabaseTokenError).cause).toBe(outage);
    expect(isTransientDatabaseError(failure)).toBe(true);
    await expect(pool.query('SELECT current_user AS user')).resolves.toMatchObject({ rows: [{ user: 'app_identity' }] });
  } finally {
    await pool.end();
  }
});

test('configuration: password auth by default, entra on request; retention defaults to 30 days', () => {
  expect(loadConfig({}).databaseAuth).toBe('password');
  expect(databasePoolOptions(loadConfig({}))).toEqual({});
  const credential = new StandInCredential([]);
  expect(typeof databasePoolOptions(loadConfig({ DATABASE_AUTH: 'entra' }), credential).password).toBe('function');
  expect(() => loadConfig({ DATABASE_AUTH: 'kerberos' })).toThrow(/DATABASE_AUTH/);
  expect(loadConfig({}).retentionDays).toBe(30);
  expect(loadConfig({ COREMACHINE_RETENTION_DAYS: '0' }).retentionDays).toBe(0);
  expect(() => loadConfig({ COREMACHINE_RETENTION_DAYS: '-1' })).toThrow(/COREMACHINE_RETENTION_DAYS/);
});
