/**
 * A task's abort signal, made only when its handler reads `ctx.signal`: most handlers never do,
 * and an AbortController per task was 2% of the bench process's CPU. An abort that comes before
 * the first read is kept, so the signal the handler then gets is already aborted, with its reason.
 */
export class TaskAbort {
  private controller: AbortController | undefined;
  private pendingReason: { reason: unknown } | undefined;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.pendingReason) this.controller.abort(this.pendingReason.reason);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.controller) this.controller.abort(reason);
    else this.pendingReason ??= { reason };
  }
}
