import type pg from 'pg';
import { z } from 'zod';
import { CoreMachine } from '../core/engine/core-machine';
import { DuplicateRegistrationError, ScheduleNotFoundError, UnknownJobTypeError, ValidationError } from '../core/errors';
import { createLogger } from '../core/logger';
import { Registry } from '../core/registry';
import { tickKey } from '../core/schedules/schedules';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { defineJob, defineSchedule, defineTask, type ScheduleDefinition, type ScheduleOptions } from '../models';
import { useTestDatabase } from './support/harness';

// Schedules only submit jobs; no worker runs them here, so jobs stay QUEUED by design and the
// usual "nothing left QUEUED" check does not apply. What is asserted is which jobs exist.
const db = useTestDatabase({ checkAfterEach: false });

const noop = defineTask({ type: 'test.sched.noop', parameters: z.object({}), handler: () => Promise.resolve({}) });
const report = defineJob({ type: 'test.sched_report', parameters: z.object({ region: z.string() }) })
  .stage({ name: 'only', task: noop, fanOut: () => [{}] })
  .finalize(() => ({ ok: true }));

let clock = new Date('2026-01-05T10:30:00Z');
const at = (iso: string) => {
  clock = new Date(iso);
};
const engines: Array<{ machine: CoreMachine; transport: InProcessTransport }> = [];

afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.transport.close()));
});

/** An engine with its own registry (and, when given, its own pool) on the shared fake clock. */
async function engine(schedules: ScheduleDefinition[], options: { pool?: pg.Pool; catchUpSeconds?: number } = {}): Promise<CoreMachine> {
  const registry = new Registry().register(report).registerSchedule(...schedules);
  const transport = new InProcessTransport();
  const machine = await CoreMachine.create({
    pool: options.pool ?? db.pool,
    registry,
    transport,
    logger: createLogger('silent'),
    schedules: { now: () => clock, catchUpSeconds: options.catchUpSeconds },
  });
  engines.push({ machine, transport });
  return machine;
}

let counter = 0;
/** Every test declares its own schedule names, so state in the shared database never collides. */
function schedule(options: Partial<ScheduleOptions> = {}): ScheduleDefinition {
  return defineSchedule({ name: `s${++counter}`, cron: '0 * * * *', timezone: 'UTC', jobType: 'test.sched_report', parameters: { region: 'eu' }, ...options });
}

async function jobsOf(name: string): Promise<Array<{ key: string; jobId: string }>> {
  const result = await db.pool.query<{ idempotency_key: string; job_id: string }>(
    'SELECT idempotency_key, job_id FROM coremachine.jobs WHERE idempotency_key LIKE $1 ORDER BY idempotency_key',
    [`schedule:${name}:%`],
  );
  return result.rows.map((row) => ({ key: row.idempotency_key, jobId: row.job_id }));
}
const firedTicks = async (name: string) => (await jobsOf(name)).map((j) => j.key.slice(`schedule:${name}:`.length));

/** Moves the clock from `from` to `to` in steps, sweeping at every step, as the janitor timer would. */
async function run(machine: CoreMachine, from: string, to: string, stepMinutes: number): Promise<void> {
  for (let t = new Date(from).getTime(); t <= new Date(to).getTime(); t += stepMinutes * 60_000) {
    clock = new Date(t);
    await machine.schedules.sweep();
  }
}

describe('declaring schedules', () => {
  test('name and timezone are checked where the schedule is defined, the cron when it is registered', () => {
    const base = { name: 'ok', cron: '0 * * * *', timezone: 'UTC', jobType: 'test.sched_report', parameters: { region: 'eu' } };
    const register = (options: Partial<ScheduleOptions>) => () => new Registry().register(report).registerSchedule(defineSchedule({ ...base, ...options }));
    expect(() => defineSchedule({ ...base, name: 'Bad Name' })).toThrow(/schedule name must match/);
    expect(register({ cron: '61 * * * *' })).toThrow(/schedule "ok": cron "61 \* \* \* \*" is not valid: .*minute/);
    expect(register({ cron: 'every hour' })).toThrow(/is not valid/);
    expect(register({ cron: '0 0 30 2 *' })).toThrow(/never fires/);
    expect(register({})).not.toThrow();
    expect(() => defineSchedule({ ...base, timezone: 'Mars/Olympus_Mons' })).toThrow(/IANA time zone/);
    expect(() => defineSchedule({ ...base, catchUpSeconds: 0 })).toThrow(/catchUpSeconds/);
    expect(defineSchedule(base)).toMatchObject({ kind: 'schedule', name: 'ok', paused: false, catchUpSeconds: undefined });
  });

  test('registration checks the job type and its parameters, and refuses a second definition of a name', () => {
    const registry = new Registry().register(report);
    expect(() => registry.registerSchedule(schedule({ jobType: 'no_such_job' }))).toThrow(UnknownJobTypeError);
    expect(() => registry.registerSchedule(schedule({ parameters: { region: 7 } }))).toThrow(ValidationError);
    // Parameters PostgreSQL cannot store fail at startup too, not at every tick.
    expect(() => registry.registerSchedule(schedule({ parameters: { region: 'e\u0000u' } }))).toThrow(/parameters of schedule .*region: string contains a NUL/);
    const options = { name: `s${++counter}`, cron: '0 * * * *', timezone: 'UTC', jobType: 'test.sched_report', parameters: { region: 'eu' } };
    const one = defineSchedule(options);
    registry.registerSchedule(one, one);
    expect(() => registry.registerSchedule(defineSchedule({ ...options, catchUpSeconds: 60 }))).toThrow(DuplicateRegistrationError);
    expect(() => registry.schedule('nope')).toThrow(ScheduleNotFoundError);
  });
});

describe('firing', () => {
  test('an hourly schedule fires once per tick through many ticks, with the tick in the idempotency key', async () => {
    const hourly = schedule();
    const machine = await engine([hourly]);
    at('2026-01-05T10:30:00Z');
    await machine.schedules.sweep();
    // A schedule seen for the first time starts from now: 10:00 was before it existed.
    expect(await firedTicks(hourly.name)).toEqual([]);
    await run(machine, '2026-01-05T10:45:00Z', '2026-01-05T16:10:00Z', 5);
    expect(await firedTicks(hourly.name)).toEqual(['11:00', '12:00', '13:00', '14:00', '15:00', '16:00'].map((t) => `2026-01-05T${t}:00.000Z`));
    const [view] = await machine.schedules.list();
    const last = (await jobsOf(hourly.name)).at(-1);
    expect(view).toMatchObject({
      name: hourly.name,
      cron: '0 * * * *',
      timezone: 'UTC',
      paused: false,
      lastFireAt: new Date('2026-01-05T16:00:00Z'),
      nextFireAt: new Date('2026-01-05T17:00:00Z'),
      lastJobId: last?.jobId,
      lastJobStatus: 'QUEUED',
    });
    const job = await machine.getJob(last?.jobId ?? '');
    expect(job).toMatchObject({
      jobType: 'test.sched_report',
      parameters: { region: 'eu' },
      idempotencyKey: tickKey(hourly.name, new Date('2026-01-05T16:00:00Z')),
    });
  });

  test('0 2 * * * in Europe/Berlin across both DST changes: the missing 02:00 runs at 03:00 CEST, the repeated 02:00 runs once', async () => {
    const nightly = schedule({ cron: '0 2 * * *', timezone: 'Europe/Berlin' });
    const machine = await engine([nightly]);
    await run(machine, '2026-03-27T12:00:00Z', '2026-03-31T12:00:00Z', 60);
    expect(await firedTicks(nightly.name)).toEqual([
      '2026-03-28T01:00:00.000Z', // 02:00 CET
      '2026-03-29T01:00:00.000Z', // clocks jump 02:00 → 03:00: croner runs the fixed-time job at 03:00 CEST, same day
      '2026-03-30T00:00:00.000Z', // 02:00 CEST
      '2026-03-31T00:00:00.000Z',
    ]);
    await run(machine, '2026-10-23T12:00:00Z', '2026-10-27T12:00:00Z', 60);
    expect((await firedTicks(nightly.name)).slice(4)).toEqual([
      // The catch-up from March to October (a long downtime) fired the latest due tick once first.
      '2026-10-23T00:00:00.000Z',
      '2026-10-24T00:00:00.000Z', // 02:00 CEST
      '2026-10-25T00:00:00.000Z', // 02:00 occurs twice (CEST, then CET at 01:00Z): fired once, at the first
      '2026-10-26T01:00:00.000Z', // 02:00 CET
      '2026-10-27T01:00:00.000Z',
    ]);
  });

  test('an interval cron (30 * * * *) in Europe/Berlin runs in both passes of the repeated hour', async () => {
    const halfPast = schedule({ cron: '30 * * * *', timezone: 'Europe/Berlin' });
    const machine = await engine([halfPast]);
    await run(machine, '2026-10-24T22:50:00Z', '2026-10-25T03:40:00Z', 10);
    // Local 00:30, 01:30, 02:30 CEST, 02:30 CET, 03:30, 04:30: one tick per real hour, none lost or doubled.
    expect(await firedTicks(halfPast.name)).toEqual(['23:30', '00:30', '01:30', '02:30', '03:30'].map((t, i) => `2026-10-2${i === 0 ? 4 : 5}T${t}:00.000Z`));
  });

  test('two engines with separate pools sweeping the same ticks concurrently make exactly one job per tick', async () => {
    const hourly = schedule();
    const engineCount = 4;
    const machines = await Promise.all(Array.from({ length: engineCount }, () => engine([hourly], { pool: db.newPool(3) })));
    at('2026-02-01T00:30:00Z');
    await Promise.all(machines.map((m) => m.schedules.sweep()));
    const reports = [];
    for (let hour = 1; hour <= 12; hour++) {
      at(new Date(Date.UTC(2026, 1, 1, hour, 0, 5)).toISOString());
      // Every engine sweeps twice at once: eight sweeps race for each tick.
      reports.push(...(await Promise.all([...machines, ...machines].map((m) => m.schedules.sweep()))));
    }
    const jobs = await jobsOf(hourly.name);
    expect(jobs).toHaveLength(12);
    expect(new Set(jobs.map((j) => j.jobId)).size).toBe(12);
    // The compare-and-set on the cursor let exactly one sweep record each tick.
    const fired = reports.flatMap((r) => r.fired);
    expect(fired).toHaveLength(12);
    expect(new Set(fired.map((f) => f.tick.toISOString())).size).toBe(12);
    const events = await machines[0]?.schedules.events(hourly.name);
    expect(events?.filter((e) => e.to === 'FIRED')).toHaveLength(12);
    expect(events?.filter((e) => e.to === 'SKIPPED')).toEqual([]);
  });

  test('a crash between submitting a tick and recording it: the next sweep finds the same job and records it once', async () => {
    const hourly = schedule();
    const machine = await engine([hourly]);
    at('2026-03-02T08:30:00Z');
    await machine.schedules.sweep();
    // What a sweep that died right after its submit left behind: the job, and an unmoved cursor.
    const orphan = await machine.submitJob('test.sched_report', { region: 'eu' }, { idempotencyKey: tickKey(hourly.name, new Date('2026-03-02T09:00:00Z')) });
    at('2026-03-02T09:01:00Z');
    const swept = await machine.schedules.sweep();
    expect(swept.fired).toEqual([{ name: hourly.name, tick: new Date('2026-03-02T09:00:00Z'), jobId: orphan.job.jobId, created: false }]);
    expect(await jobsOf(hourly.name)).toEqual([{ key: tickKey(hourly.name, new Date('2026-03-02T09:00:00Z')), jobId: orphan.job.jobId }]);
  });
});

describe('catch-up', () => {
  test('after downtime the latest missed tick fires once, never N times, and the older ones are recorded as skipped', async () => {
    const hourly = schedule();
    const machine = await engine([hourly]);
    at('2026-04-01T10:30:00Z');
    await machine.schedules.sweep();
    at('2026-04-01T15:20:00Z'); // down from 10:30 to 15:20: 11:00 … 15:00 missed
    const swept = await machine.schedules.sweep();
    expect(swept.fired.map((f) => f.tick)).toEqual([new Date('2026-04-01T15:00:00Z')]);
    expect(swept.skipped).toEqual([
      { name: hourly.name, first: new Date('2026-04-01T11:00:00Z'), last: new Date('2026-04-01T14:00:00Z'), count: 4, countCapped: false },
    ]);
    at('2026-04-01T15:40:00Z');
    expect((await machine.schedules.sweep()).fired).toEqual([]);
    expect(await firedTicks(hourly.name)).toEqual(['2026-04-01T15:00:00.000Z']);
    const trail = await machine.schedules.events(hourly.name);
    expect(trail.map((e) => e.to)).toEqual(['SKIPPED', 'FIRED']);
    expect(trail[0]?.detail).toMatchObject({ first: '2026-04-01T11:00:00.000Z', last: '2026-04-01T14:00:00.000Z', count: 4 });
  });

  test('an every-second schedule after two hours away fires once and counts its skipped ticks only so far', async () => {
    const everySecond = schedule({ cron: '* * * * * *' });
    const machine = await engine([everySecond]);
    at('2026-04-05T08:00:00.500Z');
    await machine.schedules.sweep();
    at('2026-04-05T10:00:00.500Z');
    const swept = await machine.schedules.sweep();
    expect(swept.fired.map((f) => f.tick)).toEqual([new Date('2026-04-05T10:00:00Z')]);
    expect(swept.skipped[0]).toMatchObject({ first: new Date('2026-04-05T08:00:01Z'), last: new Date('2026-04-05T09:59:59Z'), count: 1000, countCapped: true });
  });

  test("a tick older than the schedule's catch-up window is skipped, not fired late; the next tick fires on time", async () => {
    const strict = schedule({ catchUpSeconds: 600 });
    const machine = await engine([strict]);
    at('2026-04-02T10:30:00Z');
    await machine.schedules.sweep();
    at('2026-04-02T15:20:00Z'); // 15:00 is 20 minutes late: outside a 10-minute window
    const swept = await machine.schedules.sweep();
    expect(swept.fired).toEqual([]);
    expect(swept.skipped[0]).toMatchObject({ first: new Date('2026-04-02T11:00:00Z'), last: new Date('2026-04-02T15:00:00Z'), count: 5 });
    at('2026-04-02T16:05:00Z');
    expect((await machine.schedules.sweep()).fired.map((f) => f.tick)).toEqual([new Date('2026-04-02T16:00:00Z')]);
    expect(await firedTicks(strict.name)).toEqual(['2026-04-02T16:00:00.000Z']);
  });

  test("the global window applies to schedules without their own; a schedule's own window wins", async () => {
    const usesGlobal = schedule();
    const ownWindow = schedule({ catchUpSeconds: 2 * 3600 });
    const machine = await engine([usesGlobal, ownWindow], { catchUpSeconds: 600 });
    at('2026-04-03T10:30:00Z');
    await machine.schedules.sweep();
    at('2026-04-03T12:20:00Z');
    await machine.schedules.sweep();
    expect(await firedTicks(usesGlobal.name)).toEqual([]);
    expect(await firedTicks(ownWindow.name)).toEqual(['2026-04-03T12:00:00.000Z']);
  });

  test("a changed cron realigns the stored cursor instead of waiting for the old pattern's tick", async () => {
    const name = `s${++counter}`;
    const options = { name, cron: '0 * * * *', timezone: 'UTC', jobType: 'test.sched_report', parameters: { region: 'eu' } };
    at('2026-04-04T10:31:00Z');
    await (await engine([defineSchedule(options)])).schedules.sweep();
    const v2 = defineSchedule({ ...options, cron: '*/15 * * * *' });
    const redeployed = await engine([v2]);
    at('2026-04-04T10:32:00Z');
    await redeployed.schedules.sweep();
    expect((await redeployed.schedules.get(name)).nextFireAt).toEqual(new Date('2026-04-04T10:45:00Z'));
    at('2026-04-04T10:46:00Z');
    await redeployed.schedules.sweep();
    expect(await firedTicks(name)).toEqual(['2026-04-04T10:45:00.000Z']);
  });
});

describe('pause and resume', () => {
  test('a schedule declared paused fires nothing and shows no next fire', async () => {
    const held = schedule({ paused: true });
    const machine = await engine([held]);
    await run(machine, '2026-05-01T10:30:00Z', '2026-05-01T16:00:00Z', 15);
    expect(await firedTicks(held.name)).toEqual([]);
    expect(await machine.schedules.get(held.name)).toMatchObject({ paused: true, nextFireAt: null, lastFireAt: null, lastJobId: null });
  });

  test('pause stops firing; resume does not fire the ticks missed while paused beyond the catch-up window; both are audited', async () => {
    const hourly = schedule({ catchUpSeconds: 600 });
    const machine = await engine([hourly]);
    await run(machine, '2026-05-02T10:30:00Z', '2026-05-02T11:05:00Z', 5);
    expect(await firedTicks(hourly.name)).toEqual(['2026-05-02T11:00:00.000Z']);
    at('2026-05-02T11:10:00Z');
    expect(await machine.schedules.pause(hourly.name)).toMatchObject({ paused: true, nextFireAt: null });
    await machine.schedules.pause(hourly.name); // already paused: no second event
    await run(machine, '2026-05-02T11:15:00Z', '2026-05-02T15:20:00Z', 5);
    expect(await firedTicks(hourly.name)).toEqual(['2026-05-02T11:00:00.000Z']);
    at('2026-05-02T15:20:00Z');
    await machine.schedules.resume(hourly.name);
    await run(machine, '2026-05-02T15:20:00Z', '2026-05-02T16:05:00Z', 5);
    // 12:00 … 15:00 were missed while paused, 15:00 by 20 minutes: none of them fires; 16:00 does.
    expect(await firedTicks(hourly.name)).toEqual(['2026-05-02T11:00:00.000Z', '2026-05-02T16:00:00.000Z']);
    const trail = await machine.schedules.events(hourly.name);
    expect(trail.map((e) => [e.from, e.to])).toEqual([
      [null, 'FIRED'],
      ['ACTIVE', 'PAUSED'],
      ['PAUSED', 'ACTIVE'],
      [null, 'SKIPPED'],
      [null, 'FIRED'],
    ]);
    expect(trail[3]?.detail).toMatchObject({ count: 4, first: '2026-05-02T12:00:00.000Z', last: '2026-05-02T15:00:00.000Z' });
  });

  test('with the default window, resume fires the latest tick missed while paused once', async () => {
    const hourly = schedule();
    const machine = await engine([hourly]);
    at('2026-05-03T10:30:00Z');
    await machine.schedules.pause(hourly.name);
    await run(machine, '2026-05-03T10:30:00Z', '2026-05-03T14:30:00Z', 30);
    at('2026-05-03T14:40:00Z');
    await machine.schedules.resume(hourly.name);
    await run(machine, '2026-05-03T14:40:00Z', '2026-05-03T14:55:00Z', 5);
    expect(await firedTicks(hourly.name)).toEqual(['2026-05-03T14:00:00.000Z']);
  });

  test('pausing an undeclared schedule is ScheduleNotFoundError, naming the declared ones', async () => {
    const one = schedule();
    const machine = await engine([one]);
    await expect(machine.schedules.pause('nope')).rejects.toThrow(new ScheduleNotFoundError('nope', [one.name]));
  });
});

test('the janitor sweep runs the schedules: one call, reported with the sweep', async () => {
  const hourly = schedule();
  const machine = await engine([hourly]);
  at('2026-06-01T10:30:00Z');
  await machine.sweep();
  at('2026-06-01T11:00:30Z');
  const swept = await machine.sweep();
  expect(swept.schedules?.fired.map((f) => f.tick)).toEqual([new Date('2026-06-01T11:00:00Z')]);
});
