import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import {
  CoreMachineError,
  errorToShape,
  InvalidTransitionError,
  JobNotFoundError,
  LeaseLostError,
  ScheduleNotFoundError,
  TaskNotFoundError,
  UnknownJobTypeError,
  ValidationError,
} from '../core/errors';

/** Matches the Service Bus message limit the design is built around; parameters live in Postgres. */
export const MAX_BODY_BYTES = 256 * 1024;

export class PayloadTooLargeError extends CoreMachineError {
  override readonly type = 'PayloadTooLargeError';
  override readonly nonRetryable = true;
  constructor(readonly bytes: number) {
    super(`request body is ${bytes} bytes; the limit is ${MAX_BODY_BYTES} bytes (256 KB)`);
  }
}

function statusFor(error: unknown): number {
  if (error instanceof ValidationError) return 400;
  if (error instanceof UnknownJobTypeError || error instanceof JobNotFoundError || error instanceof TaskNotFoundError) return 404;
  if (error instanceof ScheduleNotFoundError) return 404;
  if (error instanceof InvalidTransitionError || error instanceof LeaseLostError) return 409;
  if (error instanceof CoreMachineError && error.type === 'Unauthorized') return 401;
  if (error instanceof PayloadTooLargeError) return 413;
  return 500;
}

/**
 * Every error becomes `{error:{type, message, ...}}` with a status that says whose fault it was.
 * Server errors are logged with the invocation so the response and the log can be matched up.
 */
export function errorResponse(error: unknown, context: InvocationContext): HttpResponseInit {
  const status = statusFor(error);
  const shape = errorToShape(error);
  if (status >= 500) {
    context.error(JSON.stringify({ event: 'coremachine.http.error', invocationId: context.invocationId, function: context.functionName, error: shape }));
  }
  return { status, jsonBody: { error: shape } };
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
  if (text.trim() === '') throw bodyError('request body is empty: send the job parameters as a JSON object (use {} for none)');
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw bodyError(`request body is not valid JSON: ${errorToShape(error).message}`);
  }
}

function bodyError(message: string): ValidationError {
  return new ValidationError(message, [{ code: 'invalid_json', path: [], message }]);
}

export type Handler = (request: HttpRequest, context: InvocationContext) => Promise<HttpResponseInit>;

/** One place turns a thrown error into the JSON error response, so no handler can forget. */
export function withErrors(handler: Handler): Handler {
  return async (request, context) => {
    try {
      return await handler(request, context);
    } catch (error) {
      return errorResponse(error, context);
    }
  };
}
