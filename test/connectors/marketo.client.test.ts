import { afterEach, describe, expect, it } from 'vitest';
import {
  createMarketoClient,
  marketoDripPlan,
  marketoErrorKind,
  MarketoApiError,
  parseMarketoDate,
  type MarketoActivity,
  type MarketoClient,
  type MarketoClientOptions,
} from '../../src/connectors/marketo/index.ts';
import { startMarketoSimulator, type MarketoSimulatorOptions, type StartedMarketoSimulator } from '../../src/sandbox/marketo/index.ts';

const open: { sim: StartedMarketoSimulator; client: MarketoClient }[] = [];

afterEach(async () => {
  for (const { sim, client } of open.splice(0)) {
    await client.close();
    await sim.close();
  }
});

async function setup(simOptions: MarketoSimulatorOptions = {}, clientOptions: Partial<MarketoClientOptions> = {}) {
  const sim = await startMarketoSimulator(simOptions);
  const client = createMarketoClient({
    baseUrl: sim.url,
    clientId: sim.clientId,
    clientSecret: sim.clientSecret,
    retry: { baseDelayMs: 5, rateLimitDelayMs: 20, maxDelayMs: 200, rateLimitRetries: 30 },
    ...clientOptions,
  });
  open.push({ sim, client });
  return { sim, client };
}

async function rejection(promise: Promise<unknown>): Promise<MarketoApiError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof MarketoApiError) return error;
    throw error;
  }
  throw new Error('expected the call to fail');
}

function people(count: number, from = 1) {
  return Array.from({ length: count }, (_, i) => ({ email: `person${from + i}@example.com`, firstName: `P${from + i}` }));
}

describe('Marketo error codes', () => {
  it.each([
    ['606', 'rate_limited'],
    ['615', 'rate_limited'],
    ['607', 'quota_exhausted'],
    ['601', 'auth'],
    ['602', 'auth'],
    ['604', 'transient'],
    ['608', 'transient'],
    ['611', 'transient'],
    ['713', 'transient'],
    ['603', 'forbidden'],
    ['609', 'permanent'],
    ['1003', 'permanent'],
  ])('maps code %s to kind %s', (code, kind) => {
    expect(marketoErrorKind(code)).toBe(kind);
  });

  it('parses activity dates with and without a colon in the offset', () => {
    expect(parseMarketoDate('2014-09-17T22:31:49+0000').toISOString()).toBe('2014-09-17T22:31:49.000Z');
    expect(parseMarketoDate('2023-01-16T23:32:19Z').toISOString()).toBe('2023-01-16T23:32:19.000Z');
  });
});

describe('Marketo client: leads', () => {
  it('learns from the token which API user it acts as, so the sweep can drop its own changes', async () => {
    const { client } = await setup({ apiUser: 'sync@acme.example' });
    expect(client.apiUser()).toBeUndefined();
    await client.describeLeadFields();
    expect(client.apiUser()).toBe('sync@acme.example');
  });

  it('returns created, updated and skipped results per record in input order', async () => {
    const { client } = await setup();
    await client.syncLeads({ action: 'createOnly', lookupField: 'email', input: [{ email: 'taken@example.com' }] });
    const results = await client.syncLeads({
      action: 'createOrUpdate',
      lookupField: 'email',
      input: [
        { email: 'new@example.com', firstName: 'New' },
        { email: 'TAKEN@example.com', lastName: 'Updated' },
        { email: 'bad@example.com', noSuchField: 'x' },
        { email: 'ro@example.com', createdAt: '2020-01-01T00:00:00Z' },
        { firstName: 'No email' },
      ],
    });
    expect(results.map((r) => r.status)).toEqual(['created', 'updated', 'skipped', 'skipped', 'skipped']);
    expect(results[2]?.reasons?.[0]?.code).toBe('1006');
    expect(results[3]?.reasons?.[0]?.code).toBe('1006');
    expect(results[4]?.reasons?.[0]?.code).toBe('1002');
    expect(results[1]?.id).toBe(1);

    const createOnly = await client.syncLeads({ action: 'createOnly', lookupField: 'email', input: [{ email: 'new@example.com' }] });
    expect(createOnly[0]).toMatchObject({ status: 'skipped', reasons: [{ code: '1005' }] });
    const updateOnly = await client.syncLeads({ action: 'updateOnly', lookupField: 'id', input: [{ id: 999, firstName: 'x' }] });
    expect(updateOnly[0]).toMatchObject({ status: 'skipped', reasons: [{ code: '1004' }] });
  });

  it('splits 650 records into calls of at most 300 and keeps input order', async () => {
    const { sim, client } = await setup();
    const results = await client.syncLeads({ action: 'createOrUpdate', lookupField: 'email', input: people(650) });
    expect(results).toHaveLength(650);
    expect(results.map((r) => r.id)).toEqual(Array.from({ length: 650 }, (_, i) => i + 1));
    expect(sim.admin.counters().byEndpoint['leads.sync']?.calls).toBe(3);
    expect(client.stats().byEndpoint['leads.sync']).toMatchObject({ calls: 3 });
  });

  it('reads leads by id in chunks of 300 and by email case-insensitively', async () => {
    const { sim, client } = await setup();
    await client.syncLeads({ action: 'createOrUpdate', lookupField: 'email', input: people(350) });
    const byId = await client.getLeadsByIds(
      Array.from({ length: 350 }, (_, i) => i + 1),
      ['email', 'firstName'],
    );
    expect(byId).toHaveLength(350);
    expect(sim.admin.counters().byEndpoint['leads.query']?.calls).toBe(2);
    const byEmail = await client.getLeadsByEmail(['PERSON7@Example.com'], ['email', 'firstName', 'updatedAt']);
    expect(byEmail).toEqual([expect.objectContaining({ id: 7, email: 'person7@example.com', firstName: 'P7' })]);
    expect(String(byEmail[0]?.['updatedAt'])).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
  });

  it('sends long filter queries as POST with _method=GET instead of exceeding the 8 KB URI limit', async () => {
    const { client } = await setup();
    const emails = Array.from({ length: 300 }, (_, i) => `a-rather-long-mailbox-name-${i}@subdomain.example.com`);
    await client.syncLeads({ action: 'createOrUpdate', lookupField: 'email', input: emails.map((email) => ({ email })) });
    const found = await client.getLeadsByEmail(emails, ['email']);
    expect(found).toHaveLength(300);
  });

  it('deletes leads and reports unknown ids as skipped', async () => {
    const { client } = await setup();
    await client.syncLeads({ action: 'createOrUpdate', lookupField: 'email', input: people(2) });
    const results = await client.deleteLeads([1, 42]);
    expect(results).toEqual([
      { id: 1, status: 'deleted' },
      { id: 42, status: 'skipped', reasons: [{ code: '1004', message: 'Lead not found' }] },
    ]);
  });

  it('describes fields from describe2 with updateable and searchable flags', async () => {
    const { client } = await setup();
    const fields = await client.describeLeadFields();
    const byName = new Map(fields.map((f) => [f.name, f]));
    expect(byName.get('email')).toMatchObject({ dataType: 'email', length: 255, updateable: true, searchable: true });
    expect(byName.get('updatedAt')).toMatchObject({ readOnly: true, updateable: false });
    expect(byName.get('microsoftIsDeleted')).toMatchObject({ dataType: 'boolean', updateable: true });
    for (const name of ['email', 'firstName', 'lastName', 'title', 'phone', 'mobilePhone', 'company', 'address', 'city', 'state', 'postalCode', 'country', 'unsubscribed']) {
      expect(byName.has(name)).toBe(true);
    }
  });

  it('reports daily usage from stats/usage.json and its own counters', async () => {
    const { client } = await setup();
    await client.getLeadsByIds([1]);
    const usage = await client.getDailyUsage();
    expect(usage[0]?.total).toBe(2);
    expect(client.stats()).toMatchObject({ calls: 2, byEndpoint: { 'leads.query': { calls: 1 }, 'stats.usage': { calls: 1 } } });
  });
});

describe('Marketo client: authentication', () => {
  it('shares one token request among concurrent callers', async () => {
    const { client } = await setup();
    await Promise.all(Array.from({ length: 8 }, (_, i) => client.getLeadsByIds([i + 1])));
    expect(client.stats().tokenRequests).toBe(1);
  });

  it('renews an expired token mid-run and replays the call (602)', async () => {
    const { sim, client } = await setup();
    await client.getLeadsByIds([1]);
    sim.admin.expireTokens();
    await expect(client.getLeadsByIds([1])).resolves.toEqual([]);
    expect(sim.admin.counters().byEndpoint['leads.query']?.errors['602']).toBe(1);
    expect(client.stats().tokenRequests).toBe(2);
  });

  it('renews a revoked token and replays the call (601)', async () => {
    const { sim, client } = await setup();
    await client.getLeadsByIds([1]);
    sim.admin.revokeTokens();
    await expect(client.syncLeads({ action: 'createOrUpdate', lookupField: 'email', input: people(1) })).resolves.toHaveLength(1);
    expect(sim.admin.counters().byEndpoint['leads.sync']?.errors['601']).toBe(1);
  });

  it('renews a short-lived token before it expires', async () => {
    const { sim, client } = await setup({ tokenTtlSeconds: 2 }, { tokenRefreshSkewMs: 1500 });
    await client.getLeadsByIds([1]);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    await client.getLeadsByIds([1]);
    expect(sim.admin.counters().byEndpoint['leads.query']?.errors['602']).toBeUndefined();
  });

  it('throws an auth error when the replay after one renewal is refused again', async () => {
    const { sim, client } = await setup();
    sim.admin.injectFault({ type: 'code', code: '601', times: 2 });
    const error = await rejection(client.getLeadsByIds([1]));
    expect(error).toMatchObject({ kind: 'auth', code: '601', system: 'marketo' });
  });

  it('throws an auth error for wrong client credentials', async () => {
    const { client: _unused, sim } = await setup();
    const client = createMarketoClient({ baseUrl: sim.url, clientId: sim.clientId, clientSecret: 'wrong' });
    const error = await rejection(client.getLeadsByIds([1]));
    expect(error).toMatchObject({ kind: 'auth', httpStatus: 401 });
    expect(error.message).not.toContain('wrong');
    await client.close();
  });
});

describe('Marketo client: limits and retries', () => {
  it('looks up the emails of concurrent callers in one call, each caller getting the persons of its own emails', async () => {
    const { sim, client } = await setup();
    const ids = sim.admin.seedLeads(Array.from({ length: 30 }, (_, i) => ({ email: `Shared${i}@Example.com`, firstName: `S${i}` })));
    const before = sim.admin.counters().byEndpoint['leads.query']?.calls ?? 0;
    const found = await Promise.all(ids.map((_, i) => client.getLeadsByEmail([`shared${i}@example.com`], ['firstName'])));
    expect(found.map((leads) => leads.map((l) => l.id))).toEqual(ids.map((id) => [id]));
    expect(found.map((leads) => leads[0]!['firstName'])).toEqual(ids.map((_, i) => `S${i}`));
    expect((sim.admin.counters().byEndpoint['leads.query']?.calls ?? 0) - before).toBe(1);
  });

  it('rides out a 606 rate-limit storm without losing a call', async () => {
    const { sim, client } = await setup({ limits: { callsPerWindow: 5, windowMs: 250 } }, { limits: { callsPer20s: 50, windowMs: 250 } });
    // by filter: look-ups by id or email of concurrent callers would share one call
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => client.getLeadsByFilter('email', [`person${i}@example.com`])));
    expect(results).toHaveLength(30);
    const counters = sim.admin.counters().byEndpoint['leads.query'];
    expect(counters?.ok).toBe(30);
    expect(counters?.errors['606']).toBeGreaterThan(0);
  });

  it('rides out 615 concurrency rejections without losing a call', async () => {
    // a bigger share than the instance's concurrency: writes of different kinds go out together
    const { sim, client } = await setup({ limits: { maxConcurrent: 1 }, latencyMs: 20 }, { limits: { callsPer20s: 100, windowMs: 1_000 } });
    const actions = ['createOrUpdate', 'createOnly', 'updateOnly'] as const;
    await Promise.all(actions.map((action, i) => client.syncLeads({ action, lookupField: action === 'updateOnly' ? 'id' : 'email', input: action === 'updateOnly' ? [{ id: 1, firstName: 'x' }] : people(1, i + 1) })));
    const counters = sim.admin.counters().byEndpoint['leads.sync'];
    expect(counters?.ok).toBe(3);
    expect(counters?.errors['615']).toBeGreaterThan(0);
  });

  it("never passes the instance's 100 calls in a window, even when its share is all of them", async () => {
    // counted, not timed: a fixed number of calls, and the most of them that started in any window
    const windowMs = 1_000;
    const { sim, client } = await setup({ limits: { callsPerWindow: 100, windowMs } }, { limits: { callsPer20s: 100, windowMs } });
    const started: number[] = [];
    // sequential reads by email (never shared), enough to span a few windows
    for (let i = 0; i < 220; i += 1) {
      await client.getLeadsByEmail([`person${i}@example.com`]);
      started.push(performance.now());
    }
    const mostInAnyWindow = Math.max(...started.map((t) => started.filter((u) => u >= t && u < t + windowMs).length));
    expect(mostInAnyWindow).toBeLessThanOrEqual(100);
    expect(sim.admin.counters().byEndpoint['leads.query']?.errors['606']).toBeUndefined();
  });

  it('plans its drip to spend its whole share and never more than the instance allows, whatever the share', () => {
    for (const share of [1, 3, 4, 10, 25, 50, 75, 80, 96, 100]) {
      for (const windowMs of [1_000, 20_000]) {
        const { bucket, dripMs } = marketoDripPlan(share, windowMs);
        // the most calls any window can hold: the full bucket plus every drip within it
        const most = bucket + Math.floor(windowMs / dripMs);
        expect(most).toBeLessThanOrEqual(100);
        // the share is spent: at most a drip or two lost to rounding, and never less than 90% of it
        expect(Math.floor(windowMs / dripMs) + bucket).toBeGreaterThanOrEqual(Math.min(share, Math.floor(share * 0.9)));
      }
    }
  });

  it('keeps its own calls under the configured rate without seeing 606', async () => {
    const { sim, client } = await setup({ limits: { callsPerWindow: 10, windowMs: 400 } }, { limits: { callsPer20s: 5, windowMs: 400 } });
    await Promise.all(Array.from({ length: 12 }, (_, i) => client.getLeadsByFilter('email', [`person${i}@example.com`])));
    expect(sim.admin.counters().byEndpoint['leads.query']?.ok).toBe(12);
    expect(sim.admin.counters().byEndpoint['leads.query']?.errors['606']).toBeUndefined();
  });

  it('never retries 607 and fails fast afterwards', async () => {
    const { sim, client } = await setup();
    sim.admin.injectFault({ type: 'code', code: '607', times: 1 });
    const error = await rejection(client.getLeadsByIds([1]));
    expect(error).toMatchObject({ kind: 'quota_exhausted', code: '607', retryable: false });
    await rejection(client.getLeadsByIds([2]));
    expect(sim.admin.counters().byEndpoint['leads.query']?.calls).toBe(1);
  });

  it('stops at the local daily budget with quota_exhausted', async () => {
    const { client } = await setup({}, { limits: { dailyQuota: 2 } });
    await client.getLeadsByIds([1]);
    await client.getLeadsByIds([2]);
    expect(await rejection(client.getLeadsByIds([3]))).toMatchObject({ kind: 'quota_exhausted' });
  });

  it('retries 604 and 611 transient errors until the call succeeds', async () => {
    const { sim, client } = await setup();
    sim.admin.injectFault({ type: 'code', code: '604', times: 1 });
    sim.admin.injectFault({ type: 'code', code: '611', times: 2 });
    await expect(client.getLeadsByIds([1])).resolves.toEqual([]);
    expect(client.stats()).toMatchObject({ retries: 3, errors: { '604': 1, '611': 2 } });
  });

  it('retries HTTP 5xx and gives up with a transient error after the retry budget', async () => {
    const { sim, client } = await setup({}, { retry: { baseDelayMs: 5, transientRetries: 2 } });
    sim.admin.injectFault({ type: 'http', status: 502, times: 1 });
    await expect(client.getLeadsByIds([1])).resolves.toEqual([]);
    sim.admin.injectFault({ type: 'http', status: 500 });
    const error = await rejection(client.getLeadsByIds([1]));
    expect(error).toMatchObject({ kind: 'transient', httpStatus: 500 });
    expect(sim.admin.counters().byEndpoint['leads.query']?.errors['500']).toBe(3);
  });

  it('does not retry permanent errors', async () => {
    const { sim, client } = await setup();
    sim.admin.injectFault({ type: 'code', code: '603', times: 5 });
    expect(await rejection(client.getLeadsByIds([1]))).toMatchObject({ kind: 'forbidden', code: '603' });
    expect(sim.admin.counters().byEndpoint['leads.query']?.calls).toBe(1);
  });

  it('times out a hung call and retries it', async () => {
    const { sim, client } = await setup({}, { timeoutMs: 150 });
    sim.admin.injectFault({ type: 'hang', times: 1, endpoint: 'leads.query' });
    await expect(client.getLeadsByIds([1])).resolves.toEqual([]);
    expect(client.stats().errors['timeout']).toBe(1);
  });

  it('does not replay a timed-out createOnly, whose write may have happened', async () => {
    const { sim, client } = await setup({}, { timeoutMs: 150 });
    sim.admin.injectFault({ type: 'hang', times: 1, endpoint: 'leads.sync' });
    const error = await rejection(client.syncLeads({ action: 'createOnly', lookupField: 'email', input: people(1) }));
    expect(error.kind).toBe('transient');
    expect(sim.admin.counters().byEndpoint['leads.sync']?.calls).toBe(1);
  });
});

describe('Marketo client: calls shared by concurrent callers', () => {
  const after = async <T>(promise: Promise<T>, t0: number) => {
    await promise;
    return performance.now() - t0;
  };

  it('reads by id requested while a read waits for the limiter ride along in that call', async () => {
    // two calls of budget at once, then one every 500 ms
    const { sim, client } = await setup({}, { limits: { callsPer20s: 4, windowMs: 2_000 } });
    await client.syncLeads({ action: 'createOrUpdate', lookupField: 'email', input: people(12) });
    const calls = () => sim.admin.counters().byEndpoint['leads.query']?.calls ?? 0;
    const first = client.getLeadsByIds([1]);
    await first;
    // the bucket is now short of a read: these wait together and are filled when admitted
    const waiting = Array.from({ length: 10 }, (_, i) => client.getLeadsByIds([i + 2, 1], ['email', 'firstName']));
    const late = new Promise<unknown>((resolve) => setTimeout(() => resolve(client.getLeadsByIds([12], ['email', 'firstName'])), 100));
    const results = await Promise.all(waiting);
    await late;
    expect(results.map((leads) => leads.map((l) => l.id).sort((a, b) => a - b))).toEqual(Array.from({ length: 10 }, (_, i) => [1, i + 2]));
    expect(results[3]?.find((l) => l.id === 5)).toMatchObject({ email: 'person5@example.com', firstName: 'P5' });
    expect(calls()).toBe(2);
  });

  it('answers each caller of a shared write with its own records, in its own order', async () => {
    const { sim, client } = await setup();
    await client.syncLeads({ action: 'createOrUpdate', lookupField: 'email', input: people(6) });
    const before = sim.admin.counters().byEndpoint['leads.sync']?.calls ?? 0;
    const [a, b, c] = await Promise.all([
      client.syncLeads({ action: 'updateOnly', lookupField: 'id', input: [{ id: 3, firstName: 'A' }, { id: 999, firstName: 'missing' }] }),
      client.syncLeads({ action: 'updateOnly', lookupField: 'id', input: [{ id: 1, firstName: 'B' }] }),
      client.syncLeads({ action: 'updateOnly', lookupField: 'id', input: [{ id: 6, firstName: 'C' }, { id: 2, firstName: 'C2' }] }),
    ]);
    expect(a.map((r) => [r.id ?? null, r.status])).toEqual([[3, 'updated'], [null, 'skipped']]);
    expect(b.map((r) => [r.id, r.status])).toEqual([[1, 'updated']]);
    expect(c.map((r) => [r.id, r.status])).toEqual([[6, 'updated'], [2, 'updated']]);
    expect((sim.admin.counters().byEndpoint['leads.sync']?.calls ?? 0) - before).toBe(1);
    expect(sim.admin.getLead(2)?.firstName).toBe('C2');
  });

  it('keeps a call in reserve after a read, so the write that follows it does not wait for the next drip', async () => {
    // budget: two calls at once, then one every 500 ms
    const { client } = await setup({}, { limits: { callsPer20s: 4, windowMs: 2_000 } });
    const t0 = performance.now();
    await client.getLeadsByIds([1]);
    // counted, not timed: the read left a call in the bucket for the write that follows it
    expect(await client.callsAvailable()).toBeGreaterThanOrEqual(1);
    await client.syncLeads({ action: 'createOrUpdate', lookupField: 'email', input: people(1) });
    // the next read waits until the bucket again holds a read and a write: two drips (a lower bound,
    // which a busy machine only makes longer)
    const readMs = await after(client.getLeadsByIds([1]), t0);
    expect(readMs).toBeGreaterThan(950);
  });

  it('lets a write go before reads that were already waiting', async () => {
    const { client } = await setup({}, { limits: { callsPer20s: 4, windowMs: 2_000 } });
    await client.getLeadsByIds([1]);
    const order: string[] = [];
    const reads = Array.from({ length: 3 }, (_, i) => client.getLeadsByEmail([`r${i}@example.com`]).then(() => order.push(`read ${i}`)));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const write = client.syncLeads({ action: 'createOrUpdate', lookupField: 'email', input: people(1) }).then(() => order.push('write'));
    await Promise.all([...reads, write]);
    expect(order[0]).toBe('write');
  });
});

describe('Marketo client: change feeds', () => {
  async function collect(iterator: AsyncGenerator<{ items: MarketoActivity[]; nextPageToken: string; moreResult: boolean }>) {
    const items: MarketoActivity[] = [];
    const tokens: string[] = [];
    let pages = 0;
    let emptyPages = 0;
    for await (const page of iterator) {
      pages++;
      if (page.items.length === 0) emptyPages++;
      items.push(...page.items);
      tokens.push(page.nextPageToken);
    }
    return { items, tokens, pages, emptyPages };
  }

  it('follows short and empty pages until moreResult is false and returns field values', async () => {
    const { sim, client } = await setup({ feed: { scanBlock: 4, emptyPageRate: 0.3 }, seed: 7 });
    const token = await client.getPagingToken(new Date(Date.now() - 60_000));
    await client.syncLeads({ action: 'createOrUpdate', lookupField: 'email', input: people(5) });
    for (let i = 1; i <= 5; i++) sim.admin.updateLead(i, { title: `Title ${i}`, city: 'Paris' });
    await client.syncLeads({ action: 'updateOnly', lookupField: 'id', input: [{ id: 2, firstName: 'Renamed' }] });

    const { items, pages, emptyPages } = await collect(client.iterateLeadChanges({ nextPageToken: token, fields: ['firstName', 'title'], batchSize: 3 }));
    expect(pages).toBeGreaterThan(3);
    expect(emptyPages).toBeGreaterThan(0);
    expect(items.filter((a) => a.activityTypeId === 12)).toHaveLength(5);
    const changes = items.filter((a) => a.activityTypeId === 13);
    expect(changes).toHaveLength(6);
    expect(changes.every((a) => a.fields?.[0]?.name !== 'city')).toBe(true);
    const rename = changes.find((a) => a.leadId === 2 && a.fields?.[0]?.name === 'firstName');
    expect(rename?.fields?.[0]).toMatchObject({ newValue: 'Renamed', oldValue: 'P2' });
    expect(rename?.attributes).toContainEqual({ name: 'Source', value: 'Web service API' });
    const uiChange = changes.find((a) => a.fields?.[0]?.name === 'title');
    expect(uiChange?.attributes?.find((a) => a.name === 'Source')?.value).not.toBe('Web service API');
  });

  it('resumes from a persisted token and sees only later changes', async () => {
    const { sim, client } = await setup();
    const first = await collect(client.iterateLeadChanges({ nextPageToken: await client.getPagingToken(new Date(Date.now() - 1000)), fields: ['email'] }));
    sim.admin.createLead({ email: 'later@example.com' });
    const second = await collect(client.iterateLeadChanges({ nextPageToken: first.tokens.at(-1)!, fields: ['email'] }));
    expect(first.items).toHaveLength(0);
    expect(second.items.map((a) => a.activityTypeId)).toEqual([12]);
  });

  it('lists deleted leads with the deleted person as primary attribute', async () => {
    const { sim, client } = await setup({ feed: { scanBlock: 2 } });
    const token = await client.getPagingToken(new Date(Date.now() - 1000));
    await client.syncLeads({ action: 'createOrUpdate', lookupField: 'email', input: [{ email: 'gone@example.com', firstName: 'Gone', lastName: 'Person' }, ...people(3)] });
    await client.deleteLeads([1]);
    sim.admin.deleteLead(3);
    const { items } = await collect(client.iterateDeletedLeads({ nextPageToken: token }));
    expect(items.map((a) => [a.leadId, a.activityTypeId])).toEqual([
      [1, 37],
      [3, 37],
    ]);
    expect(items[0]).toMatchObject({ primaryAttributeValue: 'Gone Person', marketoGUID: expect.any(String) });
  });

  it('stops after maxEmptyPages consecutive empty pages so the caller can resume later', async () => {
    const { sim, client } = await setup({ feed: { scanBlock: 1 } });
    for (let i = 0; i < 6; i++) sim.admin.createLead({ email: `x${i}@example.com` });
    const token = await client.getPagingToken(new Date(Date.now() - 60_000));
    const { pages } = await collect(client.iterateDeletedLeads({ nextPageToken: token, maxEmptyPages: 3 }));
    expect(pages).toBe(3);
  });
});
