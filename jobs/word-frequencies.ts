import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { defineJob, defineTask } from '../models';

/**
 * A realistic data job: list the text files of a folder → count words per file in parallel →
 * merge the per-file counts into the top k. Each stage's results feed the next.
 */
const WORD = /[\p{L}\p{N}']+/gu;

export const listFiles = defineTask({
  type: 'word_frequencies.list',
  parameters: z.object({ directory: z.string().min(1), extension: z.string() }),
  handler: async ({ directory, extension }) => {
    const entries = await fs.readdir(directory, { withFileTypes: true });
    const files = entries
      .filter((entry) => entry.isFile() && entry.name.endsWith(extension))
      .map((entry) => path.join(directory, entry.name))
      .sort();
    return { files };
  },
});

export const countWords = defineTask({
  type: 'word_frequencies.count',
  parameters: z.object({ file: z.string().min(1), minLength: z.number().int().min(1) }),
  handler: async ({ file, minLength }) => {
    const text = await fs.readFile(file, 'utf8');
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
    directory: z.string().min(1),
    extension: z.string().default('.txt'),
    topK: z.number().int().min(1).max(1000).default(10),
    minLength: z.number().int().min(1).max(50).default(3),
  }),
})
  .stage({
    name: 'list',
    task: listFiles,
    fanOut: ({ parameters }) => [{ directory: path.resolve(parameters.directory), extension: parameters.extension }],
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
