import type { CoreMachineConfig } from '../../core/config';
import { CoreMachineError } from '../../core/errors';

/** Node and PostgreSQL codes that mean "could not get a session", with what to check for each. */
const CONNECTION_HINTS: Record<string, string> = {
  ENOTFOUND: 'the host name does not resolve',
  EAI_AGAIN: 'the host name could not be resolved (DNS unavailable?)',
  ECONNREFUSED: 'nothing accepts connections there: is PostgreSQL running, on that port?',
  ETIMEDOUT: 'the connection timed out: firewall, or the wrong host?',
  EHOSTUNREACH: 'the host is unreachable',
  ENETUNREACH: 'the network is unreachable',
  ECONNRESET: 'the server closed the connection: TLS required (add ?sslmode=require)?',
  '28P01': 'the password was refused',
  '28000': 'the server refused this user or client (pg_hba.conf)',
  '3D000': 'the database does not exist',
  '57P03': 'the server is starting up or shutting down',
};

function codeOf(error: unknown, depth = 0): string | undefined {
  if (depth > 5 || typeof error !== 'object' || error === null) return undefined;
  const { code, errors, cause } = error as { code?: unknown; errors?: unknown; cause?: unknown };
  if (typeof code === 'string' && code in CONNECTION_HINTS) return code;
  // AggregateError: one attempt per address (IPv4 and IPv6 of localhost), all refused.
  if (Array.isArray(errors)) for (const inner of errors) if (codeOf(inner, depth + 1)) return codeOf(inner, depth + 1);
  return codeOf(cause, depth + 1);
}

/** host:port of DATABASE_URL (never its password), or of the embedded server. */
export function databaseAddress(config: CoreMachineConfig): string {
  if (!config.databaseUrl) return `127.0.0.1:${config.embeddedPgPort} (embedded PostgreSQL)`;
  try {
    const url = new URL(config.databaseUrl);
    const host = url.hostname || url.searchParams.get('host') || 'localhost';
    return `${host}:${url.port || '5432'}`;
  } catch {
    return 'DATABASE_URL (not a URL)';
  }
}

/**
 * One line for a local command that could not run: a database that cannot be reached names the
 * host and port and what to check; anything else is its type and message.
 */
export function describeStartupError(error: unknown, config: CoreMachineConfig | undefined): string {
  const code = codeOf(error);
  if (code && config) {
    const what = config.databaseUrl ? 'check DATABASE_URL' : 'check COREMACHINE_EMBEDDED_PG_PORT and COREMACHINE_DATA_DIR';
    return `coremachine: cannot connect to the database at ${databaseAddress(config)}: ${CONNECTION_HINTS[code]} (${code}); ${what}`;
  }
  if (error instanceof CoreMachineError) return `coremachine: ${error.type}: ${error.message}`;
  if (error instanceof Error) return `coremachine: ${error.name}: ${error.message}`;
  return `coremachine: ${String(error)}`;
}
