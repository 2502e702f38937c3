import type { JobTypeCatalogue } from '../../core/engine/job-types';
import type { ErrorShape, JobRecord, JobView, ScheduleView, TaskLogPage, TaskRecord } from '../../models';
import { TIMEOUT_HEADER } from '../../models/deadline';
import { JOB_VERSION_HEADER } from '../../models/messages';
import { CREATED_BY_HEADER, JOB_NAME_HEADER, LABELS_HEADER } from '../../models/job-labels';
import { FAIRNESS_KEY_HEADER, FAIRNESS_WEIGHT_HEADER, PRIORITY_HEADER } from '../../models/job-priority';
import { labelsHeader } from './job-labels';
import type { ControlAction } from '../../models/control-actions';
import type { EventRecord } from '../../models/events';
import type { WorkerView } from '../../models/workers';

/** A record as it arrives over HTTP: JSON turned every Date into an ISO string. */
export type Wire<T> = T extends Date ? string : T extends Array<infer U> ? Array<Wire<U>> : T extends object ? { [K in keyof T]: Wire<T[K]> } : T;

export type JobJson = Wire<JobView>;
export type JobSummaryJson = Wire<JobRecord>;
export type TaskJson = Wire<TaskRecord>;
export type EventJson = Wire<EventRecord>;
export type ScheduleJson = Wire<ScheduleView>;
export type TaskLogPageJson = Wire<TaskLogPage>;
export type WorkerJson = Wire<WorkerView>;

/** An answer other than 2xx, or no answer at all (status 0), carrying the API's {error} body. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly status: number,
    readonly error: ErrorShape,
  ) {
    super(`${error.type}: ${error.message}`);
  }
}

/** The submission's headers, as the user typed them: the server validates each and answers 400 with why. */
export interface SubmitOptions {
  idempotencyKey?: string | undefined;
  timeoutSeconds?: string | undefined;
  version?: string | undefined;
  /** Who and what: sent percent-encoded in the CoreMachine-Job-Name, -Created-By and -Labels headers. */
  name?: string | undefined;
  createdBy?: string | undefined;
  labels?: ReadonlyArray<readonly [string, string]> | undefined;
  /** Priority and fair share: the CoreMachine-Priority and -Fairness-* headers, checked by the server. */
  priority?: string | undefined;
  fairnessKey?: string | undefined;
  fairnessWeight?: string | undefined;
}

export interface ApiClientOptions {
  baseUrl: string;
  functionKey: string | undefined;
}

/** The CoreMachine HTTP API, as the dashboard and curl see it. */
export class ApiClient {
  private readonly base: string;

  constructor(private readonly options: ApiClientOptions) {
    this.base = options.baseUrl.replace(/\/+$/, '');
  }

  async request<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    return (await this.send<T>(method, path, body)).body;
  }

  private async send<T>(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    body?: unknown,
    extra: { headers?: Record<string, string>; timeoutMs?: number } = {},
  ): Promise<{ status: number; body: T; headers: Headers }> {
    const headers: Record<string, string> = { ...extra.headers };
    if (this.options.functionKey) headers['x-functions-key'] = this.options.functionKey;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const url = `${this.base}/api/${path}`;
    let response: Response;
    try {
      // redirect: 'manual': a redirect would carry the key (and a 307/308 the body) to whatever
      // origin the Location names. Node's fetch then answers with the 3xx itself and its Location.
      response = await fetch(url, {
        method,
        headers,
        redirect: 'manual',
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(extra.timeoutMs ?? 30_000),
      });
    } catch (error) {
      const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : String(error);
      throw new ApiError(0, { type: 'ConnectionError', message: `could not reach ${url} (${cause}); is "coremachine dev" running, and is --url right?` });
    }
    if (response.status >= 300 && response.status < 400) {
      await response.body?.cancel().catch(() => undefined);
      throw new ApiError(response.status, redirectRefused(url, `api/${path}`, response.status, response.headers.get('location')));
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? null : JSON.parse(text);
    } catch {
      throw new ApiError(response.status, { type: 'BadResponseError', message: `HTTP ${response.status} with a body that is not JSON: ${text.slice(0, 200)}` });
    }
    if (!response.ok) throw new ApiError(response.status, errorFrom(parsed, response.status));
    return { status: response.status, body: parsed as T, headers: response.headers };
  }

  /** created is false when the same type, parameters (and idempotency key) were submitted before (200, not 202). */
  async submit(jobType: string, parameters: unknown, options: SubmitOptions = {}): Promise<{ job: JobJson; created: boolean }> {
    const headers: Record<string, string> = {
      ...(options.idempotencyKey === undefined ? {} : { 'idempotency-key': options.idempotencyKey }),
      ...(options.timeoutSeconds === undefined ? {} : { [TIMEOUT_HEADER]: options.timeoutSeconds }),
      ...(options.version === undefined ? {} : { [JOB_VERSION_HEADER]: options.version }),
      ...(options.name === undefined ? {} : { [JOB_NAME_HEADER]: encodeURIComponent(options.name) }),
      ...(options.createdBy === undefined ? {} : { [CREATED_BY_HEADER]: encodeURIComponent(options.createdBy) }),
      ...(options.labels === undefined || options.labels.length === 0 ? {} : { [LABELS_HEADER]: labelsHeader(options.labels) }),
      ...(options.priority === undefined ? {} : { [PRIORITY_HEADER]: options.priority }),
      ...(options.fairnessKey === undefined ? {} : { [FAIRNESS_KEY_HEADER]: encodeURIComponent(options.fairnessKey) }),
      ...(options.fairnessWeight === undefined ? {} : { [FAIRNESS_WEIGHT_HEADER]: options.fairnessWeight }),
    };
    const { status, body } = await this.send<JobJson>('POST', `jobs/${encodeURIComponent(jobType)}`, parameters, { headers });
    return { job: body, created: status === 202 };
  }

  /** With waitSeconds the server holds the answer until the job ends or the time is up (long-poll). */
  async job(jobId: string, waitSeconds?: number): Promise<JobJson> {
    const path = `jobs/${encodeURIComponent(jobId)}${search({ waitSeconds })}`;
    return (await this.send<JobJson>('GET', path, undefined, { timeoutMs: 30_000 + (waitSeconds ?? 0) * 1000 })).body;
  }

  jobTypes(): Promise<JobTypeCatalogue> {
    return this.request('GET', 'job-types');
  }

  schedules(): Promise<{ schedules: ScheduleJson[] }> {
    return this.request('GET', 'schedules');
  }

  workers(): Promise<{ workers: WorkerJson[] }> {
    return this.request('GET', 'workers');
  }

  scheduleControl(name: string, action: 'pause' | 'resume'): Promise<ScheduleJson> {
    return this.request('POST', `schedules/${encodeURIComponent(name)}/${action}`);
  }

  /** A list value (`label`) is sent once per item. */
  jobs(query: Record<string, string | number | readonly string[] | undefined>): Promise<{ jobs: JobSummaryJson[]; nextCursor: string | null }> {
    return this.request('GET', `jobs${search(query)}`);
  }

  tasks(jobId: string, query: Record<string, string | number | undefined>): Promise<{ tasks: TaskJson[] }> {
    return this.request('GET', `jobs/${encodeURIComponent(jobId)}/tasks${search(query)}`);
  }

  /** A page of one task's log lines from afterSeq (GET jobs/{jobId}/tasks/{taskId}/logs). */
  taskLogs(jobId: string, taskId: string, afterSeq: number, limit: number): Promise<TaskLogPageJson> {
    return this.request('GET', `jobs/${encodeURIComponent(jobId)}/tasks/${encodeURIComponent(taskId)}/logs${search({ afterSeq, limit })}`);
  }

  events(jobId: string, afterId: number, limit: number): Promise<{ events: EventJson[] }> {
    return this.request('GET', `jobs/${encodeURIComponent(jobId)}/events${search({ afterId, limit })}`);
  }

  control(jobId: string, action: ControlAction): Promise<JobJson> {
    return this.request('POST', `jobs/${encodeURIComponent(jobId)}/${action}`);
  }

  /** delivered is false when the same signal with the same payload was delivered before (still 200). */
  async signal(jobId: string, name: string, payload: unknown): Promise<{ job: JobJson; delivered: boolean }> {
    const path = `jobs/${encodeURIComponent(jobId)}/signals/${encodeURIComponent(name)}`;
    const { body, headers } = await this.send<JobJson>('POST', path, payload);
    return { job: body, delivered: headers.get('x-coremachine-signal') !== 'repeated' };
  }

  /** Deletes a finished job and all its rows; the counts say what went, and what of its payload blobs a failed delete left. */
  deleteJob(jobId: string): Promise<{
    jobId: string;
    deleted: Record<'jobs' | 'stages' | 'tasks' | 'events' | 'deadLetters' | 'outbox' | 'taskLogs', number> & {
      blobsDeleted?: number;
      blobsLeft?: number;
      blobError?: { type: string; message: string };
    };
  }> {
    return this.request('DELETE', `jobs/${encodeURIComponent(jobId)}`);
  }
}

function search(query: Record<string, string | number | readonly string[] | undefined>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (Array.isArray(value)) for (const item of value as readonly string[]) params.append(key, item);
    else if (value !== undefined && value !== '') params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

/**
 * A 3xx answer, as an error: where it pointed, why the CLI does not go there, and the --url to use
 * when it is the same service moved (http → https, another path prefix).
 */
function redirectRefused(url: string, apiPath: string, status: number, location: string | null): ErrorShape {
  const from = new URL(url).origin;
  const why = 'the CLI does not follow redirects, because it would send the function key (and the request body) there too';
  if (location === null || !URL.canParse(location, url)) {
    return {
      type: 'RedirectRefusedError',
      message: `${from} answered HTTP ${status} (a redirect${location === null ? ' without a Location' : ` to ${JSON.stringify(location)}`}); ${why}. Check --url`,
    };
  }
  const target = new URL(location, url);
  // The same API under a new base (https://host/api/jobs for http://host/api/jobs): suggest that base.
  const tail = `/${apiPath.split('?')[0] ?? ''}`;
  const base = target.pathname.endsWith(tail) ? `${target.origin}${target.pathname.slice(0, -tail.length)}` : target.origin;
  return {
    type: 'RedirectRefusedError',
    message: `${from} answered HTTP ${status}, redirecting to ${target.href}; ${why}. If that is the same service (e.g. http → https), use --url ${base}`,
  };
}

/** The API's {error:{type,message}}; anything else (a proxy's HTML page, say) still gets a type. */
function errorFrom(body: unknown, status: number): ErrorShape {
  if (typeof body === 'object' && body !== null && 'error' in body) {
    const error = body.error;
    if (typeof error === 'object' && error !== null && 'type' in error && 'message' in error) return error as ErrorShape;
  }
  return { type: `HTTP${status}`, message: `HTTP ${status}: ${JSON.stringify(body)}` };
}
