import { defineSchedule } from 'coremachine';

/**
 * One example, declared paused: a deployment of the example app should not start making jobs on
 * its own, but an operator can see the schedule in `GET /api/schedules` and try it with
 * `coremachine schedule resume hello_world_hourly`. Declare yours the same way, unpaused.
 */
export const helloWorldHourly = defineSchedule({
  name: 'hello_world_hourly',
  cron: '0 * * * *',
  timezone: 'UTC',
  jobType: 'hello_world',
  parameters: { n: 10 },
  paused: true,
});
