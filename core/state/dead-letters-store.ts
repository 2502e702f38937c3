import type { Queryable } from '../db/pool';

export interface DeadLetterRecord {
  id: number;
  queue: string;
  messageId: string | null;
  body: unknown;
  reason: string;
  description: string;
  jobId: string | null;
  taskId: string | null;
  at: Date;
}

export async function listDeadLetters(db: Queryable, query: { jobId?: string; beforeId?: number; limit: number }): Promise<DeadLetterRecord[]> {
  const result = await db.query<{
    id: string;
    queue: string;
    message_id: string | null;
    body: unknown;
    reason: string;
    description: string;
    job_id: string | null;
    task_id: string | null;
    at: Date;
  }>(
    `SELECT * FROM coremachine.dead_letters
      WHERE ($1::text IS NULL OR job_id = $1) AND ($2::bigint IS NULL OR id < $2)
      ORDER BY id DESC LIMIT $3`,
    [query.jobId ?? null, query.beforeId ?? null, query.limit],
  );
  return result.rows.map((row) => ({
    id: Number(row.id),
    queue: row.queue,
    messageId: row.message_id,
    body: row.body,
    reason: row.reason,
    description: row.description,
    jobId: row.job_id,
    taskId: row.task_id,
    at: row.at,
  }));
}

export async function insertDeadLetter(
  db: Queryable,
  letter: { queue: string; messageId: string | null; body: unknown; reason: string; description: string; jobId: string | null; taskId: string | null },
): Promise<void> {
  await db.query({
    name: 'cm_insert_dead_letter',
    text: `INSERT INTO coremachine.dead_letters (queue, message_id, body, reason, description, job_id, task_id) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    values: [letter.queue, letter.messageId, JSON.stringify(letter.body ?? null), letter.reason, letter.description, letter.jobId, letter.taskId],
  });
}
