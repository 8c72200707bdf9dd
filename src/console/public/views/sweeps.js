// Sweeps: every run with its counts and API calls, a chart of changes found and duration over
// time, and "run a sweep now". Refreshes itself while a sweep runs.
import { barLineChart } from '../chart.js';
import { action, gql, html, render, runAction, table, when } from '../lib.js';

const QUERY = `{ syncRuns(first: 60) { edges { node { id trigger status startedAt finishedAt durationSeconds changesFound apiCalls counts { name value } error notes } } } }`;

export async function mount(main) {
  render(
    main,
    html`<h2 class="view-title">Sweeps</h2>
<p class="bar">${action('Run a sweep now', { id: 'run-sweep' })} <span class="muted">Sweeps also run on their schedule (SYNC_SWEEP_CRON).</span></p>
<div id="chart"></div><div id="runs" aria-live="polite"></div>`,
  );
  let running = false;
  async function load() {
    const runs = (await gql(QUERY)).syncRuns.edges.map((e) => e.node);
    running = runs.some((r) => r.status === 'RUNNING');
    const oldestFirst = [...runs].reverse().filter((r) => r.status !== 'RUNNING');
    render(
      main.querySelector('#chart'),
      oldestFirst.length
        ? barLineChart({
            title: `Changes found (bars) and duration (line) of the last ${oldestFirst.length} sweeps`,
            labels: oldestFirst.map((r) => when(r.startedAt)),
            bars: [{ name: 'changes found', values: oldestFirst.map((r) => r.changesFound), className: 'bar-a' }],
            line: { name: 'duration', values: oldestFirst.map((r) => r.durationSeconds ?? 0), unit: 's' },
          })
        : '',
    );
    render(
      main.querySelector('#runs'),
      table(
        ['Started', 'Trigger', 'Status', 'Took', 'Changes found', 'API calls', 'Counts'],
        runs.map((r) => ({
          className: `run-${r.status.toLowerCase()}`,
          cells: [
            when(r.startedAt),
            r.trigger,
            html`<span class="${r.status === 'SUCCEEDED' ? 'ok' : r.status === 'RUNNING' ? '' : 'bad'}">${r.status.toLowerCase()}</span>${r.error ? html`<br><span class="vendor">${r.error}</span>` : ''}`,
            r.durationSeconds === null ? 'running' : `${r.durationSeconds.toFixed(1)} s`,
            String(r.changesFound),
            String(r.apiCalls),
            html`<details><summary>${r.counts.length} counters</summary>${r.counts.filter((c) => c.value).map((c) => html`${c.name}: ${c.value}<br>`)}${r.notes.map((n) => html`<span class="muted">${n}</span><br>`)}</details>`,
          ],
        })),
        'No sweep has run yet.',
      ),
    );
  }
  main.querySelector('#run-sweep').addEventListener('click', (event) =>
    runAction(
      event.currentTarget,
      async () => {
        const { requestSweep: r } = await gql('mutation { requestSweep { ok error runId message } }');
        if (!r.ok) throw new Error(r.error ?? r.message);
        return `Sweep started: ${r.message}`;
      },
      load,
    ),
  );
  await load();
  let ticks = 0;
  const timer = setInterval(() => {
    ticks += 1;
    // while a sweep runs every 2 s, otherwise every 10 s
    if (running || ticks % 5 === 0) load().catch(() => undefined);
  }, 2000);
  return () => clearInterval(timer);
}
