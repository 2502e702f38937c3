import { app, type InvocationContext, type Timer } from '@azure/functions';
import { getAppContext } from './app-context';
import type { FunctionsApp } from './http-route';

/**
 * JANITOR_SCHEDULE (NCRONTAB, six fields): every 20 s in the Bicep and the example settings, so a
 * task whose host died (a 30 s default lease) is re-queued within a minute.
 */
export const JANITOR_SCHEDULE = '%JANITOR_SCHEDULE%';

/**
 * The janitor sweep on a timer: expired leases retried or failed, undispatched outbox rows sent,
 * stalled jobs explained and given back lost messages. Sweeps are safe to overlap (SKIP LOCKED),
 * so several instances firing at once do no harm. A failed sweep throws: the host records the
 * failure and the next tick runs it again.
 */
export async function janitorHandler(_timer: Timer, context: InvocationContext): Promise<void> {
  const { machine, config } = await getAppContext();
  const report = await machine.sweep(config.janitor);
  const found = report.requeuedTasks + report.failedTasks + report.timedOutJobs + report.outboxSent + report.stalled.length;
  const line = JSON.stringify({ event: 'coremachine.janitor.sweep', ...report });
  if (found > 0) context.warn(line);
  else context.log(line);
}

/** `schedule`: NCRONTAB (six fields) or `%APP_SETTING%` naming the app setting that holds it. */
export function registerJanitorTimer(target: FunctionsApp = app, schedule: string = JANITOR_SCHEDULE): void {
  target.timer('janitor', { schedule, runOnStartup: false, handler: janitorHandler });
}
