import { z } from 'zod';
import { defineJob, defineTask } from 'coremachine';

/** Stage 1: n greetings in parallel → stage 2: a reply per greeting → finalize: a summary. */
export const greet = defineTask({
  type: 'hello_world.greet',
  parameters: z.object({ index: z.number().int().min(0) }),
  handler: ({ index }) => Promise.resolve({ index, greeting: `Hello from task ${index}` }),
});

export const reply = defineTask({
  type: 'hello_world.reply',
  parameters: z.object({ index: z.number().int().min(0), greeting: z.string().min(1) }),
  handler: ({ index, greeting }) => Promise.resolve({ index, reply: `Reply to "${greeting}"`, length: greeting.length }),
});

export const helloWorld = defineJob({
  type: 'hello_world',
  description: 'n greetings in parallel, a reply to each, and a summary',
  parameters: z.object({ n: z.number().int().min(1).max(10_000) }),
})
  .stage({
    name: 'greet',
    task: greet,
    fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, index) => ({ index })),
  })
  .stage({
    name: 'reply',
    task: reply,
    // previous: the results of 'greet', typed, read in pages (memory stays flat in n).
    async *fanOut({ previous }) {
      for await (const greeting of previous) yield { index: greeting.index, greeting: greeting.greeting };
    },
  })
  .finalize(async ({ parameters, previous }) => {
    let replies = 0;
    let characters = 0;
    for await (const result of previous) {
      replies++;
      characters += result.length;
    }
    return { greetings: parameters.n, replies, totalGreetingCharacters: characters, summary: `${replies} of ${parameters.n} greetings answered` };
  });
