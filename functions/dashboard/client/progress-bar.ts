import { barWidths, type Counts } from './bar-widths';
import { el } from './dom';

/**
 * A progress bar as an ARIA progressbar: value = tasks ended (completed + failed) of the total,
 * `text` its spoken value. A bar of total 0 is 0 of 1, so it never reads as done or as a range of nothing.
 */
export function progressBar(counts: Counts, label: string, text: string): HTMLElement {
  const widths = barWidths(counts);
  const empty = !(counts.total > 0);
  return el(
    'div',
    {
      class: 'bar',
      role: 'progressbar',
      'aria-label': label,
      'aria-valuemin': '0',
      'aria-valuemax': empty ? '1' : String(counts.total),
      'aria-valuenow': empty ? '0' : String(Math.min(counts.total, counts.completed + counts.failed)),
      'aria-valuetext': text,
    },
    el('div', { class: 'done', style: { width: `${widths.completed}%` } }),
    el('div', { class: 'failed', style: { width: `${widths.failed}%` } }),
  );
}
