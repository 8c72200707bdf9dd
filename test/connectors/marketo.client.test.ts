import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
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

/**
 * Marketo's REST API answered in memory, for the limiter's tests: they run on vitest's fake clock
 * (Date, performance and the timers the limiter and the fill policy use), so a drip comes exactly
 * when it is planned however busy this machine is, and each call is recorded at the fake instant
 * it reached Marketo. No socket is involved: nothing happens while the fake clock stands still.
 */
function inMemoryMarketo() {
  const calls: { at: number; endpoint: 'leads.query' | 'leads.sync'; values: string[] }[] = [];
  const answer = (body: unknown) => Promise.resolve(new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } }));
  const fetch: typeof globalThis.fetch = (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (url.pathname === '/identity/oauth/token') return answer({ access_token: 'in-memory-token', token_type: 'bearer', expires_in: 3600, scope: 'sync@example.com' });
    if (url.pathname === '/rest/v1/leads.json' && (init?.method ?? 'GET') === 'GET') {
      const values = (url.searchParams.get('filterValues') ?? '').split(',');
      calls.push({ at: Date.now(), endpoint: 'leads.query', values });
      const byId = url.searchParams.get('filterType') === 'id';
      return answer({ requestId: `r${calls.length}`, success: true, result: values.map((v, i) => (byId ? { id: Number(v), email: `person${v}@example.com`, firstName: `P${v}` } : { id: 10_000 + i, email: v })) });
    }
    if (url.pathname === '/rest/v1/leads.json') {
      const input = (JSON.parse(init?.body as string) as { input: { id?: number; email?: string }[] }).input;
      calls.push({ at: Date.now(), endpoint: 'leads.sync', values: input.map((r) => String(r.id ?? r.email)) });
      return answer({ requestId: `r${calls.length}`, success: true, result: input.map((r, i) => ({ id: r.id ?? 20_000 + i, status: r.id === undefined ? 'created' : 'updated' })) });
    }
    return Promise.reject(new Error(`the in-memory Marketo does not answer ${url.pathname}`));
  };
  return { fetch, calls, count: (endpoint: 'leads.query' | 'leads.sync') => calls.filter((c) => c.endpoint === endpoint).length };
}

/** A client of the in-memory Marketo; call only while the fake clock is installed. */
function onFakeClock(clientOptions: Partial<MarketoClientOptions> = {}) {
  const marketo = inMemoryMarketo();
  const client = createMarketoClient({ baseUrl: 'https://123-abc-456.mktorest.invalid', clientId: 'id', clientSecret: 'secret', fetch: marketo.fetch, ...clientOptions });
  fakeClockClients.push(client);
  return { marketo, client };
}
const fakeClockClients: MarketoClient[] = [];

/** Runs the fake clock, timer by timer, until `promise` settles; fails after `limitMs` of fake time (a hang). */
async function onceSettled<T>(promise: Promise<T>, limitMs = 120_000): Promise<T> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  const deadline = Date.now() + limitMs;
  await vi.advanceTimersByTimeAsync(0);
  while (!settled) {
    if (Date.now() > deadline) throw new Error(`not settled within ${limitMs} ms of the fake clock`);
    await vi.advanceTimersToNextTimerAsync();
  }
  return promise;
}

/** The most of `times` (ms) that fall in any window of `windowMs`. */
const mostInAnyWindow = (times: number[], windowMs: number) => Math.max(0, ...times.map((t) => times.filter((u) => u >= t && u < t + windowMs).length));

function useFakeClock() {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'] });
  });
  afterEach(async () => {
    // the limiters' own timers are fake: stop them while they still run
    await onceSettled(Promise.all(fakeClockClients.splice(0).map((c) => c.close())));
    vi.useRealTimers();
  });
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
    // one clock for Marketo and the client, moved by hand: the token's life is counted, not waited for
    let clock = Date.now();
    const now = () => clock;
    const { sim, client } = await setup({ tokenTtlSeconds: 2, now }, { tokenRefreshSkewMs: 1500, now });
    await client.getLeadsByIds([1]);
    clock += 2100; // the first token has expired at Marketo
    await client.getLeadsByIds([1]);
    expect(sim.admin.counters().byEndpoint['leads.query']?.errors['602']).toBeUndefined();
    expect(client.stats().tokenRequests).toBe(2);
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

  describe('on a fake clock', () => {
    useFakeClock();

    it("never passes the instance's 100 calls in a window, even when its share is all of them", async () => {
      // counted on the fake clock, in Marketo's own 20 s window: each call's start, and the most of
      // them that started in any window
      const windowMs = 20_000;
      // no fill policy: a call held to fill would space the calls out on its own
      const { marketo, client } = onFakeClock({ limits: { callsPer20s: 100, windowMs }, fill: false });
      // sequential reads by email (never shared), enough to span a few windows
      await onceSettled(
        (async () => {
          for (let i = 0; i < 220; i += 1) await client.getLeadsByEmail([`person${i}@example.com`]);
        })(),
      );
      const started = marketo.calls.map((c) => c.at);
      expect(started).toHaveLength(220);
      expect(mostInAnyWindow(started, windowMs)).toBeLessThanOrEqual(100);
      // and the share is spent: 220 calls need little more than two windows
      expect(started.at(-1)! - started[0]!).toBeLessThan(2.5 * windowMs);
    });

    it('keeps its own calls under the configured rate, never reaching what the instance allows', async () => {
      // the instance would allow 10 calls in 400 ms; our share is 5: a bucket of 2, then one every 80 ms
      const { marketo, client } = onFakeClock({ limits: { callsPer20s: 5, windowMs: 400 } });
      await onceSettled(Promise.all(Array.from({ length: 12 }, (_, i) => client.getLeadsByFilter('email', [`person${i}@example.com`]))));
      const started = marketo.calls.map((c) => c.at);
      expect(started).toHaveLength(12);
      const { bucket, dripMs } = marketoDripPlan(5, 400);
      expect(mostInAnyWindow(started, 400)).toBeLessThanOrEqual(bucket + Math.floor(400 / dripMs));
      expect(mostInAnyWindow(started, 400)).toBeLessThan(10);
    });
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

  describe('waiting for the limiter, on a fake clock', () => {
    useFakeClock();
    // a share of 4 calls per 2 s: a bucket of two calls at once, then one every 500 ms
    const limits = { callsPer20s: 4, windowMs: 2_000 };
    const { dripMs } = marketoDripPlan(limits.callsPer20s, limits.windowMs);

    it('reads by id requested while a read waits for the limiter ride along in that call', async () => {
      const { marketo, client } = onFakeClock({ limits });
      await onceSettled(client.getLeadsByIds([1]));
      // the bucket is now short of a read: these wait together and are filled when admitted
      const waiting = Array.from({ length: 10 }, (_, i) => client.getLeadsByIds([i + 2, 1], ['email', 'firstName']));
      await vi.advanceTimersByTimeAsync(dripMs / 5);
      expect(marketo.count('leads.query')).toBe(1); // still waiting for the drip
      const late = client.getLeadsByIds([12], ['email', 'firstName']);
      const results = await onceSettled(Promise.all(waiting));
      expect(await onceSettled(late)).toEqual([expect.objectContaining({ id: 12 })]);
      expect(results.map((leads) => leads.map((l) => l.id).sort((a, b) => a - b))).toEqual(Array.from({ length: 10 }, (_, i) => [1, i + 2]));
      expect(results[3]?.find((l) => l.id === 5)).toMatchObject({ email: 'person5@example.com', firstName: 'P5' });
      expect(marketo.count('leads.query')).toBe(2);
      expect(marketo.calls[1]!.values).toContain('12');
    });

    it('keeps a call in reserve after a read, so the write that follows it does not wait for the next drip', async () => {
      const { marketo, client } = onFakeClock({ limits });
      await onceSettled(client.getLeadsByIds([1]));
      // the read left a call in the bucket for the write that follows it
      await onceSettled(client.syncLeads({ action: 'createOrUpdate', lookupField: 'email', input: people(1) }));
      const [read, write] = marketo.calls;
      expect(write!.endpoint).toBe('leads.sync');
      expect(write!.at - read!.at).toBeLessThan(dripMs);
      // the next read waits until the bucket again holds a read and a write: two drips
      await onceSettled(client.getLeadsByIds([1]));
      const next = marketo.calls[2]!;
      expect(next.at - read!.at).toBeGreaterThanOrEqual(2 * dripMs);
      expect(next.at - read!.at).toBeLessThan(3 * dripMs);
    });

    it('lets a write go before reads that were already waiting', async () => {
      const { marketo, client } = onFakeClock({ limits });
      await onceSettled(client.getLeadsByIds([1]));
      const order: string[] = [];
      const reads = Array.from({ length: 3 }, (_, i) => client.getLeadsByEmail([`r${i}@example.com`]).then(() => order.push(`read ${i}`)));
      await vi.advanceTimersByTimeAsync(dripMs / 10);
      expect(marketo.count('leads.query')).toBe(1); // the reads are waiting for the limiter
      const write = client.syncLeads({ action: 'createOrUpdate', lookupField: 'email', input: people(1) }).then(() => order.push('write'));
      await onceSettled(Promise.all([...reads, write]));
      expect(order[0]).toBe('write');
    });
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
