import { TaskAbort } from '../core/engine/running-tasks';

test('an abort before the handler reads its signal is kept: the signal it then gets is aborted, with the first reason', () => {
  const abort = new TaskAbort();
  const first = new Error('job cancelled');
  abort.abort(first);
  abort.abort(new Error('lease lost'));
  expect(abort.signal.aborted).toBe(true);
  expect(abort.signal.reason).toBe(first);
});

test('a signal read before the abort fires its listeners once, like an AbortController', () => {
  const abort = new TaskAbort();
  const signal = abort.signal;
  expect(signal.aborted).toBe(false);
  const seen: unknown[] = [];
  signal.addEventListener('abort', () => seen.push(signal.reason));
  const reason = new Error('job failed');
  abort.abort(reason);
  abort.abort(new Error('again'));
  expect(seen).toEqual([reason]);
  expect(abort.signal).toBe(signal);
});
