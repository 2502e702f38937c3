export interface Poller {
  kick(): void;
  stop(): void;
}

/**
 * Runs work now and then every intervalMs while keepGoing() says so. One run at a time: a kick
 * during a run schedules exactly one more, so slow responses never pile up requests. Skips work
 * while the tab is hidden (the router kicks it again when it shows).
 */
export function poller(work: () => Promise<void>, intervalMs: number, keepGoing: () => boolean): Poller {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let running = false;
  let again = false;
  let stopped = true;
  const clear = () => {
    if (timer) clearTimeout(timer);
    timer = null;
  };
  const tick = async (): Promise<void> => {
    timer = null;
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      if (!document.hidden) await work();
    } finally {
      running = false;
    }
    if (stopped) return;
    if (again) {
      again = false;
      void tick();
      return;
    }
    if (keepGoing()) timer = setTimeout(() => void tick(), intervalMs);
  };
  return {
    kick() {
      stopped = false;
      clear();
      void tick();
    },
    stop() {
      stopped = true;
      clear();
    },
  };
}
