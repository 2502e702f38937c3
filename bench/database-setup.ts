import pg from 'pg';
import { migrate } from '../core/db/migrator';

/** A run's fresh database gets CoreMachine's schema through one short-lived connection. */
export async function migrateBenchDatabase(databaseUrl: string): Promise<void> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  try {
    await migrate(pool);
  } finally {
    await pool.end();
  }
}

/**
 * The peers' fan-in: one counter row per stage, moved by the job that finishes a task (or a
 * batch), as a user of a plain job queue would write it.
 */
export async function createStageCounters(databaseUrl: string, stages: number): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query('CREATE TABLE bench_stage_counter (stage int PRIMARY KEY, n int NOT NULL DEFAULT 0)');
    await client.query('INSERT INTO bench_stage_counter (stage) SELECT generate_series(1, $1::int)', [stages]);
  } finally {
    await client.end();
  }
}
