import { z } from 'zod';
import { exampleRegistry } from '../bin/cli/example-registry';
import { Registry } from '../core/registry';
import { registration } from '../jobs';
import { defineJob, defineSchedule, defineTask } from '../models';
import { appRegistry } from './support/registry';

const echo = defineTask({ type: 'registration_test.echo', parameters: z.object({ n: z.number() }), handler: ({ n }) => Promise.resolve({ n }) });
const testJob = defineJob({ type: 'registration_test', parameters: z.object({ n: z.number() }) })
  .stage({ name: 'echo', task: echo, fanOut: ({ parameters }) => [{ n: parameters.n }] })
  .finalize(() => Promise.resolve({ ok: true }));

const shippedTypes = registration.jobs.map((job) => job.type).sort();
const shippedSchedules = registration.schedules.map((schedule) => schedule.name).sort();

test('the CLI and the tests register exactly what jobs/index.ts declares', () => {
  expect(shippedTypes.length).toBeGreaterThan(0);
  for (const registry of [exampleRegistry(), appRegistry(), Registry.from(registration)]) {
    expect(registry.jobTypes()).toEqual(shippedTypes);
    expect(registry.schedules().map((schedule) => schedule.name)).toEqual(shippedSchedules);
  }
});

test("a test's own job types and schedules go on top of the registration", () => {
  const nightly = defineSchedule({ name: 'registration_test_nightly', cron: '0 2 * * *', timezone: 'UTC', jobType: 'registration_test', parameters: { n: 1 } });
  const registry = Registry.from(registration, { jobs: [testJob], schedules: [nightly] });
  expect(registry.jobTypes()).toEqual([...shippedTypes, 'registration_test'].sort());
  expect(registry.schedule('registration_test_nightly')).toMatchObject({ name: nightly.name, jobType: 'registration_test' });
  expect(appRegistry(testJob).hasTask('registration_test.echo')).toBe(true);
});

test('extra schedules are checked against every registered job, the extra ones included', () => {
  const orphan = defineSchedule({ name: 'registration_test_orphan', cron: '0 2 * * *', timezone: 'UTC', jobType: 'no_such_job', parameters: {} });
  expect(() => Registry.from(registration, { schedules: [orphan] })).toThrow(/no_such_job/);
});
