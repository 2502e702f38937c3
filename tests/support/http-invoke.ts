import { HttpRequest, HttpResponse, InvocationContext, type HttpResponseInit } from '@azure/functions';
import type pg from 'pg';
import { z } from 'zod';

/**
 * Calls Functions HTTP handlers the way the host does (test mode of @azure/functions) and reads
 * the response as the wire would carry it. Shared by the HTTP boundary and fuzz tests.
 */
export type Handler = (request: HttpRequest, context: InvocationContext) => Promise<HttpResponseInit>;

export interface Reply {
  status: number;
  body: unknown;
  headers: Headers;
}

export interface CallInit {
  body?: string | Uint8Array;
  params?: Record<string, string>;
  query?: Record<string, string>;
  headers?: Record<string, string>;
}

/** What the handlers wrote through context.log/warn/error, as `${level} ${text}`. */
export const invocationLogs: string[] = [];

export function invocation(): InvocationContext {
  return new InvocationContext({
    functionName: 'test',
    logHandler: (level, ...args) => invocationLogs.push(`${level} ${args.map((arg) => (typeof arg === 'string' ? arg : JSON.stringify(arg))).join(' ')}`),
  });
}

export async function call(handler: Handler, method: string, path: string, init: CallInit = {}): Promise<Reply> {
  const body = init.body === undefined ? undefined : typeof init.body === 'string' ? { string: init.body } : { bytes: init.body };
  const request = new HttpRequest({
    method,
    url: `http://localhost:7071/api/${path}`,
    body,
    params: init.params ?? {},
    query: init.query ?? {},
    headers: init.headers ?? {},
  });
  const response = new HttpResponse(await handler(request, invocation()));
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text) as unknown;
  } catch {
    // Not JSON (the dashboard page): the caller decides whether that is right.
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

/** The one error shape every 4xx and 5xx must have. */
export const ErrorReply = z.strictObject({
  error: z.object({ type: z.string().min(1), message: z.string().min(1), issues: z.array(z.unknown()).optional() }),
});

/**
 * Rows of every table a request could write to; equal before and after means nothing was stored.
 * An outbox row lives from its transition's commit until its messages are sent, which happens after
 * the caller already sees the transition (a job read COMPLETED may still have its completion event's
 * row pending for a few milliseconds): the count waits, for a bounded time, until no due row is left,
 * so a snapshot taken right after a job finishes does not count rows about to vanish.
 */
export async function rowCounts(pool: pg.Pool): Promise<Record<string, number>> {
  for (let waited = 0; waited < 5_000; waited += 20) {
    const due = await pool.query<{ due: number }>('SELECT count(*)::int AS due FROM coremachine.outbox WHERE not_before <= now()');
    if ((due.rows[0]?.due ?? 0) === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const result = await pool.query<Record<string, number>>(
    `SELECT (SELECT count(*)::int FROM coremachine.jobs) AS jobs, (SELECT count(*)::int FROM coremachine.stages) AS stages,
            (SELECT count(*)::int FROM coremachine.tasks) AS tasks, (SELECT count(*)::int FROM coremachine.events) AS events,
            (SELECT count(*)::int FROM coremachine.dead_letters) AS dead_letters, (SELECT count(*)::int FROM coremachine.outbox) AS outbox`,
  );
  return result.rows[0] ?? {};
}
