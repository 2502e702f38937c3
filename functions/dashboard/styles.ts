/** The dashboard's stylesheet: system fonts, high-contrast status colours, visible focus rings. */
export const dashboardStyles = String.raw`
:root {
  --bg: #f6f7f9; --panel: #ffffff; --text: #1b1f24; --muted: #57606a; --border: #d0d7de;
  --accent: #0a58ca; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --info: #0969da; --idle: #6e7781;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 15px; color: var(--text); background: var(--bg);
}
* { box-sizing: border-box; }
body { margin: 0; }
header { display: flex; align-items: center; gap: 1.5rem; padding: 0.6rem 1.5rem; background: #24292f; color: #fff; }
header h1 { font-size: 1.15rem; margin: 0; }
header a { color: #fff; }
header .live { margin: 0 0 0 auto; font-size: 0.85rem; color: #d0d7de; }
header .updated { font-size: 0.8rem; color: #afb8c1; font-variant-numeric: tabular-nums; }
main { max-width: 1280px; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
h2 { font-size: 1.25rem; margin: 1.2rem 0 0.6rem; }
h3 { font-size: 1.05rem; margin: 1.2rem 0 0.5rem; }
section.panel { background: var(--panel); border: 1px solid var(--border); border-radius: 6px; padding: 0.8rem 1rem; margin-bottom: 1rem; }
a { color: var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, textarea:focus-visible, summary:focus-visible {
  outline: 3px solid #f0b400; outline-offset: 2px;
}
label { font-weight: 600; font-size: 0.85rem; display: block; margin-bottom: 0.2rem; }
input, select, textarea { font: inherit; padding: 0.3rem 0.45rem; border: 1px solid var(--border); border-radius: 4px; background: #fff; color: var(--text); }
textarea { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.85rem; width: 100%; min-height: 4.5rem; }
button { font: inherit; padding: 0.35rem 0.9rem; border-radius: 4px; border: 1px solid var(--border); background: #f3f4f6; color: var(--text); cursor: pointer; }
button:hover:not(:disabled) { background: #e7e9ec; }
button:disabled { opacity: 0.45; cursor: not-allowed; }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
button.primary:hover:not(:disabled) { background: #084298; }
button.danger { color: var(--bad); border-color: var(--bad); }
button.danger.primary { background: var(--bad); color: #fff; }
.row { display: flex; flex-wrap: wrap; gap: 0.8rem; align-items: flex-end; }
.row .grow { flex: 1 1 20rem; }
.row.top { align-items: flex-start; }
.row .after-label { padding-top: 1.35rem; }
.mono, code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.85rem; }
pre { background: #f6f8fa; border: 1px solid var(--border); border-radius: 4px; padding: 0.6rem; overflow: auto; max-height: 22rem; margin: 0; white-space: pre-wrap; word-break: break-word; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { text-align: left; padding: 0.35rem 0.5rem; border-bottom: 1px solid var(--border); vertical-align: top; }
th { font-size: 0.8rem; text-transform: uppercase; letter-spacing: 0.03em; color: var(--muted); background: #f6f8fa; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { max-height: 26rem; overflow: auto; border: 1px solid var(--border); border-radius: 4px; }
.scroll table th { position: sticky; top: 0; }
.badge { display: inline-block; padding: 0.1rem 0.5rem; border-radius: 999px; font-size: 0.78rem; font-weight: 700; color: #fff; background: var(--idle); white-space: nowrap; }
.s-COMPLETED { background: var(--ok); } .s-COMPLETED_WITH_ERRORS { background: var(--warn); }
.s-FAILED { background: var(--bad); } .s-CANCELLED { background: #57606a; }
.s-PROCESSING { background: var(--info); } .s-QUEUED { background: #8250df; } .s-PAUSED { background: var(--warn); } .s-PENDING { background: var(--idle); }
.muted { color: var(--muted); }
.chip { display: inline-block; margin: 0.1rem 0.3rem 0.1rem 0; padding: 0 0.45rem; border-radius: 999px; border: 1px solid var(--border); background: #f6f8fa; font-size: 0.78rem; color: var(--text); }
.error-box { border: 1px solid var(--bad); background: #ffebe9; color: #82071e; border-radius: 4px; padding: 0.5rem 0.7rem; margin: 0.6rem 0; }
.error-box pre { background: #fff; }
.notice { border: 1px solid var(--warn); background: #fff8c5; border-radius: 4px; padding: 0.5rem 0.7rem; margin-bottom: 1rem; }
body > .notice { max-width: calc(1280px - 3rem); margin: 1rem auto 0; }
dl.summary { display: grid; grid-template-columns: max-content 1fr max-content 1fr; gap: 0.3rem 1rem; margin: 0; }
dl.summary dt { color: var(--muted); font-size: 0.85rem; }
dl.summary dd { margin: 0; }
.stage { display: grid; grid-template-columns: 14rem 1fr 20rem; gap: 0.8rem; align-items: center; padding: 0.35rem 0; }
.bar { height: 1.1rem; border-radius: 4px; background: #eaeef2; overflow: hidden; display: flex; border: 1px solid var(--border); }
.bar .done { background: var(--ok); } .bar .failed { background: var(--bad); }
td.progress { min-width: 11rem; } td.progress .bar { height: 0.7rem; margin: 0.25rem 0 0.15rem; }
.small { font-size: 0.78rem; }
.prio { display: inline-block; padding: 0 0.45rem; border-radius: 4px; font-size: 0.75rem; font-weight: 700; border: 1px solid var(--border); color: var(--muted); }
.prio[data-priority="high"] { background: #bc4c00; border-color: #bc4c00; color: #fff; } .prio[data-priority="normal"] { background: #eaeef2; color: var(--text); }
.actions { display: flex; gap: 0.5rem; flex-wrap: wrap; }
.pager { display: flex; gap: 0.5rem; align-items: center; margin-top: 0.6rem; }
dialog { border: 1px solid var(--border); border-radius: 8px; padding: 1.2rem 1.4rem; max-width: 32rem; }
dialog::backdrop { background: rgba(0, 0, 0, 0.35); }
dialog h2 { margin-top: 0; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
@media (max-width: 900px) { .stage { grid-template-columns: 1fr; } dl.summary { grid-template-columns: max-content 1fr; } }
`;
