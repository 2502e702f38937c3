import { dashboardStyles } from './styles';

/**
 * The whole page: markup, the stylesheet and the bundled client script (bundle.ts), inline. The
 * nonce must match the Content-Security-Policy header sent with it.
 */
export function renderDashboardPage(nonce: string, script: string): string {
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
<div id="key-notice" class="notice" hidden>No function key in this page's URL. If the API needs one, open the dashboard as <code>/api/dashboard?code=YOUR_KEY</code>.</div>
<main id="main" tabindex="-1"></main>
<dialog id="confirm" aria-labelledby="confirm-title" aria-describedby="confirm-text"></dialog>
<script nonce="${nonce}">${script}</script>
</body>
</html>
`;
}
