import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import type { HttpRoute } from './http-route';
import { schemaStatus } from '../core/db/migrator';
import { errorToShape } from '../core/errors';
import { pingDatabase } from '../core/state/health-store';
import type { ErrorShape } from '../models';
import type { VersionInUse } from '../core/engine/versions';
import type { OperationCountsSnapshot } from '../core/transport/operation-counts';
import { getAppContext, type AppContext } from './app-context';
import { RETRY_AFTER_SECONDS } from './http-errors';

/** A probe that hangs is worse than one that fails: load balancers time out and keep routing. */
const CHECK_TIMEOUT_MS = 5_000;
/** 503 means "not now": probes and clients learn when to look again. */
const RETRY_LATER = { 'retry-after': String(RETRY_AFTER_SECONDS) };

interface SchemaReport {
  databaseVersion: number;
  expectedVersion: number;
  upToDate: boolean;
}

export interface HealthReport {
  status: 'healthy' | 'unhealthy';
  database: { reachable: boolean; error?: ErrorShape };
  schema: SchemaReport | { error: ErrorShape } | null;
  transport: string | null;
  /**
   * Versions unfinished jobs run that this deployment does not register: those jobs wait (they do
   * not fail) until the version is deployed again or they are cancelled. The app stays healthy.
   */
  missingVersions?: VersionInUse[] | { error: ErrorShape };
  /**
   * Service Bus operations by kind and Functions executions this instance spent since it started
   * (core/transport/operation-counts.ts); only on the keyed route. One instance's share: Azure
   * Monitor's namespace metrics add up every instance.
   */
  operations?: OperationCountsSnapshot;
  error?: ErrorShape;
}

function withTimeout<T>(work: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/**
 * What the probe found, in full: driver and startup errors included (host names, role names,
 * addresses). Logged, and answered only on the keyed route.
 */
async function checkHealth(context: InvocationContext, details: boolean): Promise<HealthReport> {
  let appContext: AppContext;
  try {
    appContext = await withTimeout(getAppContext(), 'starting CoreMachine');
  } catch (error) {
    // Missing settings, no transport or a schema mismatch all stop the engine from starting.
    const report: HealthReport = { status: 'unhealthy', database: { reachable: false }, schema: null, transport: null, error: errorToShape(error) };
    context.warn(JSON.stringify({ event: 'coremachine.health', ...report }));
    return report;
  }

  const report: HealthReport = { status: 'healthy', database: { reachable: false }, schema: null, transport: appContext.transport.name };
  const operations = details ? appContext.transport.operations?.() : undefined;
  if (operations) report.operations = operations.snapshot();
  try {
    await withTimeout(pingDatabase(appContext.pool), 'the database');
    report.database = { reachable: true };
  } catch (error) {
    report.database = { reachable: false, error: errorToShape(error) };
  }
  if (report.database.reachable) {
    try {
      report.schema = await withTimeout(schemaStatus(appContext.pool), 'the schema version query');
    } catch (error) {
      report.schema = { error: errorToShape(error) };
    }
  }
  const schemaOk = report.schema !== null && 'upToDate' in report.schema && report.schema.upToDate;
  // Only on the keyed route: an aggregate over unfinished jobs is not for every load balancer probe.
  if (schemaOk && details) {
    try {
      report.missingVersions = await withTimeout(appContext.machine.missingVersions(), 'the job versions query');
      if (report.missingVersions.length > 0)
        context.warn(JSON.stringify({ event: 'coremachine.health.missing_versions', missingVersions: report.missingVersions }));
    } catch (error) {
      report.missingVersions = { error: errorToShape(error) };
    }
  }
  if (!report.database.reachable || !schemaOk) {
    report.status = 'unhealthy';
    context.warn(JSON.stringify({ event: 'coremachine.health', ...report }));
  }
  return report;
}

/** The anonymous answer: what a load balancer needs, with a generic reason and no error text. */
export interface PublicHealthReport {
  status: 'healthy' | 'unhealthy';
  database: { reachable: boolean };
  schema: SchemaReport | null;
  transport: string | null;
  reason?: string;
}

function publicReport(report: HealthReport): PublicHealthReport {
  const schema = report.schema !== null && 'upToDate' in report.schema ? report.schema : null;
  const answer: PublicHealthReport = { status: report.status, database: { reachable: report.database.reachable }, schema, transport: report.transport };
  if (report.status === 'unhealthy') {
    const what = report.error
      ? 'CoreMachine could not start'
      : !report.database.reachable
        ? 'the database cannot be reached'
        : 'the database schema is not the version this code needs';
    answer.reason = `${what}; the details are logged and shown by GET /api/health/details with the function key`;
  }
  return answer;
}

function respond<T>(report: HealthReport, body: T): HttpResponseInit {
  return report.status === 'healthy' ? { status: 200, jsonBody: body } : { status: 503, headers: RETRY_LATER, jsonBody: body };
}

/** GET health (anonymous): database reachable, schema version, transport. 200 when all is well, else 503. */
export async function healthHandler(_request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const report = await checkHealth(context, false);
  return respond(report, publicReport(report));
}

/** GET health/details (function key): the same probe with the errors that explain a 503. */
export async function healthDetailsHandler(_request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const report = await checkHealth(context, true);
  return respond(report, report);
}

export const healthRoutes: HttpRoute[] = [
  { name: 'health', methods: ['GET'], authLevel: 'anonymous', route: 'health', handler: healthHandler },
  { name: 'health-details', methods: ['GET'], authLevel: 'function', route: 'health/details', handler: healthDetailsHandler },
];
