// npm run bench [-- --quick]: the speed and memory figures of the sync, printed as a table and,
// on the last line, one JSON object of every figure (the keys later issues extend).
import { runWebhookBench } from './webhooks.bench.ts';

const quick = process.argv.includes('--quick');
const figures: Record<string, number> = {};
const rows: string[][] = [];

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

for (const rate of [50, 200]) {
  const changes = quick ? rate * 4 : rate * 20;
  const r = await runWebhookBench({ rate, changes });
  rows.push([
    `webhooks ${rate}/s`,
    String(r.changes),
    fmt(r.acceptedPerSecond, 1),
    fmt(r.p50),
    fmt(r.p95),
    fmt(r.p99),
    String(r.lost),
    fmt(r.apiCallsPerChange, 3),
    `${r.marketoCalls} / ${r.dynamicsCalls}`,
  ]);
  if (rate === 200 || !('webhook_rps' in figures)) {
    Object.assign(figures, {
      webhook_rps: Number(r.acceptedPerSecond.toFixed(1)),
      webhook_p50_ms: Math.round(r.p50),
      webhook_p95_ms: Math.round(r.p95),
      webhook_p99_ms: Math.round(r.p99),
      webhook_lost: r.lost,
      api_calls_per_change: Number(r.apiCallsPerChange.toFixed(3)),
    });
  }
  figures[`webhook_${rate}_p99_ms`] = Math.round(r.p99);
  figures[`webhook_${rate}_lost`] = r.lost;
}

const header = ['scenario', 'changes', 'accepted/s', 'p50 ms', 'p95 ms', 'p99 ms', 'lost', 'API calls/change', 'Marketo / Dynamics calls'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
console.log(line(header));
console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
for (const row of rows) console.log(line(row));
console.log(JSON.stringify(figures));
