// Issue 27's rows at the vendors' real limits and call times: an account renamed while thousands of
// linked contacts show it (the fan-out), and a Batch Sync Person of a large static list. Calls are
// counted by endpoint, each beside its physical minimum; times are wall-clock of the whole run.
import { randomBytes } from 'node:crypto';
import { MAX_BATCH_OPERATIONS as DATAVERSE_BATCH } from '../src/connectors/dynamics/dataverse.batch.ts';
import { MAX_BATCH as MARKETO_BATCH } from '../src/connectors/marketo/marketo.client.ts';
import { openDatabase } from '../src/db/database.ts';
import { apiCalls, callsSince, deployBenchService, realisticVendors, serviceReady } from './webhooks.bench.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
// emails per In-filter read of Dataverse in a 16 KB URL (about 45 URL characters an email)
const DATAVERSE_EMAILS_PER_READ = 350;

export interface CallCount {
  seconds: number;
  marketoByEndpoint: Record<string, number>;
  dataverseByEndpoint: Record<string, number>;
  marketoCalls: number;
  dataverseRequests: number;
  lost: number;
}

function graphqlOf(url: string, token: string) {
  return async <T>(query: string, variables: Record<string, unknown> = {}): Promise<T> => {
    const response = await fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ query, variables }) });
    return (await response.json()) as T;
  };
}

type Backlog = { data?: { syncStatus: { backlog: { pending: number; processing: number; failed: number } } } };
async function inboxEmpty(graphql: ReturnType<typeof graphqlOf>): Promise<boolean> {
  const b = (await graphql<Backlog>('{ syncStatus { backlog { pending processing failed } } }')).data?.syncStatus.backlog;
  return !!b && b.pending + b.processing + b.failed === 0;
}

/**
 * An account with `contacts` linked contacts is renamed in Dynamics (its Update webhook step): one
 * FANOUT, then every linked person's company. Timed from the rename until every person shows the
 * new name and the inbox is empty. Minimum: ceil(N/300) Marketo writes (and as many reads: the
 * engine reads every person before it writes, to merge safely).
 */
export async function runAccountRenameBench(options: { contacts: number; databaseUrl: string | undefined }): Promise<CallCount> {
  const token = randomBytes(24).toString('base64url');
  const { sims, service, close, secrets, dataDir } = await deployBenchService({ vendors: realisticVendors, pairs: 0, databaseUrl: options.databaseUrl, env: { GRAPHQL_API_TOKEN: token } });
  try {
    const accountId = '00000000-0000-4000-a000-000000000001';
    sims.dataverse.bulkInsert('account', [{ accountid: accountId, name: 'Before Rename' }]);
    const rows = Array.from({ length: options.contacts }, (_, i) => ({ email: `contact.${i}@example.com`, firstName: 'Linked', lastName: `Contact ${i}` }));
    const contactIds = rows.map((_, i) => `00000000-0000-4000-b000-${(i + 1).toString(16).padStart(12, '0')}`);
    sims.dataverse.bulkInsert(
      'contact',
      rows.map((r, i) => ({ contactid: contactIds[i], firstname: r.firstName, lastname: r.lastName, emailaddress1: r.email, 'parentcustomerid_account@odata.bind': `/accounts(${accountId})` })),
    );
    const marketoIds = sims.marketo.seedLeads(rows.map((r) => ({ ...r, company: 'Before Rename' })));
    // linked as a finished initial sync leaves them: the company agreed on both sides
    const db = await openDatabase({ url: options.databaseUrl, dataDir });
    try {
      for (let start = 0; start < rows.length; start += 1000) {
        await db.prisma.syncLink.createMany({
          data: marketoIds.slice(start, start + 1000).map((marketoId, k) => {
            const r = rows[start + k]!;
            return { marketoId, dynamicsEntity: 'CONTACT' as const, dynamicsId: contactIds[start + k]!, snapshot: { email: r.email, firstName: r.firstName, lastName: r.lastName, company: 'Before Rename' }, lastSyncedAt: new Date() };
          }),
        });
      }
    } finally {
      await db.close();
    }
    await service.start();
    await serviceReady(service.url);
    sims.dataverse.registerWebhook({ url: `${service.url}/webhooks/dynamics`, authType: 'WebhookKey', authValue: secrets.dynamics, entities: ['account'], messages: ['Update'], postImage: false });
    const graphql = graphqlOf(service.url, token);

    const before = apiCalls(sims);
    const started = performance.now();
    sims.dataverse.update('account', accountId, { name: 'After Rename' });
    let lost = options.contacts;
    for (;;) {
      await sleep(500);
      lost = marketoIds.filter((id) => sims.marketo.getLead(id)?.['company'] !== 'After Rename').length;
      if (lost === 0 && (await inboxEmpty(graphql))) break;
      if (performance.now() - started > 30 * 60_000) break;
    }
    const seconds = (performance.now() - started) / 1000;
    const after = apiCalls(sims);
    return {
      seconds,
      marketoByEndpoint: callsSince(before.marketoByEndpoint, after.marketoByEndpoint),
      dataverseByEndpoint: callsSince(before.byEndpoint, after.byEndpoint),
      marketoCalls: after.marketo - before.marketo,
      dataverseRequests: after.dynamics - before.dynamics,
      lost,
    };
  } finally {
    await close();
  }
}

/**
 * A Batch Sync Person of a static list of `persons` Marketo-only persons, started with GraphQL:
 * timed until the batch is done and the inbox empty (the re-syncs its creates queue included).
 * `lost`: persons with no link afterwards.
 */
export async function runBatchSyncBench(options: { persons: number; databaseUrl: string | undefined }): Promise<CallCount & { created: number; duplicates: number }> {
  const token = randomBytes(24).toString('base64url');
  const { sims, service, close } = await deployBenchService({ vendors: realisticVendors, pairs: 0, databaseUrl: options.databaseUrl, env: { GRAPHQL_API_TOKEN: token } });
  try {
    const ids = sims.marketo.seedLeads(Array.from({ length: options.persons }, (_, i) => ({ email: `fair.${i}@example.com`, firstName: 'Trade', lastName: `Show ${i}` })));
    const listId = sims.marketo.createList('Trade show', ids);
    const leadsBefore = sims.dataverse.count('lead');
    await service.start();
    await serviceReady(service.url);
    const graphql = graphqlOf(service.url, token);

    const before = apiCalls(sims);
    const started = performance.now();
    type Started = { data?: { startBatchSyncPerson: { ok: boolean; error: string | null; batch: { id: string } | null } } };
    const answer = await graphql<Started>('mutation($l: Int!) { startBatchSyncPerson(listId: $l) { ok error batch { id } } }', { l: listId });
    const batchId = answer.data?.startBatchSyncPerson.batch?.id;
    if (!batchId) throw new Error(`the batch did not start: ${JSON.stringify(answer)}`);
    type Progress = { data?: { batchSync: { status: string; persons: number; created: number } } };
    let progress: Progress['data'];
    for (;;) {
      await sleep(1000);
      progress = (await graphql<Progress>('query($id: ID!) { batchSync(id: $id) { status persons created } }', { id: batchId })).data;
      if (progress && progress.batchSync.status !== 'RUNNING' && (await inboxEmpty(graphql))) break;
      if (performance.now() - started > 60 * 60_000) break;
    }
    const seconds = (performance.now() - started) / 1000;
    const after = apiCalls(sims);
    const leads = sims.dataverse.list('lead');
    const byEmail = new Map<string, number>();
    for (const lead of leads) byEmail.set(String(lead['emailaddress1']), (byEmail.get(String(lead['emailaddress1'])) ?? 0) + 1);
    return {
      seconds,
      marketoByEndpoint: callsSince(before.marketoByEndpoint, after.marketoByEndpoint),
      dataverseByEndpoint: callsSince(before.byEndpoint, after.byEndpoint),
      marketoCalls: after.marketo - before.marketo,
      dataverseRequests: after.dynamics - before.dynamics,
      lost: options.persons - (progress?.batchSync.persons ?? 0),
      created: leads.length - leadsBefore,
      duplicates: [...byEmail.values()].reduce((n, c) => n + (c - 1), 0),
    };
  } finally {
    await close();
  }
}

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const perEndpoint = (calls: Record<string, number>) => Object.entries(calls).map(([e, n]) => `${e} ${n}`).join(', ');

/** The rows, each printed as soon as it is measured; the physical minimum beside each figure. */
export async function runCompanyBatchBench(options: { contacts: number; persons: number; databaseUrl: string | undefined; tag: string }): Promise<{ rows: string[][]; figures: Record<string, number> }> {
  const rows: string[][] = [];
  const figures: Record<string, number> = {};
  const push = (row: string[]) => {
    rows.push(row);
    console.log(`| ${row.join(' | ')} |`);
  };
  if (options.contacts > 0) {
    const r = await runAccountRenameBench({ contacts: options.contacts, databaseUrl: options.databaseUrl });
    const min = Math.ceil(options.contacts / MARKETO_BATCH);
    const writes = r.marketoByEndpoint['leads.sync'] ?? 0;
    const reads = r.marketoByEndpoint['leads.query'] ?? 0;
    push([
      `real limits: account renamed, ${options.contacts} linked contacts (${options.tag})`,
      String(options.contacts),
      fmt(options.contacts / r.seconds, 1),
      '',
      '',
      '',
      String(r.lost),
      `${writes} Marketo writes (min ${min}), ${reads} reads (min ${min}); ${r.dataverseRequests} Dataverse`,
      `every person's company in ${fmt(r.seconds, 1)} s; Marketo ${perEndpoint(r.marketoByEndpoint)}; Dataverse ${perEndpoint(r.dataverseByEndpoint)}`,
    ]);
    Object.assign(figures, { account_rename_seconds: Number(r.seconds.toFixed(1)), account_rename_marketo_writes: writes, account_rename_marketo_reads: reads, account_rename_marketo_minimum: min, account_rename_lost: r.lost });
  }
  if (options.persons > 0) {
    const r = await runBatchSyncBench({ persons: options.persons, databaseUrl: options.databaseUrl });
    const listMin = Math.ceil(options.persons / MARKETO_BATCH);
    const dataverseMin = Math.ceil(options.persons / DATAVERSE_BATCH) + Math.ceil(options.persons / DATAVERSE_EMAILS_PER_READ);
    push([
      `real limits: Batch Sync Person of ${options.persons} persons (${options.tag})`,
      String(options.persons),
      fmt(options.persons / r.seconds, 1),
      '',
      '',
      '',
      `${r.lost} (duplicates ${r.duplicates})`,
      `${r.marketoByEndpoint['lists.leads'] ?? 0} list pages (min ${listMin}), ${r.marketoCalls} Marketo in all; ${r.dataverseRequests} Dataverse (min ${dataverseMin}: a $batch per ${DATAVERSE_BATCH} creates, a read per ${DATAVERSE_EMAILS_PER_READ} emails)`,
      `${r.created} leads created in ${fmt(r.seconds, 1)} s, re-syncs included; Marketo ${perEndpoint(r.marketoByEndpoint)}; Dataverse ${perEndpoint(r.dataverseByEndpoint)}`,
    ]);
    Object.assign(figures, {
      batch_sync_seconds: Number(r.seconds.toFixed(1)),
      batch_sync_marketo_calls: r.marketoCalls,
      batch_sync_list_pages: r.marketoByEndpoint['lists.leads'] ?? 0,
      batch_sync_dataverse_requests: r.dataverseRequests,
      batch_sync_dataverse_minimum: dataverseMin,
      batch_sync_duplicates: r.duplicates,
      batch_sync_lost: r.lost,
    });
  }
  return { rows, figures };
}

export const companyBatchDefaults = { contacts: 5_000, persons: 20_000 };
