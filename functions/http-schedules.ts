import type { HttpRoute } from './http-route';
import { getAppContext } from './app-context';
import { withErrors, type Handler } from './http-errors';

/** GET schedules: every declared schedule with its cron, timezone, paused, next/last fire and last job. */
export const listSchedulesHandler: Handler = withErrors(async () => {
  const { machine } = await getAppContext();
  return { status: 200, jsonBody: { schedules: await machine.schedules.list() } };
});

/** POST schedules/{name}/pause|resume: 200 + the schedule; 404 when no schedule has that name. Audited in the event trail. */
export const controlScheduleHandler: Handler = withErrors(async (request) => {
  const { machine } = await getAppContext();
  const name = request.params.name ?? '';
  const schedule = request.params.action === 'pause' ? await machine.schedules.pause(name) : await machine.schedules.resume(name);
  return { status: 200, jsonBody: schedule };
});

export const scheduleRoutes: HttpRoute[] = [
  { name: 'schedules-list', methods: ['GET'], authLevel: 'function', route: 'schedules', handler: listSchedulesHandler },
  {
    name: 'schedules-control',
    methods: ['POST'],
    authLevel: 'function',
    route: 'schedules/{name}/{action:regex(^(pause|resume)$)}',
    handler: controlScheduleHandler,
  },
];
