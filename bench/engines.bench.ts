// The embedded database against PostgreSQL on the same machine (issue 13: PGlite within 80% of
// PostgreSQL's throughput). Marketo edits reaching Dynamics as fast as the service can take them:
// a 10,000-change burst with vendors that answer at once and Marketo's whole budget, so the service
// and its database are what bound the rate. The two engines take turns, so a slow minute of the
// machine falls on both.
import { onBenchDatabase } from './database.ts';
import { runWebhookBench } from './webhooks.bench.ts';

export interface EngineRun {
  engine: 'PostgreSQL' | 'PGlite';
  perSecond: number;
  lost: number;
  marketoCalls: number;
  dataverseRequests: number;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

export async function runEngineComparison(options: { postgres: string; changes: number; rounds: number }) {
  const runs: EngineRun[] = [];
  for (let round = 0; round < options.rounds; round++) {
    for (const engine of ['PostgreSQL', 'PGlite'] as const) {
      const r = await onBenchDatabase(engine === 'PostgreSQL' ? options.postgres : undefined, (databaseUrl) =>
        runWebhookBench({
          rate: options.changes,
          changes: options.changes,
          burst: 'marketo',
          // a service at work: JIT, query plans and pools warm, then Marketo's idle bucket refills
          warmupChanges: 1_000,
          pauseAfterWarmupMs: 2_000,
          ...(databaseUrl ? { databaseUrl } : {}),
          env: { MARKETO_CALLS_PER_20S: '100' },
        }),
      );
      const run = { engine, perSecond: options.changes / r.drainSeconds, lost: r.lost, marketoCalls: r.marketoCalls, dataverseRequests: r.dynamicsCalls };
      console.log(`engines: ${JSON.stringify(run)}`);
      runs.push(run);
    }
  }
  const of = (engine: EngineRun['engine']) => runs.filter((r) => r.engine === engine).map((r) => r.perSecond);
  const postgres = median(of('PostgreSQL'));
  const pglite = median(of('PGlite'));
  return { runs, postgres, pglite, ratio: pglite / postgres, lost: runs.reduce((n, r) => n + r.lost, 0) };
}
