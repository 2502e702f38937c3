// The one place that registers with the Functions host. The other files only export handlers and
// route tables, so `coremachine dev` can serve the same routes without a host, and the host can
// load every dist/functions/*.js (package.json "main") without registering anything twice.
import { startTelemetry } from './telemetry-setup';
import { controlRoutes } from './http-control';
import { dashboardRoutes } from './http-dashboard';
import { deleteRoutes } from './http-delete';
import { healthRoutes } from './http-health';
import { jobRoutes } from './http-jobs';
import { scheduleRoutes } from './http-schedules';
import { workerRoutes } from './http-workers';
import { registerHttpRoutes, type HttpRoute } from './http-route';
import { registerServiceBusTriggers } from './servicebus-triggers';
import { registerJanitorTimer } from './timer-janitor';

export const httpRoutes: HttpRoute[] = [...jobRoutes, ...controlRoutes, ...healthRoutes, ...dashboardRoutes, ...workerRoutes, ...scheduleRoutes, ...deleteRoutes];

startTelemetry();
registerHttpRoutes(httpRoutes);
registerServiceBusTriggers();
registerJanitorTimer();
