// The one place that registers with the Functions host. The other files only export handlers and
// route tables (functions/routes.ts gathers them), so `coremachine dev` can serve the same routes without a host, and the host can
// load every dist/functions/*.js (package.json "main") without registering anything twice.
import { app } from '@azure/functions';
import { closeAppContext } from './app-context';
import { startTelemetry } from './telemetry-setup';
import { registerHttpRoutes } from './http-route';
import { httpRoutes } from './routes';
import { registerServiceBusTriggers } from './servicebus-triggers';
import { registerJanitorTimer } from './timer-janitor';

startTelemetry();
registerHttpRoutes(httpRoutes);
registerServiceBusTriggers();
registerJanitorTimer();
// Graceful shutdown (scale-in, deployment): give the pool's connections and the Service Bus
// links back. The host skips this on a forced stop, which the server-side timeouts cover.
app.hook.appTerminate(() => closeAppContext());
