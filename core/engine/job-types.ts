import { z } from 'zod';
import { isSignalStage, JobSubmissionMessage, SignalMessage, SubmissionReceipt, type AnyJobDefinition } from '../../models';
import type { Registry } from '../registry';
import type { VersionInUse } from './versions';

/** A JSON Schema document, as zod emits it. */
export type JsonSchema = Record<string, unknown>;

/** One registered job type as a producer in any language needs it: what to send, and what it runs. */
export interface JobTypeDescription {
  jobType: string;
  /** Which version of the type this describes; a submission runs the newest unless it names one. */
  version: number;
  /** Whether this is the newest registered version of the type. */
  newest: boolean;
  description: string;
  /** The job's own deadline, when its type declares one. */
  timeoutSeconds: number | null;
  stages: Array<
    { stage: number; name: string; kind: 'tasks'; taskType: string; remote: boolean } | { stage: number; name: string; kind: 'signal'; signal: string }
  >;
  /** JSON Schema of the parameters a submission must carry (the input the type's zod schema accepts). */
  parameters: JsonSchema;
  /** The signals its stages wait for, with the JSON Schema of each payload. */
  signals: Array<{ name: string; stage: number; payload: JsonSchema }>;
}

/** What GET /api/job-types answers: every job type, and the message shapes of the submissions queue. */
export interface JobTypeCatalogue {
  /** One entry per registered version of each type: by type name, newest version first. */
  jobTypes: JobTypeDescription[];
  /** JSON Schemas of the submissions queue's two message kinds and of the receipt sent to `replyTo`. */
  messages: { submission: JsonSchema; signal: JsonSchema; receipt: JsonSchema };
  /** The versions unfinished jobs run, registered or not (a version no longer registered leaves its jobs waiting). */
  versionsInUse: VersionInUse[];
}

/** zod's JSON Schema of what a schema accepts; anything it cannot express (a custom check) is left open. */
function jsonSchemaOf(schema: z.ZodType): JsonSchema {
  return z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' });
}

function describe(definition: AnyJobDefinition, newest: boolean): JobTypeDescription {
  const stages = definition.stages.map((stage, index) =>
    isSignalStage(stage)
      ? { stage: index + 1, name: stage.name, kind: 'signal' as const, signal: stage.signal.name }
      : { stage: index + 1, name: stage.name, kind: 'tasks' as const, taskType: stage.task.type, remote: stage.task.execution === 'remote' },
  );
  const signals = definition.stages.flatMap((stage, index) =>
    isSignalStage(stage) ? [{ name: stage.signal.name, stage: index + 1, payload: jsonSchemaOf(stage.signal.payload) }] : [],
  );
  return {
    jobType: definition.type,
    version: definition.version,
    newest,
    description: definition.description,
    timeoutSeconds: definition.timeoutSeconds ?? null,
    stages,
    parameters: jsonSchemaOf(definition.parameters),
    signals,
  };
}

/** Every registered version of every job type, sorted by name, with the submissions queue's message schemas. */
export function jobTypeCatalogue(registry: Registry): Omit<JobTypeCatalogue, 'versionsInUse'> {
  return {
    jobTypes: registry
      .jobTypes()
      .sort()
      .flatMap((type) => {
        const versions = registry.versionsOf(type).reverse();
        return versions.map((version, index) => describe(registry.job(type, version), index === 0));
      }),
    messages: {
      submission: jsonSchemaOf(JobSubmissionMessage),
      signal: jsonSchemaOf(SignalMessage),
      receipt: z.toJSONSchema(SubmissionReceipt, { io: 'output' }),
    },
  };
}
