import { afterEach, describe, expect, it } from 'vitest';

// untyped wire JSON, asserted field by field
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;
import { startMarketoSimulator, type MarketoSimulatorOptions, type StartedMarketoSimulator } from '../../src/sandbox/marketo/index.ts';

const open: StartedMarketoSimulator[] = [];

afterEach(async () => {
  for (const sim of open.splice(0)) await sim.close();
});

async function start(options: MarketoSimulatorOptions = {}) {
  const sim = await startMarketoSimulator(options);
  open.push(sim);
  const tokenResponse = await fetch(`${sim.url}/identity/oauth/token?grant_type=client_credentials&client_id=${sim.clientId}&client_secret=${sim.clientSecret}`);
  const { access_token: token } = (await tokenResponse.json()) as { access_token: string };
  const auth = { Authorization: `Bearer ${token}` };
  async function get(path: string, headers: Record<string, string> = auth) {
    const response = await fetch(`${sim.url}${path}`, { headers });
    return { status: response.status, body: (await response.json().catch(() => null)) as Json };
  }
  async function post(path: string, body: unknown, contentType = 'application/json') {
    const response = await fetch(`${sim.url}${path}`, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': contentType },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json().catch(() => null)) as Json };
  }
  return { sim, token, get, post };
}

function errorCode(body: Json): string | undefined {
  expect(body.success).toBe(false);
  return body.errors?.[0]?.code as string | undefined;
}

describe('Marketo simulator: identity and auth', () => {
  it('refuses wrong client credentials with 401 invalid_client', async () => {
    const { sim } = await start();
    const response = await fetch(`${sim.url}/identity/oauth/token?grant_type=client_credentials&client_id=${sim.clientId}&client_secret=nope`);
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ error: 'invalid_client' });
  });

  it('returns the same token with its remaining lifetime until it expires', async () => {
    let clock = Date.parse('2026-01-01T00:00:00Z');
    const sim = await startMarketoSimulator({ now: () => clock });
    open.push(sim);
    const url = `${sim.url}/identity/oauth/token?grant_type=client_credentials&client_id=${sim.clientId}&client_secret=${sim.clientSecret}`;
    const first = (await (await fetch(url, { method: 'POST' })).json()) as Json;
    clock += 1000 * 1000;
    const second = (await (await fetch(url)).json()) as Json;
    expect(first).toMatchObject({ token_type: 'bearer', expires_in: 3600 });
    expect(second).toMatchObject({ access_token: first.access_token, expires_in: 2600 });
    clock += 2600 * 1000;
    const expired = await fetch(`${sim.url}/rest/v1/leads.json?filterType=id&filterValues=1`, { headers: { Authorization: `Bearer ${first.access_token}` } });
    expect(expired.status).toBe(200);
    expect(errorCode((await expired.json()) as Json)).toBe('602');
    const third = (await (await fetch(url)).json()) as Json;
    expect(third.access_token).not.toBe(first.access_token);
  });

  it('answers a missing, unknown or query-string token with 601 in an HTTP 200 envelope', async () => {
    const { get, token } = await start();
    const missing = await get('/rest/v1/leads.json?filterType=id&filterValues=1', {});
    expect(missing.status).toBe(200);
    expect(errorCode(missing.body)).toBe('601');
    expect(errorCode((await get('/rest/v1/leads.json?filterType=id&filterValues=1', { Authorization: 'Bearer nope' })).body)).toBe('601');
    expect(errorCode((await get(`/rest/v1/leads.json?filterType=id&filterValues=1&access_token=${token}`, {})).body)).toBe('601');
  });
});

describe('Marketo simulator: in-process listeners', () => {
  it('tells listeners of each update that changed a value, through the API or the admin, and not of one that changed nothing', async () => {
    const { sim, post } = await start();
    const told: number[] = [];
    sim.admin.onLeadUpdated((id) => told.push(id));
    const [id] = sim.admin.seedLeads([{ email: 'listen@example.com', title: 'A' }]);
    sim.admin.updateLead(id!, { title: 'B' });
    sim.admin.updateLead(id!, { title: 'B' });
    await post('/rest/v1/leads.json', { action: 'updateOnly', lookupField: 'id', input: [{ id, title: 'C' }] });
    expect(told).toEqual([id, id]);
  });
});

describe('Marketo simulator: calls seen in-process, and writes that land without an answer', () => {
  it('shows each call to its listeners just before and just after it runs, with the caller’s port', async () => {
    const { sim, post } = await start();
    const [id] = sim.admin.seedLeads([{ email: 'hook@example.com', title: 'A' }]);
    const seen: string[] = [];
    sim.admin.onApiCall((call) => {
      const title = sim.admin.getLead(id!)?.['title'];
      seen.push(`${call.endpoint} ${call.phase} ${String(title)} ${typeof call.remotePort}`);
      // an edit made in the hook lands right before the call's own write
      if (call.phase === 'before') sim.admin.updateLead(id!, { title: 'Edited' });
    });
    await post('/rest/v1/leads.json', { action: 'updateOnly', lookupField: 'id', input: [{ id, title: 'Written' }] });
    expect(seen).toEqual(['leads.sync before A number', 'leads.sync after Written number']);
  });

  it('applies a Sync Leads call and then hangs or answers 604, taken only by writes', async () => {
    const { sim, get, post, token } = await start();
    const [id] = sim.admin.seedLeads([{ email: 'landed@example.com', title: 'A' }]);
    const fired: string[] = [];
    sim.admin.onFault((fault, endpoint) => fired.push(`${fault.type} ${endpoint}`));
    sim.admin.injectFault({ type: 'after-apply', answer: '604', times: 1 });
    expect((await get(`/rest/v1/leads.json?filterType=id&filterValues=${id!}`)).body.success).toBe(true);
    const timedOut = await post('/rest/v1/leads.json', { action: 'updateOnly', lookupField: 'id', input: [{ id, title: 'Landed' }] });
    expect(errorCode(timedOut.body)).toBe('604');
    expect(sim.admin.getLead(id!)?.['title']).toBe('Landed');
    sim.admin.injectFault({ type: 'after-apply', answer: 'hang', times: 1 });
    // the caller gives up once the simulator has applied the write (seen by a hook, not a timer)
    const giveUp = new AbortController();
    sim.admin.onApiCall((call) => {
      if (call.phase === 'after') setImmediate(() => giveUp.abort());
    });
    const hung = await fetch(`${sim.url}/rest/v1/leads.json`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ action: 'updateOnly', lookupField: 'id', input: [{ id, title: 'Hung' }] }),
      signal: giveUp.signal,
    }).then(
      () => 'answered',
      () => 'no answer',
    );
    expect(hung).toBe('no answer');
    expect(sim.admin.getLead(id!)?.['title']).toBe('Hung');
    expect(fired).toEqual(['after-apply leads.sync', 'after-apply leads.sync']);
  });
});

describe('Marketo simulator: request strictness', () => {
  it('refuses more than 300 records in one Sync Leads call', async () => {
    const { post } = await start();
    const input = Array.from({ length: 301 }, (_, i) => ({ email: `p${i}@example.com` }));
    expect(errorCode((await post('/rest/v1/leads.json', { input })).body)).toBe('1003');
  });

  it('refuses more than 300 filter values', async () => {
    const { post } = await start();
    const values = Array.from({ length: 301 }, (_, i) => i + 1).join(',');
    const response = await post('/rest/v1/leads.json?_method=GET', `filterType=id&filterValues=${values}`, 'application/x-www-form-urlencoded');
    expect(errorCode(response.body)).toBe('1003');
  });

  it('refuses a standard field as filterType with 1011 and an unknown one with 1003', async () => {
    const { get } = await start();
    expect(errorCode((await get('/rest/v1/leads.json?filterType=firstName&filterValues=Ann')).body)).toBe('1011');
    expect(errorCode((await get('/rest/v1/leads.json?filterType=shoeSize&filterValues=9')).body)).toBe('1003');
    expect(errorCode((await get('/rest/v1/leads.json?filterType=id&filterValues=1&fields=shoeSize')).body)).toBe('1006');
  });

  it('refuses a non-JSON content type with 612 and malformed JSON with 609', async () => {
    const { post } = await start();
    expect(errorCode((await post('/rest/v1/leads.json', '{"input":[{"email":"a@b.c"}]}', 'text/plain')).body)).toBe('612');
    expect(errorCode((await post('/rest/v1/leads.json', '{"input":[{"email":', 'application/json')).body)).toBe('609');
  });

  it('answers Sync Leads via GET and unsupported verbs with 605, unknown paths with 610', async () => {
    const { get, sim, token } = await start();
    expect(errorCode((await get('/rest/v1/leads.json')).body)).toBe('605');
    const put = await fetch(`${sim.url}/rest/v1/leads.json`, { method: 'PUT', headers: { Authorization: `Bearer ${token}` } });
    expect(errorCode((await put.json()) as Json)).toBe('605');
    expect(errorCode((await get('/rest/v1/nothing.json')).body)).toBe('610');
  });

  it('answers URIs over 8 KB with HTTP 414', async () => {
    const { get } = await start();
    const values = Array.from({ length: 300 }, (_, i) => `someone-with-a-long-name-${i}@example.com`).join(',');
    expect((await get(`/rest/v1/leads.json?filterType=email&filterValues=${values}`)).status).toBe(414);
  });

  it('refuses a sinceDatetime whose + was not URL-encoded with 704', async () => {
    const { get } = await start();
    expect(errorCode((await get('/rest/v1/activities/pagingtoken.json?sinceDatetime=2024-01-01T00:00:00+02:00')).body)).toBe('704');
    expect((await get('/rest/v1/activities/pagingtoken.json?sinceDatetime=2024-01-01T00:00:00%2B02:00')).body.nextPageToken).toMatch(/^[A-Z2-7]+=*$/);
  });

  it('requires fields on leadchanges and a known token', async () => {
    const { get } = await start();
    const { body } = await get('/rest/v1/activities/pagingtoken.json?sinceDatetime=2024-01-01');
    expect(errorCode((await get(`/rest/v1/activities/leadchanges.json?nextPageToken=${body.nextPageToken}`)).body)).toBe('701');
    expect(errorCode((await get('/rest/v1/activities/leadchanges.json?nextPageToken=AAAA&fields=email')).body)).toBe('1003');
  });
});

describe('Marketo simulator: limits', () => {
  it('answers 606 with Marketo\u2019s message once the window is full, and does not count identity calls', async () => {
    const { get } = await start({ limits: { callsPerWindow: 3, windowMs: 60_000 } });
    for (let i = 0; i < 3; i++) expect((await get('/rest/v1/leads.json?filterType=id&filterValues=1')).body.success).toBe(true);
    const limited = await get('/rest/v1/leads.json?filterType=id&filterValues=1');
    expect(limited.body.errors[0]).toEqual({ code: '606', message: "Max rate limit '3' exceeded with in '60' secs" });
  });

  it('answers 615 when too many calls are in flight', async () => {
    const { get } = await start({ limits: { maxConcurrent: 2 }, latencyMs: 100 });
    const responses = await Promise.all(Array.from({ length: 4 }, () => get('/rest/v1/leads.json?filterType=id&filterValues=1')));
    expect(responses.filter((r) => r.body.errors?.[0]?.code === '615')).toHaveLength(2);
  });

  it('answers 607 once the daily quota is used', async () => {
    const { get, sim } = await start({ limits: { dailyQuota: 2 } });
    await get('/rest/v1/leads.json?filterType=id&filterValues=1');
    await get('/rest/v1/leads.json?filterType=id&filterValues=1');
    expect(errorCode((await get('/rest/v1/leads.json?filterType=id&filterValues=1')).body)).toBe('607');
    expect(sim.admin.counters().dailyUsed).toBe(2);
  });
});

describe('Marketo simulator: lead database', () => {
  it('upserts on email case-insensitively and stamps ISO-8601 Z timestamps', async () => {
    const { post, get } = await start();
    const created = await post('/rest/v1/leads.json', { action: 'createOrUpdate', input: [{ email: 'Ann@Example.com', firstName: 'Ann' }] });
    const updated = await post('/rest/v1/leads.json', { action: 'createOrUpdate', input: [{ email: 'ann@example.com', lastName: 'Lee' }] });
    expect(created.body.result).toEqual([{ id: 1, status: 'created' }]);
    expect(updated.body.result).toEqual([{ id: 1, status: 'updated' }]);
    const lead = (await get('/rest/v1/lead/1.json?fields=email,firstName,lastName,title,createdAt,updatedAt')).body.result[0];
    expect(lead).toEqual({ id: 1, email: 'ann@example.com', firstName: 'Ann', lastName: 'Lee', createdAt: expect.stringMatching(/Z$/), updatedAt: expect.stringMatching(/Z$/) });
  });

  it('skips ambiguous matches with 1007 and createOnly records carrying an id with 1003', async () => {
    const { post, sim } = await start();
    sim.admin.createLead({ email: 'dup@example.com' });
    sim.admin.createLead({ email: 'DUP@example.com' });
    const { body } = await post('/rest/v1/leads.json', { action: 'createOrUpdate', input: [{ email: 'dup@example.com', firstName: 'X' }] });
    expect(body.result[0]).toMatchObject({ status: 'skipped', reasons: [{ code: '1007' }] });
    const createOnly = await post('/rest/v1/leads.json', { action: 'createOnly', input: [{ id: 5, email: 'n@example.com' }] });
    expect(createOnly.body.result[0]).toMatchObject({ status: 'skipped', reasons: [{ code: '1003' }] });
  });

  it('skips values of the wrong type with 1001 and refuses lookupField id outside updateOnly', async () => {
    const { post } = await start();
    const { body } = await post('/rest/v1/leads.json', { input: [{ email: 'a@example.com', unsubscribed: 'maybe' }, { email: 'é@example.com' }] });
    expect(body.result.map((r: Json) => r.reasons?.[0]?.code as string)).toEqual(['1001', '1001']);
    expect(errorCode((await post('/rest/v1/leads.json', { action: 'createOrUpdate', lookupField: 'id', input: [{ id: 1 }] })).body)).toBe('1003');
  });

  it('omits result when nothing matched and shows describe items with rest and soap names', async () => {
    const { get } = await start();
    const empty = await get('/rest/v1/leads.json?filterType=email&filterValues=none@example.com');
    expect(empty.body.success).toBe(true);
    expect(empty.body).not.toHaveProperty('result');
    const describe = await get('/rest/v1/leads/describe.json');
    expect(describe.body.result).toContainEqual({
      id: 100,
      displayName: 'Microsoft is Deleted',
      dataType: 'boolean',
      rest: { name: 'microsoftIsDeleted', readOnly: false },
      soap: { name: 'MicrosoftIsDeleted', readOnly: false },
    });
  });

  it('logs New Lead, one Change Data Value per changed field with old and new values, and Delete Lead', async () => {
    const { post, sim } = await start();
    await post('/rest/v1/leads.json', { input: [{ email: 'a@example.com', firstName: 'A' }] });
    await post('/rest/v1/leads.json', { input: [{ email: 'a@example.com', firstName: 'B', lastName: 'C', title: null }] });
    sim.admin.updateLead(1, { city: 'Oslo' });
    await post('/rest/v1/leads/delete.json', { input: [{ id: 1 }] });
    const activities = sim.admin.activities({ leadId: 1 });
    expect(activities.map((a) => a.activityTypeId)).toEqual([12, 13, 13, 13, 37]);
    const firstNameChange = activities[1]!;
    expect(firstNameChange.attributes).toEqual(
      expect.arrayContaining([
        { name: 'New Value', value: 'B' },
        { name: 'Old Value', value: 'A' },
        { name: 'Source', value: 'Web service API' },
      ]),
    );
    expect(activities[3]!.attributes).toContainEqual({ name: 'Source', value: 'Person Detail Page' });
  });

  it('serves duplicates on the change feed when asked, keyed by marketoGUID', async () => {
    const { get, sim } = await start({ feed: { duplicateRate: 1 } });
    for (let i = 0; i < 4; i++) sim.admin.createLead({ email: `p${i}@example.com` });
    let token = (await get('/rest/v1/activities/pagingtoken.json?sinceDatetime=2000-01-01')).body.nextPageToken;
    const guids: string[] = [];
    for (let more = true; more; ) {
      const page = (await get(`/rest/v1/activities/leadchanges.json?nextPageToken=${encodeURIComponent(token)}&fields=email&batchSize=2`)).body;
      guids.push(...(page.result ?? []).map((a: Json) => a.marketoGUID as string));
      token = page.nextPageToken;
      more = page.moreResult;
    }
    expect(new Set(guids).size).toBe(4);
    expect(guids.length).toBeGreaterThan(4);
  });

  it('exposes the admin API over HTTP for demo mode', async () => {
    const { sim } = await start();
    const created = await fetch(`${sim.url}/__admin/leads`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ email: 'ui@example.com' }) });
    expect(await created.json()).toMatchObject({ id: 1, email: 'ui@example.com' });
    await fetch(`${sim.url}/__admin/faults`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ type: 'code', code: '611', times: 1 }) });
    const counters = (await (await fetch(`${sim.url}/__admin/counters`)).json()) as Json;
    expect(counters.total).toBe(0);
    const bad = await fetch(`${sim.url}/__admin/leads`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ updatedAt: 'x' }) });
    expect(bad.status).toBe(400);
  });
});
