import { bulkRoutes } from './http-bulk';
import { controlRoutes } from './http-control';
import { dashboardRoutes } from './http-dashboard';
import { deleteRoutes } from './http-delete';
import { healthRoutes } from './http-health';
import { jobRoutes } from './http-jobs';
import { payloadRoutes } from './http-payloads';
import { rerunRoutes } from './http-rerun';
import { jobTypeRoutes } from './http-job-types';
import { scheduleRoutes } from './http-schedules';
import { signalRoutes } from './http-signals';
import { taskLogRoutes } from './http-task-logs';
import { workerRoutes } from './http-workers';
import type { HttpRoute } from './http-route';

/**
 * The HTTP API: every route, once. functions/index.ts registers this table with the Functions host
 * and `coremachine dev` serves it, so a route added here reaches both (tests/route-table.test.ts
 * compares them). Importing it registers nothing: a new route goes in its http-*.ts file's array,
 * and a new file's array goes here.
 */
export const httpRoutes: readonly HttpRoute[] = Object.freeze([
  ...jobRoutes,
  ...controlRoutes,
  ...healthRoutes,
  ...dashboardRoutes,
  ...workerRoutes,
  ...scheduleRoutes,
  ...deleteRoutes,
  ...signalRoutes,
  ...jobTypeRoutes,
  ...payloadRoutes,
  ...taskLogRoutes,
  ...rerunRoutes,
  ...bulkRoutes,
]);
