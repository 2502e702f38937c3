import type { HttpRequest } from '@azure/functions';

/**
 * Tells a handler that its caller has gone, so a long-poll stops querying the database for an
 * answer nobody will read. `coremachine dev` attaches one per request (the socket closed before
 * the response was written). The Functions host gives the Node worker no such notice in
 * @azure/functions 4.x; there a wait ends at its own bound (waitSeconds ≤ 60, polls ≥ 1 s apart).
 */
const signals = new WeakMap<HttpRequest, AbortSignal>();

export function attachClientSignal(request: HttpRequest, signal: AbortSignal): void {
  signals.set(request, signal);
}

export function clientSignal(request: HttpRequest): AbortSignal | undefined {
  return signals.get(request);
}
