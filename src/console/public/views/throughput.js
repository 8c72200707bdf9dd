// Throughput and latency: changes per minute by direction, and webhook-to-other-side latency
// p50/p99 over the last hours, computed by the database from the inbox the service keeps.
import { barLineChart } from '../chart.js';
import { gql, html, raw, render, table } from '../lib.js';

const QUERY = `query Throughput($hours: Int) { throughput(hours: $hours) { hours perMinute { minute marketoToDynamics dynamicsToMarketo operator } latency { source events p50Seconds p99Seconds } } }`;
const seconds = (s) => (s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(1)} s`);

export async function mount(main, params) {
  const hours = Number(params.get('hours') ?? 6);
  render(
    main,
    html`<h2 class="view-title">Throughput and latency</h2>
<form id="range" class="bar"><label for="hours">Window</label><select id="hours">${[1, 6, 24, 48].map(
      (h) => html`<option value="${h}"${h === hours ? raw(' selected') : ''}>last ${h} h</option>`,
    )}</select></form><div id="data" aria-live="polite"></div>`,
  );
  main.querySelector('#hours').addEventListener('change', (event) => {
    location.hash = `#/throughput?hours=${event.target.value}`;
  });
  async function load() {
    const t = (await gql(QUERY, { hours })).throughput;
    const time = (iso) => new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
    const total = t.perMinute.reduce((sum, p) => sum + p.marketoToDynamics + p.dynamicsToMarketo + p.operator, 0);
    render(
      main.querySelector('#data'),
      html`<p>${total} change events done in the last ${t.hours} h (minutes with none are left out).</p>
${t.perMinute.length
  ? barLineChart({
      title: `Changes per minute by direction, last ${t.hours} h`,
      labels: t.perMinute.map((p) => time(p.minute)),
      bars: [
        { name: 'Marketo → Dynamics', values: t.perMinute.map((p) => p.marketoToDynamics), className: 'bar-a' },
        { name: 'Dynamics → Marketo', values: t.perMinute.map((p) => p.dynamicsToMarketo), className: 'bar-b' },
        { name: 'operator and sweep re-syncs', values: t.perMinute.map((p) => p.operator), className: 'bar-c' },
      ],
    })
  : ''}
<h3>Webhook to the other side</h3>
${table(
  ['Webhooks from', 'Events', 'p50', 'p99'],
  t.latency.map((l) => [l.source === 'MARKETO' ? 'Marketo (to Dynamics)' : l.source === 'DYNAMICS' ? 'Dynamics (to Marketo)' : l.source, String(l.events), seconds(l.p50Seconds), seconds(l.p99Seconds)]),
  'No webhook was completed in this window.',
)}`,
    );
  }
  await load();
  const timer = setInterval(() => load().catch(() => undefined), 10_000);
  return () => clearInterval(timer);
}
