// npm run bench [-- --quick] [-- --load-only | --engines-only] [-- --steady-minutes=10] [-- --burst=10000] [-- --initial=100000]
// [-- --engine-rounds=3] [-- --company-only] [-- --contacts=5000] [-- --batch-persons=20000]: the speed and memory figures of the sync, printed as a table and, on the last
// line, one JSON object of every figure (the keys later issues extend). --load-only runs only the rows
// at the vendors' real limits, --engines-only only PGlite against PostgreSQL (BENCH_DATABASE_URL).
import { companyBatchDefaults, runCompanyBatchBench } from './company-batch.bench.ts';
import { consoleBenchOptions, runConsoleBench } from './console.bench.ts';
import { onBenchDatabase } from './database.ts';
import { runIntakeBench } from './intake.bench.ts';
import { runEngineComparison } from './engines.bench.ts';
import { runLoadBench } from './load.bench.ts';
import { runRecoveryBench } from './recovery.bench.ts';
import { monthOptions, runRetentionMonth } from './retention.bench.ts';
import { defaultRetention } from '../src/retention/prune.ts';
import { runSweepBench, sweepFigures, sweepRows } from './sweep.bench.ts';
import { runWebhookBench } from './webhooks.bench.ts';

const quick = process.argv.includes('--quick');
const companyOnly = process.argv.includes('--company-only');
const loadOnly = process.argv.includes('--load-only') || companyOnly;
const enginesOnly = process.argv.includes('--engines-only');
const everything = !loadOnly && !enginesOnly;
const flag = (name: string, fallback: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback);
// PostgreSQL (production's engine) when a server is configured: each section gets a fresh database
const postgres = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL;
const engine = postgres ? 'PostgreSQL' : 'PGlite';
const figures: Record<string, number> = {};
const rows: string[][] = [];

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const notes = (r: { marketoCalls: number; dynamicsCalls: number; p99MarketoToDynamics: number; p99DynamicsToMarketo: number }) =>
  `${r.marketoCalls} / ${r.dynamicsCalls} calls; p99 M->D ${fmt(r.p99MarketoToDynamics)}, D->M ${fmt(r.p99DynamicsToMarketo)}`;

// Marketo's default call budget is half the instance's 100 calls / 20 s; the last row shows what the
// whole budget buys (MARKETO_CALLS_PER_20S=100), since Marketo's calls are what bound the latency:
// a change waits for the next read of its person (a read and a write take two drips of the budget).
const webhookRuns: { rate: number; budget?: string }[] = !everything
  ? []
  : quick
    ? [{ rate: 50 }, { rate: 200 }]
    : [{ rate: 50 }, { rate: 100 }, { rate: 200 }, { rate: 100, budget: '100' }];
for (const { rate, budget } of webhookRuns) {
  const changes = quick ? rate * 4 : rate * 20;
  const r = await onBenchDatabase(postgres, (databaseUrl) =>
    runWebhookBench({ rate, changes, warmupChanges: rate * (quick ? 1 : 2), ...(databaseUrl ? { databaseUrl } : {}), env: budget ? { MARKETO_CALLS_PER_20S: budget } : {} }),
  );
  if (budget) {
    rows.push([`webhooks ${rate}/s, Marketo ${budget} calls/20 s (${engine})`, String(r.changes), fmt(r.acceptedPerSecond, 1), fmt(r.p50), fmt(r.p95), fmt(r.p99), String(r.lost), fmt(r.apiCallsPerChange, 3), notes(r)]);
    figures[`webhook_${rate}_full_budget_p99_ms`] = Math.round(r.p99);
    continue;
  }
  rows.push([
    `webhooks ${rate}/s (${engine})`,
    String(r.changes),
    fmt(r.acceptedPerSecond, 1),
    fmt(r.p50),
    fmt(r.p95),
    fmt(r.p99),
    String(r.lost),
    fmt(r.apiCallsPerChange, 3),
    notes(r),
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

// At the vendors' real limits and call times (issue 13)
if (!enginesOnly && !companyOnly) {
  const load = await runLoadBench({
    quick,
    postgres,
    engine,
    steadyMinutes: flag('steady-minutes', 10),
    burst: flag('burst', quick ? 2_000 : 10_000),
    initialRecords: flag('initial', quick ? 10_000 : 100_000),
  });
  rows.push(...load.rows);
  Object.assign(figures, load.figures);
}

// An account rename fanned out to its linked contacts, and a Batch Sync Person (issue 27)
if (!enginesOnly) {
  const sizes = { contacts: flag('contacts', quick ? 1_000 : companyBatchDefaults.contacts), persons: flag('batch-persons', quick ? 2_000 : companyBatchDefaults.persons) };
  // each row on a database of its own
  for (const size of [{ contacts: sizes.contacts, persons: 0 }, { contacts: 0, persons: sizes.persons }]) {
    const company = await onBenchDatabase(postgres, (databaseUrl) => runCompanyBatchBench({ ...size, databaseUrl, tag: postgres ? 'PG' : 'PGlite' }));
    rows.push(...company.rows);
    Object.assign(figures, company.figures);
  }
}

// PGlite against PostgreSQL on this machine (issue 13): bursts as fast as the service takes them
if (enginesOnly || (everything && postgres)) {
  if (!postgres) throw new Error('--engines-only compares with PostgreSQL: set BENCH_DATABASE_URL');
  const changes = quick ? 2_000 : 10_000;
  const e = await runEngineComparison({ postgres, changes, rounds: flag('engine-rounds', quick ? 1 : 3) });
  const each = (engine: string) => e.runs.filter((r) => r.engine === engine).map((r) => fmt(r.perSecond)).join(', ');
  rows.push([
    `${changes} Marketo edits at once, fast vendors, Marketo's whole budget: PGlite / PostgreSQL`,
    String(changes),
    `${fmt(e.pglite)} / ${fmt(e.postgres)}`,
    '',
    '',
    '',
    String(e.lost),
    '',
    `PGlite at ${fmt(e.ratio * 100)}% of PostgreSQL (medians of ${e.runs.length / 2} alternating runs; PGlite ${each('PGlite')}, PostgreSQL ${each('PostgreSQL')} changes/s); goal >= 80%`,
  ]);
  Object.assign(figures, { engines_pglite_per_s: Math.round(e.pglite), engines_postgres_per_s: Math.round(e.postgres), engines_pglite_share: Number(e.ratio.toFixed(2)), engines_lost: e.lost });
}

// Intake under load on PostgreSQL beside a bare Express + one INSERT, then the backlog's drain (issue 7)
if (everything) {
  const intake = await runIntakeBench({ quick, databaseUrl: postgres });
  if ('skipped' in intake) {
    console.log(`intake bench skipped: ${intake.skipped}`);
    rows.push(['intake (PostgreSQL)', 'skipped', 'n/a', '', '', '', '', '', 'set BENCH_DATABASE_URL']);
  } else {
    rows.push(['intake person-changed (PG)', String(intake.stored), fmt(intake.intakeRps, 1), '', '', fmt(intake.intakeP99), String(intake.stored - intake.drained > 0 ? intake.stored - intake.drained : 0), '', `${fmt(intake.ratio * 100)}% of baseline`]);
    rows.push(['baseline Express + 1 INSERT', '', fmt(intake.baselineRps, 1), '', '', fmt(intake.baselineP99), '', '', '']);
    rows.push([`drain of that backlog (${intake.linkedChanges} linked)`, String(intake.drained), fmt(intake.drainPerSecond, 1), '', '', '', '', '', `${fmt(intake.drainSeconds, 1)} s`]);
    Object.assign(figures, {
      intake_rps: Number(intake.intakeRps.toFixed(1)),
      intake_baseline_rps: Number(intake.baselineRps.toFixed(1)),
      drain_changes_per_s: Number(intake.drainPerSecond.toFixed(1)),
    });
  }
}

// The sweep: discovery of changed records and a full reconciliation.
if (everything) {
  const sweep = await onBenchDatabase(postgres, (databaseUrl) =>
    onBenchDatabase(postgres, (fullDatabaseUrl) =>
      runSweepBench({ records: quick ? 5_000 : 100_000, linkedRecords: quick ? 20_000 : 1_000_000, databaseUrl, fullDatabaseUrl }),
    ),
  );
  rows.push(...sweepRows(sweep).map((r) => [r[0]!, r[1]!, '', '', '', '', '', r[3]!, `${r[2]!}, ${r[4]!} (${r[5]!})`]));
  Object.assign(figures, sweepFigures(sweep));
}

// Crash recovery: SIGKILL with work in flight, restart on the same database (issue 12).
if (everything) {
  const r = await onBenchDatabase(postgres, (databaseUrl) => runRecoveryBench({ changes: quick ? 100 : 300, databaseUrl }));
  rows.push([
    `kill -9 mid-batch, restart (${engine})`,
    String(r.changes),
    '',
    '',
    '',
    '',
    String(r.lost),
    '',
    `${r.undeliveredAtKill} undelivered at the kill${r.inFlightAtKill === null ? '' : ` (${r.inFlightAtKill} claimed)`} all delivered ${fmt(r.secondsToRecover, 1)} s after the restart (floor: ${r.leaseSeconds ? `the ${r.leaseSeconds} s lease of the dead replica` : '0 s, reclaimed at start-up'})`,
  ]);
  Object.assign(figures, { recovery_seconds: Number(r.secondsToRecover.toFixed(1)), recovery_undelivered: r.undeliveredAtKill, recovery_lost: r.lost });
}

// The operator console's queries on 1M links / 10M activities (issue 14): each p95 under 200 ms
if (everything) {
  const console_ = await runConsoleBench(consoleBenchOptions(quick, postgres), { prune: true });
  if ('skipped' in console_) {
    console.log(`console bench skipped: ${console_.skipped}`);
    rows.push(['console queries (PostgreSQL)', 'skipped', 'n/a', '', '', '', '', '', 'set BENCH_DATABASE_URL']);
  } else {
    const store = `${console_.links / 1000}k links, ${console_.activities / 1000}k activities`;
    for (const q of console_.queries) rows.push([`console: ${q.name}`, '', '', fmt(q.p50, 1), fmt(q.p95, 1), '', '', '', store]);
    figures['console_worst_p95_ms'] = Math.round(Math.max(...console_.queries.map((q) => q.p95)));
    const p = console_.prunePass;
    if (p) {
      rows.push([`retention pass on ${(p.rowsBefore / 1e6).toFixed(1)}M rows (PostgreSQL)`, String(p.removed), fmt(p.removed / p.seconds), '', '', '', '', '', `${fmt(p.seconds, 1)} s, ${p.batches} batches of ${defaultRetention.batchSize}`]);
      Object.assign(figures, { retention_pass_seconds: Number(p.seconds.toFixed(1)), retention_pass_removed: p.removed });
    }
  }
}

// Storage under a steady load over a simulated month, a pruning pass each day (issue 15)
if (everything && postgres) {
  const month = monthOptions(quick);
  const days = await runRetentionMonth(postgres, month);
  const at = (n: number) => days[Math.min(days.length, n) - 1]!;
  const marks = [...new Set([month.policy.doneEventDays, month.policy.activityDays, Math.round((month.policy.activityDays + month.days) / 2), month.days])].filter((d) => d <= month.days);
  rows.push([
    `storage, ${month.changesPerSecond} changes/s for ${month.days} simulated days (PostgreSQL)`,
    String(Math.round(month.changesPerSecond * 86_400 * month.days)),
    '',
    '',
    '',
    '',
    '',
    '',
    `MB on day ${marks.map((d) => `${d}: ${fmt(at(d).totalMb)}`).join(', ')}; retention ${month.policy.doneEventDays}/${month.policy.activityDays} d; daily pass max ${fmt(Math.max(...days.map((d) => d.pruneSeconds)), 2)} s`,
  ]);
  Object.assign(figures, { storage_month_last_mb: Math.round(at(month.days).totalMb), storage_month_plateau_start_mb: Math.round(at(month.policy.activityDays).totalMb) });
}

const header = ['scenario', 'count', 'per s', 'p50 ms', 'p95 ms', 'p99 ms', 'lost', 'API calls (per change)', 'notes (Marketo / Dynamics)'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
console.log(line(header));
console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
for (const row of rows) console.log(line(row));
console.log(JSON.stringify(figures));
