import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import { isTransientDatabaseError } from '../core/db/transient-errors';
import {
  CoreMachineError,
  errorToShape,
  InvalidTransitionError,
  JobNotFoundError,
  LeaseLostError,
  RerunRefusedError,
  ScheduleNotFoundError,
  SignalRefusedError,
  TaskNotFoundError,
  UnknownJobTypeError,
  UnknownJobVersionError,
  UnknownRemoteTaskTypeError,
  ValidationError,
} from '../core/errors';
import { unstorableJsonIssues } from '../models/storable';
import { PayloadMissingError, PayloadStoreUnavailableError } from '../core/payloads/payload-errors';
import { assertSafeRequestText } from './http-input';

/** Matches the Service Bus message limit the design is built around; parameters live in Postgres. */
export const MAX_BODY_BYTES = 256 * 1024;

export class PayloadTooLargeError extends CoreMachineError {
  override readonly type = 'PayloadTooLargeError';
  override readonly nonRetryable = true;
  constructor(readonly bytes: number) {
    super(`request body is ${bytes} bytes; the limit is ${MAX_BODY_BYTES} bytes (256 KB)`);
  }
}

/** How long a client should wait before retrying when the database is unavailable for now. */
export const RETRY_AFTER_SECONDS = 5;

// Service Bus error codes that mean "busy or unreachable now", not "this request is wrong".
const TRANSIENT_SERVICE_BUS_CODES = new Set(['ServiceBusy', 'ServiceTimeout', 'ServiceCommunicationProblem']);

/** A Service Bus send that failed because the service is busy or unreachable (anywhere in the cause chain). */
function isTransientTransportError(error: unknown, depth = 0): boolean {
  if (depth > 5 || error === null || typeof error !== 'object') return false;
  const { name, code, cause } = error as { name?: unknown; code?: unknown; cause?: unknown };
  if (name === 'ServiceBusError' && typeof code === 'string' && TRANSIENT_SERVICE_BUS_CODES.has(code)) return true;
  return isTransientTransportError(cause, depth + 1);
}

/** The status a client error earns, or undefined when the fault is the server's. */
function clientStatusFor(error: unknown): number | undefined {
  if (error instanceof ValidationError) return 400;
  if (
    error instanceof UnknownJobTypeError ||
    error instanceof UnknownJobVersionError ||
    error instanceof JobNotFoundError ||
    error instanceof TaskNotFoundError
  )
    return 404;
  if (error instanceof ScheduleNotFoundError || error instanceof UnknownRemoteTaskTypeError) return 404;
  // A stored value's blob is gone: the value cannot be served, now or later (docs/payloads.md).
  if (error instanceof PayloadMissingError) return 404;
  if (error instanceof InvalidTransitionError || error instanceof LeaseLostError || error instanceof SignalRefusedError || error instanceof RerunRefusedError) {
    return 409;
  }
  if (error instanceof CoreMachineError && error.type === 'UnauthorizedError') return 401;
  if (error instanceof PayloadTooLargeError) return 413;
  return undefined;
}

/** What a client can act on besides the message: a remote worker learns which task types it may claim. */
function refusalDetails(error: unknown): Record<string, unknown> {
  return error instanceof UnknownRemoteTaskTypeError ? { remoteTaskTypes: error.remoteTaskTypes } : {};
}

/**
 * Every error becomes `{error:{type, message, ...}}` with a status that says whose fault it was.
 * A client error echoes its message (and zod issues). A database or message queue that is
 * unreachable for now is a 503 with Retry-After. Anything else is a bug: logged at error with its whole cause chain and
 * stack, and answered with a generic message, so no driver or internal detail leaves the server.
 */
export function errorResponse(error: unknown, context: InvocationContext): HttpResponseInit {
  const clientStatus = clientStatusFor(error);
  if (clientStatus !== undefined) return { status: clientStatus, jsonBody: { error: { ...errorToShape(error), ...refusalDetails(error) } } };

  const unavailable = isTransientDatabaseError(error)
    ? 'the database'
    : isTransientTransportError(error)
      ? 'the message queue'
      : error instanceof PayloadStoreUnavailableError
        ? 'the payload store'
        : undefined;
  const transient = unavailable !== undefined;
  context.error(
    JSON.stringify({
      event: transient ? 'coremachine.http.unavailable' : 'coremachine.http.error',
      invocationId: context.invocationId,
      function: context.functionName,
      error: errorToShape(error),
      stack: error instanceof Error ? error.stack : undefined,
    }),
  );
  if (transient) {
    return {
      status: 503,
      headers: { 'retry-after': String(RETRY_AFTER_SECONDS) },
      jsonBody: { error: { type: 'UnavailableError', message: `${unavailable} is unavailable for now: retry in ${RETRY_AFTER_SECONDS} seconds` } },
    };
  }
  return {
    status: 500,
    jsonBody: { error: { type: 'InternalError', message: `internal error: the server log has the details under invocation ${context.invocationId}` } },
  };
}

/**
 * Reads the body as JSON, refusing what is too big before parsing it and what is not JSON at all.
 * An empty body is not `{}`: a client that forgot the body should hear so, not get a default job.
 */
export async function readJsonBody(request: HttpRequest): Promise<unknown> {
  const declared = Number(request.headers.get('content-length') ?? Number.NaN);
  if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) throw new PayloadTooLargeError(declared);
  const bytes = new Uint8Array(await request.arrayBuffer());
  if (bytes.byteLength > MAX_BODY_BYTES) throw new PayloadTooLargeError(bytes.byteLength);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw bodyError('request body is not valid UTF-8');
  }
  if (text.trim() === '') throw bodyError('request body is empty: send a JSON document (job parameters: use {} for none)');
  let body: unknown;
  try {
    body = JSON.parse(text) as unknown;
  } catch (error) {
    throw bodyError(`request body is not valid JSON: ${errorToShape(error).message}`);
  }
  // Valid JSON can still hold what no column can store ("\u0000", "\ud800"), or nest deep enough
  // to overflow recursive code downstream: refuse it here, keys included, naming where.
  const issues = unstorableJsonIssues(body);
  if (issues.length > 0) {
    const where = (path: Array<string | number>) => (path.length === 0 ? 'the body itself' : path.map((key) => JSON.stringify(key)).join(' → '));
    throw new ValidationError(`request body cannot be stored: ${issues.map((issue) => `${issue.message} (at ${where(issue.path)})`).join('; ')}`, issues);
  }
  return body;
}

function bodyError(message: string): ValidationError {
  return new ValidationError(message, [{ code: 'invalid_json', path: [], message }]);
}

export type Handler = (request: HttpRequest, context: InvocationContext) => Promise<HttpResponseInit>;

/**
 * One place turns a thrown error into the JSON error response, so no handler can forget; it also
 * refuses path and query text that no column can hold before the handler sees it.
 */
export function withErrors(handler: Handler): Handler {
  return async (request, context) => {
    try {
      assertSafeRequestText(request);
      return await handler(request, context);
    } catch (error) {
      return errorResponse(error, context);
    }
  };
}
