import { apiUrl } from './urls';

/** The function key the page was opened with (?code=); sent as a header on every call. */
export const KEY = new URLSearchParams(location.search).get('code') ?? '';

interface ErrorDetails {
  type?: string;
  message?: string;
  [name: string]: unknown;
}

export class ApiError extends Error {
  readonly type: string;
  constructor(
    readonly status: number,
    readonly details: ErrorDetails,
  ) {
    super(details.message ?? `HTTP ${status}`);
    this.type = details.type ?? 'HttpError';
  }
}

function errorOf(body: unknown): ErrorDetails {
  const error = (body as { error?: unknown } | null)?.error;
  return typeof error === 'object' && error !== null ? (error as ErrorDetails) : {};
}

/** Calls the API on this page's own origin; any failure becomes an ApiError with the server's {error}. */
export async function api<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: string, extraHeaders: Record<string, string> = {}): Promise<T> {
  const headers: Record<string, string> = { ...extraHeaders, 'x-functions-key': KEY };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(apiUrl(location.origin, path), { method, headers, body: body ?? null, cache: 'no-store' });
  } catch (error) {
    throw new ApiError(0, { type: 'NetworkError', message: `could not reach the API: ${error instanceof Error ? error.message : String(error)}` });
  }
  const text = await response.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { error: { type: 'BadResponseError', message: text.slice(0, 500) } };
  }
  if (!response.ok) throw new ApiError(response.status, errorOf(parsed));
  return parsed as T;
}

/** What a caught value says, for the error box and announcements. */
export function asApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  return new ApiError(0, { type: error instanceof Error ? error.name : 'Error', message: error instanceof Error ? error.message : String(error) });
}
