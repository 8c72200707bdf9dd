// The sweep's figures: discovery of many changed records (time, API calls made against the fewest
// the page limits allow) and a full reconciliation of many links (peak RSS). Standalone:
//   tsx bench/sweep.bench.ts [--quick]        (DATABASE_URL=postgresql://... to use PostgreSQL)
// The inbox worker is stopped: what is measured is the sweep (discovery + enqueue), not the engine.
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { loadConfig } from '../src/config.ts';
import { startService } from '../src/main.ts';

const NEVER = '0 0 0 1 1 *';
const DATAVERSE_PAGE = 5000;
const MARKETO_PAGE = 300;

export interface SweepBenchOptions {
  /** changed records, half in Dynamics (new leads), half in Marketo (linked persons edited) */
  records: number;
  /** links in the table for the full reconciliation */
  linkedRecords: number;
  databaseUrl?: string | undefined;
  /** a fresh, empty database for the full reconciliation's own process (else its own PGlite) */
  fullDatabaseUrl?: string | undefined;
}

interface FullReconcileFigures {
  links: number;
  reconciled: number;
  seconds: number;
  peakRssMb: number;
  baselineRssMb: number;
}

/**
 * The reconciliation runs in the compiled service (npm run build), as production runs it: under
 * tsx the process carries the transpiler and its source maps, about 110 MB that are not the sync's.
 */
async function fullReconcileInChild(links: number, databaseUrl: string | undefined): Promise<FullReconcileFigures> {
  const root = fileURLToPath(new URL('..', import.meta.url));
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'ignore' });
  const child = spawn(process.execPath, ['--expose-gc', join(root, 'dist', 'bench', 'full-reconcile.child.js'), String(links), ...(databaseUrl ? [databaseUrl] : [])], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  const line = out.trim().split('\n').at(-1) ?? '';
  if (code !== 0 || !line.startsWith('{')) throw new Error(`the full reconciliation process failed (exit ${code}): ${out}`);
  return JSON.parse(line) as FullReconcileFigures;
}

export interface SweepBenchResult {
  records: number;
  seconds: number;
  apiCalls: number;
  minApiCalls: number;
  eventsEnqueued: number;
  fullRecords: number;
  fullSeconds: number;
  fullPeakRssMb: number;
  /** RSS just before the reconciliation: simulators, seeded data, Prisma, the embedded database */
  fullBaselineRssMb: number;
  engine: string;
}

export async function runSweepBench(options: SweepBenchOptions): Promise<SweepBenchResult> {
  const service = await startService(
    loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'silent',
      DATA_DIR: 'memory://',
      SYNC_SWEEP_CRON: NEVER,
      SYNC_FULL_CRON: NEVER,
      ...(options.databaseUrl ? { DATABASE_URL: options.databaseUrl } : {}),
    }),
    { logger: pino({ level: 'silent' }), sandbox: { marketoRateWindowMs: 1_000 } },
  );
  try {
    const prisma = service.db.prisma;
    const dataverse = service.sandbox!.dataverse.admin;
    const marketo = service.sandbox!.marketo.admin;
    for (const registration of dataverse.webhooks()) dataverse.unregisterWebhook(registration.id);
    await service.worker.stop();
    const sweep = async (full = false) => {
      const answer = await service.sweeper.requestSweep({ trigger: 'CLI', full, outcomeWaitMs: 0 });
      if (answer.status !== 'started') throw new Error(answer.message);
      if (answer.result.status !== 'SUCCEEDED') throw new Error(`${answer.result.status}: ${answer.result.error}`);
      return answer.result;
    };
    await sweep(); // initialises the cursors on empty systems

    // ---- discovery of changed records --------------------------------------------------------
    const dynamicsRows = Math.ceil(options.records / 2);
    const marketoRows = options.records - dynamicsRows;
    const run = randomUUID().slice(0, 8);
    for (let i = 0; i < dynamicsRows; i += 10_000) {
      const rows = Array.from({ length: Math.min(10_000, dynamicsRows - i) }, (_, k) => ({
        lastname: `Bench ${i + k}`,
        emailaddress1: `dv.${run}.${i + k}@example.com`,
      }));
      dataverse.bulkInsert('lead', rows);
    }
    const ids = marketo.seedLeads(
      Array.from({ length: marketoRows }, (_, k) => ({ email: `mk.${run}.${k}@example.com`, lastName: `Bench ${k}` })),
      { recordActivities: false },
    );
    for (let i = 0; i < ids.length; i += 10_000) {
      const part = ids.slice(i, i + 10_000);
      await prisma.$executeRaw`
        INSERT INTO sync_link (id, "marketoId", "dynamicsEntity", "dynamicsId", "updatedAt")
        SELECT gen_random_uuid(), m, 'LEAD'::"DynamicsEntity", gen_random_uuid(), now() FROM unnest(${part}::int[]) AS m`;
    }
    for (const id of ids) marketo.updateLead(id, { title: 'Benchmarked' });
    const marketoActivities = ids.length;

    const started = performance.now();
    const discovered = await sweep();
    const seconds = (performance.now() - started) / 1000;
    // the fewest calls the page limits allow: Dataverse delta pages of 5000 per table (one even
    // when empty), Marketo leadchanges pages of 300 and one deletedleads page
    const minApiCalls =
      Math.max(1, Math.ceil(dynamicsRows / DATAVERSE_PAGE)) + 1 + Math.max(1, Math.ceil(marketoActivities / MARKETO_PAGE)) + 1;
    const apiCalls = discovered.counts.marketoCalls + discovered.counts.dynamicsCalls;

    // ---- full reconciliation of many links: a service process of its own (see the child) --------
    const full = await fullReconcileInChild(options.linkedRecords, options.fullDatabaseUrl);
    if (full.reconciled !== full.links) throw new Error(`reconciled ${full.reconciled} of ${full.links} links`);
    const fullRecords = full.links;
    const fullSeconds = full.seconds;
    const peak = full.peakRssMb * 1024 * 1024;
    const baseline = full.baselineRssMb * 1024 * 1024;

    return {
      records: options.records,
      seconds,
      apiCalls,
      minApiCalls,
      eventsEnqueued: discovered.counts.eventsEnqueued,
      fullRecords,
      fullSeconds,
      fullPeakRssMb: peak / 1024 / 1024,
      fullBaselineRssMb: baseline / 1024 / 1024,
      engine: service.db.engine,
    };
  } finally {
    await service.stop('benchmark finished');
  }
}

export function sweepFigures(r: SweepBenchResult): Record<string, number> {
  return {
    sweep_records: r.records,
    sweep_seconds: Number(r.seconds.toFixed(2)),
    sweep_api_calls: r.apiCalls,
    sweep_min_api_calls: r.minApiCalls,
    full_reconcile_records: r.fullRecords,
    full_reconcile_peak_rss_mb: Math.round(r.fullPeakRssMb),
  };
}

export function sweepRows(r: SweepBenchResult): string[][] {
  return [
    ['sweep: changed records', String(r.records), `${r.seconds.toFixed(2)} s`, `${r.apiCalls} calls (min ${r.minApiCalls}, ${(r.apiCalls / r.minApiCalls).toFixed(3)}x)`, `${r.eventsEnqueued} events`, r.engine],
    ['sweep: full reconciliation', String(r.fullRecords), `${r.fullSeconds.toFixed(2)} s`, `peak RSS ${Math.round(r.fullPeakRssMb)} MB of the service process (${Math.round(r.fullBaselineRssMb)} MB before)`, `${r.fullRecords} events`, r.engine],
  ];
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes('--quick');
  const result = await runSweepBench({
    records: quick ? 5_000 : 100_000,
    linkedRecords: quick ? 20_000 : 1_000_000,
    databaseUrl: loadConfig().database.url,
  });
  const header = ['scenario', 'records', 'time', 'API calls / memory', 'inbox', 'database'];
  const rows = sweepRows(result);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const row of rows) console.log(line(row));
  console.log(JSON.stringify(sweepFigures(result)));
}
