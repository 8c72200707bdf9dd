// Run by bench/sweep.bench.ts as a process of its own, so that its peak RSS is the service's
// during a full reconciliation (empty simulators), not the benchmark's data. Prints one JSON line.
//   npm run build && node --expose-gc dist/bench/full-reconcile.child.js <links> [postgresql://... fresh database]
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../src/config.ts';
import { startService } from '../src/main.ts';

const NEVER = '0 0 0 1 1 *';
const links = Number(process.argv[2] ?? 1_000_000);
const databaseUrl = process.argv[3];

const service = await startService(
  loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    SYNC_SWEEP_CRON: NEVER,
    SYNC_FULL_CRON: NEVER,
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : { DATA_DIR: join(mkdtempSync(join(tmpdir(), 'mds-full-')), 'data') }),
  }),
  { logger: pino({ level: 'silent' }) },
);
try {
  await service.worker.stop();
  const prisma = service.db.prisma;
  // a first sweep initialises the cursors, so the measured run is the reconciliation alone
  await service.sweeper.requestSweep({ trigger: 'CLI', outcomeWaitMs: 0 });
  for (let from = 0; from < links; from += 100_000) {
    const to = Math.min(links, from + 100_000) - 1;
    await prisma.$executeRaw`
      INSERT INTO sync_link (id, "marketoId", "dynamicsEntity", "dynamicsId", "updatedAt")
      SELECT gen_random_uuid(), 10000000 + g, (CASE WHEN g % 2 = 0 THEN 'LEAD' ELSE 'CONTACT' END)::"DynamicsEntity", gen_random_uuid(), now()
        FROM generate_series(${from}::int, ${to}::int) AS g`;
  }
  await prisma.$executeRaw`TRUNCATE change_event CASCADE`;
  global.gc?.();
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const started = performance.now();
  const answer = await service.sweeper.requestSweep({ trigger: 'CLI', full: true, outcomeWaitMs: 0 });
  const seconds = (performance.now() - started) / 1000;
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage().rss);
  if (answer.status !== 'started' || answer.result.status !== 'SUCCEEDED') throw new Error(`full reconciliation did not succeed: ${JSON.stringify(answer)}`);
  const reconciled = answer.result.counts.linksReconciled;
  console.log(JSON.stringify({ links, reconciled, seconds, peakRssMb: peak / 1024 / 1024, baselineRssMb: baseline / 1024 / 1024, engine: service.db.engine }));
} finally {
  await service.stop('benchmark finished');
}
