import { clientCore } from './client-core';
import { clientJob } from './client-job';
import { clientList } from './client-list';
import { dashboardStyles } from './styles';

/**
 * Hash routing (#/ lists jobs, #/jobs/ID shows one) keeps the dashboard one URL, so the function
 * key in ?code= survives every navigation and the host needs a single route.
 */
const clientRouter = String.raw`
let view = null;
function route() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const cut = hash.indexOf('?');
  const path = cut < 0 ? hash : hash.slice(0, cut);
  const args = Object.fromEntries(new URLSearchParams(cut < 0 ? '' : hash.slice(cut + 1)));
  const match = /^\/jobs\/([^/?]+)$/.exec(path);
  let jobId = null;
  try { jobId = match ? decodeURIComponent(match[1]) : null; } catch (_) { jobId = null; }
  const kind = jobId ? 'job:' + jobId : 'list';
  if (view && view.kind === kind) { if (view.update) view.update(args); return; }
  const first = view === null;
  if (view) view.stop();
  const main = document.getElementById('main');
  fill(main);
  view = jobId ? jobView(main, jobId) : jobListView(main, args);
  view.kind = kind;
  document.title = view.title + ' · CoreMachine';
  // After a navigation, focus moves to the new view's heading, as it would on a page load.
  if (!first) view.heading.focus();
}
if (!KEY) {
  document.getElementById('key-notice').hidden = false;
}
window.addEventListener('hashchange', route);
document.addEventListener('visibilitychange', () => { if (!document.hidden && view) view.kick(); });
route();
`;

/** The whole page; the nonce must match the Content-Security-Policy header sent with it. */
export function renderDashboardPage(nonce: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>CoreMachine</title>
<style nonce="${nonce}">${dashboardStyles}</style>
</head>
<body>
<header>
  <h1><a href="#/">CoreMachine</a></h1>
  <span>operator dashboard</span>
  <p id="live" class="live" role="status" aria-live="polite"></p>
  <span id="updated" class="updated"></span>
</header>
<main id="main" tabindex="-1">
<div id="key-notice" class="notice" hidden>No function key in this page's URL. If the API needs one, open the dashboard as <code>/api/dashboard?code=YOUR_KEY</code>.</div>
</main>
<dialog id="confirm" aria-labelledby="confirm-title" aria-describedby="confirm-text"></dialog>
<script nonce="${nonce}">
(() => {
'use strict';
${clientCore}
${clientList}
${clientJob}
${clientRouter}
})();
</script>
</body>
</html>
`;
}
