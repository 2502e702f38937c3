import { awaitedSignal } from '../../../models/signal-wait';
import { api, asApiError } from './api';
import { el, fill } from './dom';
import { announce, errorBox } from './ui';
import type { JobJson } from './wire';

export interface SignalPanel {
  readonly section: HTMLElement;
  /** Shows the form while the job waits for a signal, hides it otherwise; keeps what was typed while polling. */
  update(job: JobJson): void;
}

/**
 * "Waiting for <signal>": a form for the signal's JSON payload that posts it to
 * POST jobs/{jobId}/signals/{name}. The server checks the payload against the stage's schema;
 * a refusal is shown with its zod issues, and the form stays so the operator can correct it.
 */
export function signalPanel(jobId: string, onSent: () => void): SignalPanel {
  let shown: string | undefined;
  const heading = el('h3', { id: 'signal-heading' });
  const text = el('p', { id: 'signal-text' });
  const payload = el('textarea', { id: 'signal-payload', rows: 6, spellcheck: 'false', class: 'mono', 'aria-describedby': 'signal-text' });
  const out = el('div', { id: 'signal-out' });
  const send = el('button', { type: 'submit', id: 'signal-send', class: 'primary' }, 'Send signal');
  const form = el(
    'form',
    {
      id: 'signal-form',
      onsubmit: (event: Event) => {
        event.preventDefault();
        void submit();
      },
    },
    el('label', { for: 'signal-payload' }, 'Payload (JSON)'),
    payload,
    el('div', { class: 'actions' }, send),
    out,
  );
  const section = el('section', { class: 'panel', id: 'signal-panel', 'aria-labelledby': 'signal-heading', hidden: true }, heading, text, form);

  async function submit(): Promise<void> {
    const name = shown;
    if (!name) return;
    fill(out);
    try {
      JSON.parse(payload.value);
    } catch (error) {
      fill(out, errorBox({ type: 'InvalidJsonError', message: `the payload is not valid JSON: ${error instanceof Error ? error.message : String(error)}` }));
      return;
    }
    send.disabled = true;
    try {
      const job = await api<JobJson>('POST', `/jobs/${encodeURIComponent(jobId)}/signals/${encodeURIComponent(name)}`, payload.value);
      announce(`Signal ${name} sent: the job is ${job.status} at stage ${job.stage}`);
      onSent();
    } catch (error) {
      const failure = asApiError(error);
      fill(out, errorBox(failure));
      announce(`Signal ${name} refused: ${failure.message}`);
    } finally {
      send.disabled = false;
    }
  }

  function update(job: JobJson): void {
    const awaited = awaitedSignal(job);
    if (awaited?.name === shown) return;
    shown = awaited?.name;
    section.hidden = awaited === undefined;
    fill(out);
    if (!awaited) return;
    fill(heading, `Waiting for ${awaited.name}`);
    fill(text, `Stage ${awaited.stage} waits for the signal "${awaited.name}"; nothing runs until it arrives. Its payload becomes the stage's result.`);
    fill(send, `Send ${awaited.name}`);
    payload.value = '{}';
  }

  return { section, update };
}
