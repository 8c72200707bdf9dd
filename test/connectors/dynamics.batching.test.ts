import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createDataverseClient,
  DataverseConflictError,
  DataverseValidationError,
  type DataverseClient,
  type DataverseClientOptions,
} from '../../src/connectors/dynamics/index.ts';
import { createBatchSizer } from '../../src/connectors/dynamics/dataverse.batch.ts';
import { createDataversePacer } from '../../src/connectors/dynamics/dataverse.pacing.ts';
import { createDynamicsPort } from '../../src/connectors/dynamics/dynamics.port.ts';
import { startDataverseSimulator, type DataverseSimulator } from '../../src/sandbox/dynamics/index.ts';
import type { FieldBinding } from '../../src/sync/ports.ts';

// Batching and pacing of the Dataverse client, checked by counting requests and answers (never by
// wall-clock speed).

let sim: DataverseSimulator;
const clients: DataverseClient[] = [];
/** the simulator's clock; a test may replace it (reset to the wall clock before each) */
let simNow: () => number = Date.now;

beforeAll(async () => {
  sim = await startDataverseSimulator({ webhookRetryDelayMs: 10, now: () => simNow() });
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await sim.close();
});
beforeEach(() => {
  simNow = Date.now;
  sim.admin.reset();
  sim.admin.setLimits({ requestsPerWindow: 6000, windowMs: 300_000, maxConcurrent: 52, executionMsPerWindow: 1_200_000 });
});

function client(extra: Partial<DataverseClientOptions> = {}) {
  const c = createDataverseClient({
    url: sim.url,
    tenantId: sim.tenantId,
    clientId: sim.clientId,
    clientSecret: sim.clientSecret,
    tokenUrl: sim.tokenUrl,
    retryBaseDelayMs: 10,
    ...extra,
  });
  clients.push(c);
  return c;
}

const requests = (endpoint: string) => sim.admin.stats()[endpoint]?.calls ?? 0;
const refused = () => Object.values(sim.admin.stats()).reduce((n, s) => n + (s.byStatus['429'] ?? 0), 0);

async function settle<T>(promises: Promise<T>[]): Promise<PromiseSettledResult<T>[]> {
  return Promise.allSettled(promises);
}

describe('Dataverse writes in $batch', () => {
  it('carries the writes of all work in flight in one batch request, each with its own outcome', async () => {
    const c = client({ initialBatchSize: 50 });
    await c.whoAmI();
    const leads = Array.from({ length: 6 }, (_, i) => sim.admin.create('lead', { lastname: `L${i}` }));
    sim.admin.resetStats();
    const outcomes = await settle([
      ...leads.slice(0, 4).map((l) => c.updateRecord('lead', String(l.leadid), { jobtitle: 'Batched' }, { etag: String(l['@odata.etag']) })),
      // a stale etag and a business-rule refusal fail alone
      c.updateRecord('lead', String(leads[4]!.leadid), { jobtitle: 'Stale' }, { etag: 'W/"1"' }),
      c.updateRecord('lead', String(leads[5]!.leadid), { lastname: '' }, { etag: String(leads[5]!['@odata.etag']) }),
      c.createRecord('contact', { lastname: 'Created alongside' }),
    ]);
    expect(requests('POST $batch')).toBe(1);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'rejected', 'fulfilled']);
    expect((outcomes[4] as PromiseRejectedResult).reason).toBeInstanceOf(DataverseConflictError);
    const refusal = (outcomes[5] as PromiseRejectedResult).reason as DataverseValidationError;
    expect(refusal).toBeInstanceOf(DataverseValidationError);
    expect(refusal.message).toBe('Last Name is required to save a lead.');
    for (const l of leads.slice(0, 4)) expect(sim.admin.get('lead', String(l.leadid))?.jobtitle).toBe('Batched');
    expect(sim.admin.count('contact')).toBe(1);
    expect(c.stats()).toMatchObject({ batches: 1, batchOperations: 7 });
  });

  it('returns the record as the server stored it after a synchronous plug-in rewrote a value, single and in a batch', async () => {
    sim.admin.addValueRewrite({ table: 'contact', column: 'address1_country', from: 'usa', to: 'United States' });
    const bindings: FieldBinding[] = [
      { field: 'country', type: 'string', marketoField: 'country', dynamicsAttribute: 'address1_country', valueMap: null },
      { field: 'lastName', type: 'string', marketoField: 'lastName', dynamicsAttribute: 'lastname', valueMap: null },
    ];
    const port = createDynamicsPort({ client: client() });
    const created = await port.create('CONTACT', { country: 'usa', lastName: 'Single' }, bindings);
    expect(created.fields.country).toBe('United States');
    const stored = sim.admin.get('contact', created.id)!;
    expect(created.etag).toBe(stored['@odata.etag']);

    const others = await Promise.all(Array.from({ length: 3 }, (_, i) => port.create('CONTACT', { country: 'Canada', lastName: `B${i}` }, bindings)));
    sim.admin.resetStats();
    const updated = await Promise.all([
      port.update('CONTACT', created.id, { country: 'USA' }, bindings, created),
      ...others.map((o) => port.update('CONTACT', o.id, { country: 'usa' }, bindings, o)),
    ]);
    expect(requests('POST $batch')).toBe(1);
    expect(updated.map((u) => u.fields.country)).toEqual(['United States', 'United States', 'United States', 'United States']);
    for (const u of updated) expect(u.etag).toBe(sim.admin.get('contact', u.id)!['@odata.etag']);
  });

  it('sends the writes of a steady rate as several small batches in parallel, and fills each batch under a burst', async () => {
    // the clock stands still: the write rate is what was asked, however fast this machine runs
    const c = client({ initialBatchSize: 200, now: () => 0 });
    await c.whoAmI();
    const create = (i: number) => c.createRecord('contact', { contactid: randomUUID(), lastname: `Rate${i}` }, { columns: ['lastname'] });
    await create(-1); // the first batch goes alone, its size not yet measured
    const before = requests('POST $batch');
    // 41 writes in the last second: batches of 15 in parallel, a 40-operation request would run 40 in a row
    await Promise.all(Array.from({ length: 40 }, (_, i) => create(i)));
    expect(requests('POST $batch') - before).toBe(3);
    // 441: a burst fills batches as far as their size allows
    await Promise.all(Array.from({ length: 400 }, (_, i) => create(100 + i)));
    expect(requests('POST $batch') - before).toBe(5);
    expect(sim.admin.count('contact')).toBe(441);
  });

  it('grows the batch to what its measured time per operation fits in four fifths of the target, and halves it when one is slow or refused for execution time', () => {
    const sizer = createBatchSizer({ initial: 10, targetMs: 1000 });
    const table: [operations: number, elapsedMs: number, next: number][] = [
      [10, 100, 80], // 10 ms an operation: 80 fit in 800 ms
      [80, 200, 320], // 2.5 ms an operation: 320 fit
      [5, 100, 320], // not full: says nothing about a bigger one
      [320, 900, 320], // within the target: 284 would fit in 800 ms, but a batch within the target never shrinks the size
      [320, 1500, 160], // over the target: halved
      [160, 1, 1000], // at most eightfold a step
    ];
    for (const [operations, elapsed, next] of table) {
      sizer.observe(operations, elapsed);
      expect(sizer.size()).toBe(next);
    }
    sizer.shrink();
    expect(sizer.size()).toBe(500);
    sizer.shrink();
    expect(sizer.size()).toBe(250);
    for (let i = 0; i < 20; i += 1) sizer.observe(sizer.size(), 1);
    expect(sizer.size()).toBe(1000);
  });
});

describe('Dataverse reads batched with the In filter', () => {
  it('reads the records of concurrent callers in one request, and finds many emails in one', async () => {
    const ids = Array.from({ length: 30 }, () => randomUUID());
    sim.admin.bulkInsert('contact', ids.map((contactid, i) => ({ contactid, lastname: `R${i}`, emailaddress1: `r${i}@example.com` })));
    const c = client();
    await c.whoAmI();
    sim.admin.resetStats();
    const reads = await Promise.all(ids.map((id) => c.getRecords('contact', [id], ['lastname'])));
    expect(reads.map((rows) => rows.map((r) => r.id))).toEqual(ids.map((id) => [id]));
    expect(requests('GET contacts')).toBe(1);

    sim.admin.resetStats();
    const found = await Promise.all(ids.map((_, i) => c.findByEmail('contact', `R${i}@Example.com`, ['lastname'])));
    expect(found.map((rows) => rows.map((r) => r.values.lastname))).toEqual(ids.map((_, i) => [`R${i}`]));
    expect(found[0]![0]!.values).not.toHaveProperty('emailaddress1');
    expect(requests('GET contacts')).toBe(1);
  });

  it('splits a read whose ids would pass the URL length limit', async () => {
    const ids = Array.from({ length: 1200 }, () => randomUUID());
    sim.admin.bulkInsert('contact', ids.map((contactid, i) => ({ contactid, lastname: `U${i}` })));
    const c = client();
    await c.whoAmI();
    sim.admin.resetStats();
    const rows = await c.getRecords('contact', ids, ['lastname']);
    expect(rows).toHaveLength(1200);
    // 45 URL characters per id, 16 KB per URL: about 350 ids a request
    expect(requests('GET contacts')).toBe(4);
    expect(sim.admin.stats()['GET contacts']?.byStatus['414']).toBeUndefined();
  });
});

describe('Dataverse pacing to the service protection limits', () => {
  it('drains 10,000 queued writes in few batch requests and no 429 against the real limits scaled down', async () => {
    // the simulator allows 6 requests per second; the client spends 5, one request at a time, so
    // that each batch is sized by the answer of the one before it
    sim.admin.setLimits({ requestsPerWindow: 6, windowMs: 1000 });
    // The simulator counts each request at the instant the client sent it, not when it got round to
    // it: how long a request takes to reach it on a busy machine then moves no request into another
    // window. (One request in flight: the request being answered is the one sent last.)
    let sentAt = Date.now();
    simNow = () => sentAt;
    const stamped: typeof fetch = (input, init) => {
      sentAt = Date.now();
      return fetch(input, init);
    };
    // growth of the batch size by its answer time is made independent of this machine's speed
    const c = client({ budget: { requestsPerWindow: 5, windowMs: 1000, maxConcurrent: 1 }, batchTargetMs: 600_000, fetch: stamped });
    await c.whoAmI();
    const writes = Array.from({ length: 10_000 }, (_, i) => c.createRecord('contact', { contactid: randomUUID(), lastname: `Bulk${i}` }, { columns: ['lastname'] }));
    const results = await Promise.all(writes);
    expect(results).toHaveLength(10_000);
    expect(sim.admin.count('contact')).toBe(10_000);
    expect(refused()).toBe(0);
    // 10, 80, 640, then 1000 a batch (eightfold a step) and the 270 left: 13 requests
    expect(requests('POST $batch')).toBe(13);
  }, 60_000);

  it('without the budget the same simulator answers 429 (the test above can fail)', async () => {
    sim.admin.setLimits({ requestsPerWindow: 6, windowMs: 1000 });
    // the simulator's clock stands still: all the requests fall in one window, however long they take
    const frozen = Date.now();
    simNow = () => frozen;
    // and the client's pauses pass on its own clock, so its retries (refused too) do not wait
    let clock = Date.now();
    const sleep = (ms: number) => ((clock += ms), Promise.resolve());
    const c = client({ budget: { requestsPerWindow: 10_000, windowMs: 1000 }, now: () => clock, sleep });
    await c.whoAmI();
    await Promise.all(Array.from({ length: 12 }, (_, i) => c.getRecord('contact', randomUUID(), [`lastname`]).catch(() => i)));
    expect(refused()).toBeGreaterThan(0);
  });

  it('logs one line per throttling episode, pauses for Retry-After and restarts with one request in flight', async () => {
    const lines: { level: number; msg: string }[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as { level: number; msg: string }) });
    const c = client({ logger });
    await c.whoAmI();
    sim.admin.injectFault({ kind: 'rate_limit', count: 5, retryAfterSeconds: 1 });
    const ids = Array.from({ length: 40 }, () => randomUUID());
    await Promise.all(ids.map((id) => c.getRecord('contact', id, ['lastname'])));
    const warnings = lines.filter((l) => l.level === 40);
    expect(warnings.map((l) => l.msg)).toEqual(['Dataverse throttled: pausing every request for Retry-After, then restarting slowly']);
    expect(lines.filter((l) => l.msg === 'Dataverse throttling over')).toHaveLength(1);
    expect(c.stats()).toMatchObject({ throttled: 5, throttlingEpisodes: 1 });
  }, 30_000);

  it('keeps execution time within its share: a request waits until the time charged is earned back', async () => {
    let clock = 0;
    const slept: number[] = [];
    const pacer = createDataversePacer({
      budget: { executionMsPerWindow: 1000, windowMs: 10_000 },
      now: () => clock,
      sleep: (ms) => {
        slept.push(ms);
        clock += ms;
        return Promise.resolve();
      },
    });
    // held alone: a bucket of 2% (20 ms), the other 980 ms earned over the window (plus its 50 ms of jitter)
    const earnMs = (ms: number) => Math.ceil((ms * 10_050) / 980);
    await pacer.schedule(() => Promise.resolve(pacer.observe(new Headers(), 600)));
    expect(slept).toEqual([]);
    // 600 ms charged against a bucket of 20: the next request waits until 580 ms are earned back
    await pacer.schedule(() => Promise.resolve(pacer.observe(new Headers(), 10)));
    expect(slept).toEqual([earnMs(580)]);
    // the server's own count wins when it says less is left: with nothing left, the next request waits
    clock += 20_000;
    await pacer.schedule(() => Promise.resolve(pacer.observe(new Headers({ 'x-ms-ratelimit-time-remaining-xrm-requests': '0.00' }), 10)));
    await pacer.schedule(() => Promise.resolve());
    expect(slept).toHaveLength(2);
    await pacer.stop();
  });
});
