import { KEY } from './api';
import { byId, fill } from './dom';
import { jobView } from './job-view';
import { jobListView } from './list-view';
import { parseRoute } from './urls';
import type { View } from './view';

/** The dashboard's entry point: routes #/ and #/jobs/ID to their views. */
let view: (View & { kind: string }) | null = null;

function route(): void {
  const target = parseRoute(location.hash);
  const kind = target.view === 'job' ? `job:${target.jobId}` : 'list';
  if (view && view.kind === kind) {
    if (target.view === 'list') view.update?.(target.args);
    return;
  }
  const first = view === null;
  view?.stop();
  const main = fill(byId('main'));
  view = { ...(target.view === 'job' ? jobView(main, target.jobId) : jobListView(main, target.args)), kind };
  document.title = `${view.title} · CoreMachine`;
  // After a navigation, focus moves to the new view's heading, as it would on a page load.
  if (!first) view.heading.focus();
}

if (!KEY) byId('key-notice').hidden = false;
window.addEventListener('hashchange', route);
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) view?.kick();
});
route();
