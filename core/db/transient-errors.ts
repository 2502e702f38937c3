/**
 * Which database errors are the infrastructure's, not the work's. Many instances share one server:
 * refused or killed connections, "too many connections", failovers, serialization failures and
 * deadlocks are expected now and then, and must never count as a task attempt, fail a task or
 * job, or dead-letter a message. Callers retry their transaction or give the message back.
 */

// SQLSTATE classes and codes that say "try again later", not "this work is wrong".
const TRANSIENT_SQLSTATE_CLASSES = ['08']; // connection exception
const TRANSIENT_SQLSTATES = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '53300', // too_many_connections
  '53400', // configuration_limit_exceeded
  '55P03', // lock_not_available
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '58000', // system_error (e.g. failover in progress)
  '58030', // io_error
]);

// Node socket errors on connect or mid-query.
const TRANSIENT_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTCONN']);

// pg and pg-pool report some conditions only as messages.
const TRANSIENT_MESSAGES = [
  /connection terminated/i,
  /terminating connection/i,
  /timeout exceeded when trying to connect/i, // pg-pool: connectionTimeoutMillis reached
  /connection timeout/i,
  /client has encountered a connection error/i,
  /cannot use a pool after calling end/i,
  /sorry, too many clients already/i,
  /remaining connection slots are reserved/i,
  /the database system is (starting up|shutting down|in recovery mode)/i,
  /server closed the connection unexpectedly/i,
  /query_wait_timeout|no more connections allowed/i, // PgBouncer
];

/** An infrastructure fault the caller retries or redelivers; carries the driver error as cause. */
export class TransientDatabaseError extends Error {
  readonly type = 'TransientDatabaseError';
  readonly transient = true;
  constructor(cause: unknown) {
    super(`database unavailable for now: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'TransientDatabaseError';
  }
}

/** True when `error` (or any error in its cause chain) is a transient database/connection fault. */
export function isTransientDatabaseError(error: unknown, depth = 0): boolean {
  if (depth > 5 || error === null || typeof error !== 'object') return false;
  if (error instanceof TransientDatabaseError) return true;
  const { code, message, cause, errors } = error as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
  if (typeof code === 'string') {
    if (TRANSIENT_SQLSTATES.has(code) || TRANSIENT_NODE_CODES.has(code)) return true;
    if (code.length === 5 && TRANSIENT_SQLSTATE_CLASSES.includes(code.slice(0, 2))) return true;
  }
  if (typeof message === 'string' && TRANSIENT_MESSAGES.some((pattern) => pattern.test(message))) return true;
  // AggregateError (e.g. connect tried IPv4 and IPv6 and both were refused).
  if (Array.isArray(errors) && errors.length > 0 && errors.every((inner) => isTransientDatabaseError(inner, depth + 1))) return true;
  return cause !== undefined && isTransientDatabaseError(cause, depth + 1);
}
