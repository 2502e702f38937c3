/**
 * `coremachine`: declare jobs, tasks and schedules, and run them in a Node process.
 * The Functions app registers them with `coremachine/azure-functions`; tests run them with
 * `coremachine/testing`. Nothing else of the package is reachable by import.
 */
import { Registry } from '../core/registry';
import type { AnyJobDefinition, Registration, ScheduleDefinition } from '../models';

// Declaring work.
export { defineJob, defineTask, defineRemoteTask, defineSchedule, TaskFailure } from '../models';
export type {
  AnyJobDefinition,
  AnyTaskDefinition,
  FanOutContext,
  FinalizeContext,
  JobBuilder,
  JobDefinition,
  Registration,
  RetryPolicy,
  ScheduleDefinition,
  ScheduleOptions,
  StageFailurePolicy,
  StageResults,
  TaskConcurrency,
  TaskContext,
  TaskDefinition,
  TaskLogLevel,
  TaskRate,
  TaskSpecs,
} from '../models';

// What the engine reports back.
export type {
  BulkAction,
  BulkOutcome,
  BulkRequest,
  ControlAction,
  ErrorShape,
  EventRecord,
  JobEvent,
  JobEventType,
  JobRecord,
  JobStatus,
  JobView,
  RerunOutcome,
  RerunRequest,
  ScheduleView,
  StageProgress,
  StageStatus,
  TaskLogLine,
  TaskLogPage,
  TaskRecord,
  TaskStatus,
} from '../models';

// The errors the engine raises: `error.type` is the class name; recognise them with instanceof
// (they come from this package), a handler's own failure with TaskFailure.is().
export {
  ConfigurationError,
  CoreMachineError,
  DeadlineExceededError,
  DuplicateRegistrationError,
  FanOutError,
  FinalizeError,
  InvalidTransitionError,
  JobNotFoundError,
  LeaseExpiredError,
  LeaseLostError,
  MalformedMessageError,
  RerunRefusedError,
  ScheduleNotFoundError,
  SchemaVersionError,
  SignalRefusedError,
  TaskHandlerError,
  TaskNotFoundError,
  TaskValidationError,
  UnknownJobTypeError,
  UnknownTaskTypeError,
  ValidationError,
} from '../core/errors';

// Running it in a Node process.
export { createCoreMachine } from './node-host';
export type { CoreMachineHost, CoreMachineOptions, SubmitOptions, SweepReport, WaitOptions } from './node-host';
export type { EngineSettings, FunctionsSettings, LocalSettings } from '../core/config-options';

/**
 * The app's one registration: its job types and the schedules that submit them. Checked here, where
 * it is declared: a job or task type defined twice, a schedule whose cron never fires, names an
 * unknown job type or whose parameters that type refuses, each throws at once (and so fails the
 * app's tests), not when a host starts. Every host — registerCoreMachine, createCoreMachine,
 * `coremachine dev`, coremachine/testing — takes the value this returns.
 */
export function defineRegistration(registration: { jobs: readonly AnyJobDefinition[]; schedules?: readonly ScheduleDefinition[] }): Registration {
  const checked: Registration = Object.freeze({ jobs: Object.freeze([...registration.jobs]), schedules: Object.freeze([...(registration.schedules ?? [])]) });
  Registry.from(checked);
  return checked;
}
