import type { Queryable } from '../db/pool';

/** The state of a declared schedule (the declaration itself lives in code). */
export interface ScheduleRow {
  name: string;
  paused: boolean;
  /** The cursor: the first tick not yet fired or skipped; null once the pattern has no more. */
  next_fire_at: Date | null;
  last_fire_at: Date | null;
  last_job_id: string | null;
  last_job_status: string | null;
}

export interface ScheduleEvent {
  id: number;
  schedule: string;
  from: string | null;
  to: string;
  detail: unknown;
  at: Date;
}

/** Creates the rows of schedules seen for the first time; existing rows (operator state) are kept. */
export async function ensureSchedules(db: Queryable, schedules: ReadonlyArray<{ name: string; paused: boolean; nextFireAt: Date | null }>): Promise<void> {
  if (schedules.length === 0) return;
  await db.query(
    `INSERT INTO coremachine.schedules (name, paused, next_fire_at)
     SELECT * FROM unnest($1::text[], $2::boolean[], $3::timestamptz[])
     ON CONFLICT (name) DO NOTHING`,
    [schedules.map((s) => s.name), schedules.map((s) => s.paused), schedules.map((s) => s.nextFireAt)],
  );
}

export async function listScheduleRows(db: Queryable, names: readonly string[]): Promise<ScheduleRow[]> {
  const result = await db.query<ScheduleRow>(
    `SELECT s.name, s.paused, s.next_fire_at, s.last_fire_at, s.last_job_id, j.status AS last_job_status
       FROM coremachine.schedules s LEFT JOIN coremachine.jobs j ON j.job_id = s.last_job_id
      WHERE s.name = ANY($1::text[]) ORDER BY s.name`,
    [names],
  );
  return result.rows;
}

/**
 * Compare-and-set on the cursor: moves it from `expectedNext` to `next` (recording the fired tick
 * and its job) only if no other sweep moved it first and the schedule is not paused. Null when the
 * caller lost: another instance handled these ticks, or an operator paused the schedule.
 */
export async function advanceSchedule(
  db: Queryable,
  change: { name: string; expectedNext: Date; next: Date | null; fired?: { at: Date; jobId: string } | undefined },
): Promise<ScheduleRow | null> {
  const result = await db.query<ScheduleRow>(
    `UPDATE coremachine.schedules SET next_fire_at = $3,
            last_fire_at = COALESCE($4, last_fire_at), last_job_id = COALESCE($5, last_job_id), updated_at = now()
      WHERE name = $1 AND next_fire_at = $2 AND NOT paused
      RETURNING name, paused, next_fire_at, last_fire_at, last_job_id, NULL::text AS last_job_status`,
    [change.name, change.expectedNext, change.next, change.fired?.at ?? null, change.fired?.jobId ?? null],
  );
  return result.rows[0] ?? null;
}

/** Realigns a cursor with a changed cron or timezone; same compare-and-set as a fire. */
export async function moveCursor(db: Queryable, name: string, expectedNext: Date | null, next: Date | null): Promise<boolean> {
  const result = await db.query(
    `UPDATE coremachine.schedules SET next_fire_at = $3, updated_at = now() WHERE name = $1 AND next_fire_at IS NOT DISTINCT FROM $2`,
    [name, expectedNext, next],
  );
  return (result.rowCount ?? 0) > 0;
}

/** Locks the row for a pause or resume, so the change and its event are one decision. */
export async function lockSchedule(db: Queryable, name: string): Promise<{ paused: boolean } | null> {
  const result = await db.query<{ paused: boolean }>('SELECT paused FROM coremachine.schedules WHERE name = $1 FOR UPDATE', [name]);
  return result.rows[0] ?? null;
}

export async function setSchedulePaused(db: Queryable, name: string, paused: boolean): Promise<void> {
  await db.query('UPDATE coremachine.schedules SET paused = $2, updated_at = now() WHERE name = $1', [name, paused]);
}

/**
 * A schedule's entry in the audit trail (pause, resume, fired, skipped ticks). Written by the
 * caller in the transaction of the change it records, so the trail never shows what rolled back.
 */
export async function recordScheduleEvent(db: Queryable, event: { name: string; from: string | null; to: string; detail?: unknown }): Promise<void> {
  await db.query(`INSERT INTO coremachine.events (entity, schedule_name, from_status, to_status, detail) VALUES ('schedule', $1, $2, $3, $4)`, [
    event.name,
    event.from,
    event.to,
    event.detail === undefined ? null : JSON.stringify(event.detail),
  ]);
}

export async function listScheduleEvents(db: Queryable, name: string, afterId: number, limit: number): Promise<ScheduleEvent[]> {
  const result = await db.query<{ id: number; schedule_name: string; from_status: string | null; to_status: string; detail: unknown; at: Date }>(
    `SELECT id, schedule_name, from_status, to_status, detail, at FROM coremachine.events
      WHERE schedule_name = $1 AND id > $2 ORDER BY id LIMIT $3`,
    [name, afterId, limit],
  );
  return result.rows.map((row) => ({
    id: Number(row.id),
    schedule: row.schedule_name,
    from: row.from_status,
    to: row.to_status,
    detail: row.detail,
    at: row.at,
  }));
}
