import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { defineJob, defineTask } from 'coremachine';
import { listRegularFiles, openRoot, readRegularFile, RelativeName } from './confined-files';

/**
 * A realistic data job: list the text files of a folder → count words per file in parallel →
 * merge the per-file counts into the top k. Each stage's results feed the next.
 *
 * It reads only below one root folder: the sample texts it ships (jobs/data/word-frequencies),
 * or COREMACHINE_WORD_FREQUENCIES_ROOT when set. `directory` names a folder below that root.
 */
const WORD = /[\p{L}\p{N}']+/gu;
const LABEL = 'word_frequencies';
const MAX_FILES = 10_000;
const MAX_FILE_BYTES = 16 * 1024 * 1024;

/** The shipped data sits next to this file in the sources and two levels up from dist/jobs. */
function shippedDataDir(): string {
  const beside = path.join(__dirname, 'data', 'word-frequencies');
  const fromDist = path.join(__dirname, '..', '..', 'jobs', 'data', 'word-frequencies');
  return fs.existsSync(beside) || !fs.existsSync(fromDist) ? beside : fromDist;
}

/** Read when a task runs, not at import, so the setting of the process that does the work applies. */
export function wordFrequenciesRoot(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env.COREMACHINE_WORD_FREQUENCIES_ROOT?.trim();
  return configured ? path.resolve(configured) : shippedDataDir();
}

/** A file-name suffix such as `.txt`: never a path. */
const Extension = z
  .string()
  .max(64)
  .refine((suffix) => !['/', '\\', '\0'].some((c) => suffix.includes(c)), 'must be a file-name suffix such as ".txt", without "/", "\\" or NUL');

export const listFiles = defineTask({
  type: 'word_frequencies.list',
  parameters: z.object({ directory: RelativeName, extension: Extension }),
  handler: async ({ directory, extension }) => {
    const root = await openRoot(wordFrequenciesRoot(), LABEL);
    return { files: await listRegularFiles(root, directory, extension, MAX_FILES, LABEL) };
  },
});

export const countWords = defineTask({
  type: 'word_frequencies.count',
  parameters: z.object({ file: RelativeName, minLength: z.number().int().min(1) }),
  handler: async ({ file, minLength }) => {
    const text = await readRegularFile(await openRoot(wordFrequenciesRoot(), LABEL), file, MAX_FILE_BYTES, LABEL);
    const counts: Record<string, number> = {};
    let words = 0;
    for (const match of text.toLowerCase().matchAll(WORD)) {
      const word = match[0].replace(/^'+|'+$/g, '');
      if (word.length < minLength) continue;
      counts[word] = (counts[word] ?? 0) + 1;
      words++;
    }
    return { file, words, counts };
  },
});

export const wordFrequencies = defineJob({
  type: 'word_frequencies',
  description: 'top-k word frequencies over the text files of a folder',
  parameters: z.object({
    /** A folder below the root (see wordFrequenciesRoot); `.` is the root itself. */
    directory: RelativeName.default('.'),
    extension: Extension.default('.txt'),
    topK: z.number().int().min(1).max(1000).default(10),
    minLength: z.number().int().min(1).max(50).default(3),
  }),
})
  .stage({
    name: 'list',
    task: listFiles,
    fanOut: ({ parameters }) => [{ directory: parameters.directory, extension: parameters.extension }],
  })
  .stage({
    name: 'count',
    task: countWords,
    fanOut: async ({ parameters, previous }) => {
      const [listing] = await previous.all();
      return (listing?.files ?? []).map((file) => ({ file, minLength: parameters.minLength }));
    },
  })
  .finalize(async ({ parameters, previous }) => {
    const totals = new Map<string, number>();
    let files = 0;
    let words = 0;
    for await (const perFile of previous) {
      files++;
      words += perFile.words;
      for (const [word, count] of Object.entries(perFile.counts)) totals.set(word, (totals.get(word) ?? 0) + count);
    }
    const top = [...totals.entries()]
      .sort(([wa, a], [wb, b]) => b - a || (wa < wb ? -1 : 1))
      .slice(0, parameters.topK)
      .map(([word, count]) => ({ word, count }));
    return { files, words, distinctWords: totals.size, top };
  });
