import { jobStatusesLeadingTo, type JOB_STATUSES } from './status-values';

type Job = (typeof JOB_STATUSES)[number];

export const CONTROL_ACTION_NAMES = ['cancel', 'pause', 'resume', 'retry'] as const;
export type ControlAction = (typeof CONTROL_ACTION_NAMES)[number];

export interface ControlActionRule {
  /** The job status the action moves the job to. */
  readonly to: Job;
  /** The job statuses the action applies to; any other answers 409. */
  readonly from: readonly Job[];
}

/**
 * The operator actions on a job and the statuses each applies to, read off the job transition
 * table: cancel and pause apply wherever the table allows CANCELLED or PAUSED. Resume and retry
 * both lead to QUEUED, which the engine itself also reaches (stage advance), so each names the one
 * status it starts from; a test checks that every pair is a transition the table allows.
 * Zod-free, so the dashboard's browser bundle reads it too.
 */
export const CONTROL_ACTIONS: Readonly<Record<ControlAction, ControlActionRule>> = {
  cancel: { to: 'CANCELLED', from: jobStatusesLeadingTo('CANCELLED') },
  pause: { to: 'PAUSED', from: jobStatusesLeadingTo('PAUSED') },
  resume: { to: 'QUEUED', from: ['PAUSED'] },
  retry: { to: 'QUEUED', from: ['FAILED'] },
};

export function isControlAction(name: string): name is ControlAction {
  return (CONTROL_ACTION_NAMES as readonly string[]).includes(name);
}

/** The control actions a job in `status` accepts, in CONTROL_ACTION_NAMES order. */
export function allowedControlActions(status: Job): ControlAction[] {
  return CONTROL_ACTION_NAMES.filter((action) => CONTROL_ACTIONS[action].from.includes(status));
}
