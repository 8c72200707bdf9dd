// Bulk and sustained load at the vendors' real limits and call times (issue 13): steady rates and
// bursts of changes, each row with the physical minimum beside it.
import { loadConfig } from '../src/config.ts';
import { MAX_BATCH_OPERATIONS as DATAVERSE_BATCH } from '../src/connectors/dynamics/dataverse.batch.ts';
import { MAX_BATCH as MARKETO_BATCH, marketoDripPlan } from '../src/connectors/marketo/marketo.client.ts';
import { onBenchDatabase } from './database.ts';
import { runInitialSyncBench } from './initial-sync.bench.ts';
import { realisticVendors, runWebhookBench, type WebhookBenchResult } from './webhooks.bench.ts';

// ids per In-filter read in a 16 KB URL (45 URL characters an id)
const DATAVERSE_IDS_PER_READ = 350;
// the default Marketo share (50 calls / 20 s: a bucket of 12 and a drip every 400 ms), as the client plans it
const marketoPlan = marketoDripPlan(loadConfig({}).marketo.callsPer20s, 20_000);
const MARKETO_BUCKET = marketoPlan.bucket;
const MARKETO_DRIP_S = marketoPlan.dripMs / 1000;

export type LoadOptions = { quick: boolean; postgres: string | undefined; engine: string; steadyMinutes: number; burst: number; initialRecords: number };

const count = (values: string[]) => values.reduce<Record<string, number>>((acc, v) => ({ ...acc, [v]: (acc[v] ?? 0) + 1 }), {});
const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

/** Seconds the default Marketo share needs for `calls` calls, plus one call time. */
const marketoSeconds = (calls: number) => Math.max(0, calls - MARKETO_BUCKET) * MARKETO_DRIP_S + realisticVendors.marketoLatencyMs / 1000;

export async function runLoadBench(options: LoadOptions): Promise<{ rows: string[][]; figures: Record<string, number> }> {
  const rows: string[][] = [];
  const figures: Record<string, number> = {};
  // each row as soon as it is measured: a long run stopped halfway still leaves its figures
  const push = (row: string[]) => {
    rows.push(row);
    console.log(`| ${row.join(' | ')} |`);
  };
  const run = (o: Parameters<typeof runWebhookBench>[0]) => onBenchDatabase(options.postgres, (databaseUrl) => runWebhookBench({ ...o, ...(databaseUrl ? { databaseUrl } : {}), vendors: realisticVendors }));
  const tag = options.engine === 'PostgreSQL' ? 'PG' : 'PGlite';

  const steady = async (rate: number, seconds: number) => {
    const r = await run({ rate, changes: rate * seconds, warmupChanges: rate * 2 });
    push([
      `real limits: ${rate}/s for ${seconds} s (${tag})`,
      String(r.changes),
      fmt(r.acceptedPerSecond, 1),
      `M->D ${fmt(r.p50MarketoToDynamics)} / D->M ${fmt(r.p50DynamicsToMarketo)}`,
      '',
      `M->D ${fmt(r.p99MarketoToDynamics)} / D->M ${fmt(r.p99DynamicsToMarketo)}`,
      String(r.lost),
      `${r.marketoCalls} Marketo, ${r.dynamicsCalls} Dataverse (${fmt(r.dynamicsCalls / r.changes, 3)}/change)`,
      // The floor once Marketo's share is spent (from about 20/s: a read and a write take turns, one
      // call every 400 ms): a change waits up to 800 ms for the next read of its person, then the
      // read (300 ms); M->D then writes Dataverse (a request, 100 ms, and 20 ms an operation), D->M
      // writes Marketo (300 ms; the call kept in reserve after the read sends it at once).
      `429: ${r.dynamics429}, 606/615: ${r.marketoRefused}; p99 floor with Marketo's share spent: M->D ~1.2 s (read turn 0.8 + read 0.3 + Dataverse write 0.12), D->M ~1.4 s (read turn 0.8 + read 0.3 + write 0.3)`,
    ]);
    figures[`load_${rate}_p99_m2d_ms`] = Math.round(r.p99MarketoToDynamics);
    figures[`load_${rate}_p99_d2m_ms`] = Math.round(r.p99DynamicsToMarketo);
    figures[`load_${rate}_dataverse_per_change`] = Number((r.dynamicsCalls / r.changes).toFixed(3));
    figures[`load_${rate}_lost`] = r.lost;
    figures[`load_${rate}_429`] = r.dynamics429;
    console.log(`${rate}/s: Dataverse requests by endpoint ${JSON.stringify(r.dynamicsEndpoints)}; refused Dataverse webhook deliveries: ${JSON.stringify(count(r.refusedDeliveries))}, failed Marketo webhook calls: ${JSON.stringify(count(r.failedSends))}`);
  };

  const burst = async (direction: 'marketo' | 'dynamics', changes: number) => {
    // A bulk change reaches a service already at work: 10 s of 100 changes/s first, then quiet
    // until Marketo's idle bucket is full again (the minimum below counts on it)
    const r: WebhookBenchResult = await run({
      rate: changes,
      changes,
      burst: direction,
      warmupChanges: 1_000,
      pauseAfterWarmupMs: MARKETO_BUCKET * marketoPlan.dripMs + 2 * realisticVendors.marketoLatencyMs,
    });
    const marketoMin = direction === 'marketo' ? Math.ceil(changes / MARKETO_BATCH) : 2 * Math.ceil(changes / MARKETO_BATCH);
    const dataverseMin = direction === 'marketo' ? Math.ceil(changes / DATAVERSE_IDS_PER_READ) + Math.ceil(changes / DATAVERSE_BATCH) : Math.ceil(changes / DATAVERSE_IDS_PER_READ);
    const label = direction === 'marketo' ? 'Marketo -> Dynamics' : 'Dynamics -> Marketo';
    push([
      `real limits: ${changes} ${label} at once (${tag})`,
      String(changes),
      fmt(changes / r.drainSeconds, 1),
      '',
      '',
      '',
      String(r.lost),
      `${r.marketoCalls} Marketo (min ${marketoMin}), ${r.dynamicsCalls} Dataverse (min ${dataverseMin})`,
      `429: ${r.dynamics429}, 606/615: ${r.marketoRefused}; drained in ${fmt(r.drainSeconds, 1)} s (min ${fmt(marketoSeconds(marketoMin), 1)} s at the default Marketo share)`,
    ]);
    const key = direction === 'marketo' ? 'm2d' : 'd2m';
    console.log(`burst ${key}: Dataverse requests by endpoint ${JSON.stringify(r.dynamicsEndpoints)}; refused Dataverse webhook deliveries: ${JSON.stringify(count(r.refusedDeliveries))}, failed Marketo webhook calls: ${JSON.stringify(count(r.failedSends))}`);
    Object.assign(figures, {
      [`burst_${key}_seconds`]: Number(r.drainSeconds.toFixed(1)),
      [`burst_${key}_marketo_calls`]: r.marketoCalls,
      [`burst_${key}_dataverse_requests`]: r.dynamicsCalls,
      [`burst_${key}_429`]: r.dynamics429,
      [`burst_${key}_lost`]: r.lost,
    });
  };

  const initialSync = async (records: number) => {
    const r = await onBenchDatabase(options.postgres, (databaseUrl) => runInitialSyncBench({ records, databaseUrl }));
    push([
      `real limits: initial sync of ${records} leads and contacts, half in Marketo (${tag})`,
      String(records),
      fmt(records / r.seconds, 1),
      '',
      '',
      '',
      String(r.unmatched),
      `${r.marketoCalls} Marketo (min ${r.marketoMinimum}: a look-up and a read per 300, a create per 300 new), ${r.dynamicsRequests} Dataverse`,
      `linked in ${fmt(r.seconds, 1)} s (min ${fmt(r.minimumSeconds, 1)} s at the default Marketo share); ${fmt(r.dailyQuotaShare * 100, 1)}% of Marketo's daily quota; 429: ${r.dynamics429}, 606/615: ${r.marketoRefused}; persons ${r.persons} of ${r.expectedPersons} expected`,
    ]);
    console.log(`initial sync: Marketo calls by endpoint ${JSON.stringify(r.marketoByEndpoint)}`);
    Object.assign(figures, {
      initial_sync_seconds: Number(r.seconds.toFixed(1)),
      initial_sync_marketo_calls: r.marketoCalls,
      initial_sync_marketo_minimum: r.marketoMinimum,
      initial_sync_dataverse_requests: r.dynamicsRequests,
      initial_sync_unmatched: r.unmatched,
      initial_sync_duplicates: r.persons - r.expectedPersons,
    });
  };

  await steady(20, options.quick ? 20 : 60);
  await burst('marketo', options.burst);
  await burst('dynamics', options.burst);
  if (options.steadyMinutes > 0) await steady(100, options.quick ? 20 : options.steadyMinutes * 60);
  if (options.initialRecords > 0) await initialSync(options.initialRecords);
  return { rows, figures };
}
