import { CoreMachineError, ValidationError } from '../errors';

/**
 * A stored value's blob is gone (deleted by hand, another store configured, or none at all): the
 * task or job that needed it fails with this. Non-retryable: reading again cannot bring it back.
 */
export class PayloadMissingError extends CoreMachineError {
  override readonly type = 'PayloadMissingError';
  override readonly nonRetryable = true;
  constructor(
    readonly what: string,
    readonly key: string,
    detail = 'it is missing from the payload store',
  ) {
    super(`${what} (blob ${key}): ${detail}`);
  }
}

/** A stored value's blob is not what was written: its length or SHA-256 differs from the reference. */
export class PayloadCorruptError extends CoreMachineError {
  override readonly type = 'PayloadCorruptError';
  override readonly nonRetryable = true;
  constructor(
    readonly what: string,
    readonly key: string,
    expected: { size: number; sha256: string },
    found: { size: number; sha256: string },
  ) {
    super(
      `${what} (blob ${key}) does not match its reference: ${found.size} bytes with SHA-256 ${found.sha256}, expected ${expected.size} bytes with SHA-256 ${expected.sha256}`,
    );
  }
}

/**
 * A value larger than the engine may store: over the inline cap without a payload store (or for
 * values that are never offloaded: job parameters, signal payloads), or over the largest value
 * with one. Refused where it is produced, naming the limit and its setting.
 */
export class PayloadLimitError extends ValidationError {
  override readonly type = 'PayloadLimitError';
  constructor(
    message: string,
    readonly bytes: number,
    readonly limit: number,
    readonly setting: string,
  ) {
    super(message, [{ code: 'too_big', path: [], message }]);
  }
}

/**
 * The payload store could not be reached or refused the request (network, throttling, rights):
 * the infrastructure's fault, not the work's. A task's batch is given back and redelivered, a job
 * message too; the HTTP API answers 503.
 */
export class PayloadStoreUnavailableError extends CoreMachineError {
  override readonly type = 'PayloadStoreUnavailableError';
  constructor(operation: string, cause: unknown) {
    super(`the payload store is unavailable for now (${operation}): ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}
