import { randomUUID } from 'node:crypto';
import { DynamicsWebApi } from 'dynamics-web-api';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startDataverseSimulator, type DataverseSimulator } from '../../src/sandbox/dynamics/index.ts';

// $batch, service protection and synchronous plug-ins of the Dataverse simulator, per
// /work/shared/reference/dataverse-api.md §2.7 and §4.2. Limits are checked by counting (the
// simulator's clock is injected), never by wall-clock speed.

let sim: DataverseSimulator;
let token: string;
let clock = 1_700_000_000_000;

async function getToken(): Promise<string> {
  const res = await fetch(sim.tokenUrl, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: sim.clientId, client_secret: sim.clientSecret, scope: `${sim.url}/.default`, grant_type: 'client_credentials' }),
  });
  return ((await res.json()) as { access_token: string }).access_token;
}

type Op = { method: string; url: string; body?: unknown; headers?: Record<string, string>; contentId?: string };

function part(op: Op): string {
  const lines = ['Content-Type: application/http', 'Content-Transfer-Encoding: binary'];
  if (op.contentId) lines.push(`Content-ID: ${op.contentId}`);
  lines.push('', `${op.method} ${op.url} HTTP/1.1`);
  for (const [k, v] of Object.entries(op.headers ?? {})) lines.push(`${k}: ${v}`);
  if (op.body !== undefined) lines.push('Content-Type: application/json; type=entry');
  lines.push('', op.body === undefined ? '' : JSON.stringify(op.body));
  return lines.join('\r\n');
}

function batchBody(parts: (Op | Op[])[]): string {
  const out: string[] = [];
  for (const p of parts) {
    out.push('--batch_AAA');
    if (Array.isArray(p)) {
      out.push('Content-Type: multipart/mixed; boundary="changeset_BBB"', '');
      for (const op of p) out.push('--changeset_BBB', part(op));
      out.push('--changeset_BBB--');
    } else out.push(part(p));
  }
  out.push('--batch_AAA--', '');
  return out.join('\r\n');
}

type PartAnswer = { status: number; headers: Record<string, string>; json: Record<string, unknown> | undefined };

/** The flat list of answered operations (change sets' answers inline), in order. */
function parseAnswer(body: string): PartAnswer[] {
  const answers: PartAnswer[] = [];
  for (const m of body.matchAll(/HTTP\/1\.1 (\d{3})[^\r\n]*\r\n((?:[^\r\n]+\r\n)*)\r\n([^\r\n]*)/g)) {
    const headers: Record<string, string> = {};
    for (const line of m[2]!.split('\r\n').filter(Boolean)) {
      const i = line.indexOf(':');
      headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
    }
    const text = m[3]!.trim();
    answers.push({ status: Number(m[1]), headers, json: text.startsWith('{') ? (JSON.parse(text) as Record<string, unknown>) : undefined });
  }
  return answers;
}

async function batch(parts: (Op | Op[])[], options: { continueOnError?: boolean } = {}) {
  const res = await fetch(`${sim.url}/api/data/v9.2/$batch`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${token}`,
      'Content-Type': 'multipart/mixed; boundary="batch_AAA"',
      Accept: 'application/json',
      ...(options.continueOnError ? { Prefer: 'odata.continue-on-error' } : {}),
    },
    body: batchBody(parts),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, parts: res.headers.get('content-type')?.startsWith('multipart/mixed') ? parseAnswer(text) : [] };
}

async function get(path: string) {
  const res = await fetch(`${sim.url}/api/data/v9.2/${path}`, { headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' } });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: text ? (JSON.parse(text) as Record<string, unknown>) : undefined };
}

beforeAll(async () => {
  sim = await startDataverseSimulator({ now: () => clock });
  token = await getToken();
});
afterAll(async () => {
  await sim.close();
});
beforeEach(() => {
  sim.admin.reset();
  sim.admin.setLimits({ requestsPerWindow: 6000, windowMs: 300_000, maxConcurrent: 52, executionMsPerWindow: 1_200_000 });
  sim.admin.setTiming({ latencyMs: 0, operationMs: 0 });
});

describe('Dataverse simulator $batch', () => {
  it('runs independent operations in order and answers each with its own status, representation included', async () => {
    const lead = sim.admin.create('lead', { lastname: 'Before' });
    const id = randomUUID();
    const res = await batch(
      [
        { method: 'PATCH', url: `/api/data/v9.2/leads(${String(lead.leadid)})?$select=lastname`, body: { lastname: 'After' }, headers: { 'If-Match': String(lead['@odata.etag']), Prefer: 'return=representation' } },
        { method: 'POST', url: `/api/data/v9.2/contacts?$select=lastname`, body: { contactid: id, lastname: 'New' }, headers: { Prefer: 'return=representation' } },
        { method: 'POST', url: `/api/data/v9.2/contacts`, body: { lastname: 'Plain' } },
        { method: 'GET', url: `/api/data/v9.2/contacts(${id})?$select=lastname` },
      ],
      { continueOnError: true },
    );
    expect(res.status).toBe(200);
    expect(res.parts.map((p) => p.status)).toEqual([200, 201, 204, 200]);
    expect(res.parts[0]!.json?.lastname).toBe('After');
    expect(res.parts[0]!.headers.etag).toBe(res.parts[0]!.json?.['@odata.etag']);
    expect(res.parts[1]!.json?.contactid).toBe(id);
    expect(res.parts[2]!.headers['odata-entityid']).toMatch(/contacts\([0-9a-f-]{36}\)$/);
    expect(res.parts[3]!.json?.lastname).toBe('New');
    expect(sim.admin.count('contact')).toBe(2);
  });

  it('keeps going past a failed operation with continue-on-error: a 412 of one record never fails the others', async () => {
    const a = sim.admin.create('lead', { lastname: 'A' });
    const b = sim.admin.create('lead', { lastname: 'B' });
    const res = await batch(
      [
        { method: 'PATCH', url: `/api/data/v9.2/leads(${String(a.leadid)})`, body: { lastname: 'A2' }, headers: { 'If-Match': 'W/"1"' } },
        { method: 'PATCH', url: `/api/data/v9.2/leads(${String(b.leadid)})`, body: { lastname: '' }, headers: { 'If-Match': '*' } },
        { method: 'PATCH', url: `/api/data/v9.2/leads(${String(b.leadid)})`, body: { jobtitle: 'Ok' }, headers: { 'If-Match': '*' } },
      ],
      { continueOnError: true },
    );
    expect(res.status).toBe(200);
    expect(res.parts.map((p) => p.status)).toEqual([412, 400, 204]);
    expect((res.parts[0]!.json?.error as { code: string }).code).toBe('0x80060882');
    expect((res.parts[1]!.json?.error as { code: string; message: string }).message).toBe('Last Name is required to save a lead.');
    expect(sim.admin.get('lead', String(b.leadid))?.jobtitle).toBe('Ok');
    expect(sim.admin.get('lead', String(a.leadid))?.lastname).toBe('A');
  });

  it('stops at the first failure without continue-on-error: outer 400 holding only that failure', async () => {
    const res = await batch([
      { method: 'POST', url: '/api/data/v9.2/contacts', body: { lastname: 'One' } },
      { method: 'POST', url: '/api/data/v9.2/contacts', body: { firstname: 'NoLastName' } },
      { method: 'POST', url: '/api/data/v9.2/contacts', body: { lastname: 'Never' } },
    ]);
    expect(res.status).toBe(400);
    expect(res.parts.map((p) => p.status)).toEqual([400]);
    expect(sim.admin.list('contact').map((c) => c.lastname)).toEqual(['One']);
  });

  it('commits a change set together, Content-ID references included, and rolls it all back on a failure', async () => {
    const ok = await batch([
      [
        { method: 'POST', url: '/api/data/v9.2/leads', body: { lastname: 'Ref' }, contentId: '1' },
        { method: 'PATCH', url: '$1', body: { jobtitle: 'Referenced' } },
      ],
    ]);
    expect(ok.status).toBe(200);
    expect(ok.parts.map((p) => p.status)).toEqual([204, 204]);
    expect(sim.admin.list('lead')[0]?.jobtitle).toBe('Referenced');

    const kept = sim.admin.list('lead')[0]!;
    const failed = await batch(
      [
        [
          { method: 'PATCH', url: `/api/data/v9.2/leads(${String(kept.leadid)})`, body: { jobtitle: 'Changed' } },
          { method: 'POST', url: '/api/data/v9.2/leads', body: { lastname: 'Rolled back' } },
          { method: 'POST', url: '/api/data/v9.2/leads', body: { firstname: 'Invalid' } },
        ],
        { method: 'POST', url: '/api/data/v9.2/leads', body: { lastname: 'After the change set' } },
      ],
      { continueOnError: true },
    );
    expect(failed.status).toBe(200);
    expect(failed.parts.map((p) => p.status)).toEqual([400, 204]);
    expect(sim.admin.get('lead', String(kept.leadid))?.jobtitle).toBe('Referenced');
    expect(sim.admin.list('lead').map((l) => l.lastname).sort()).toEqual(['After the change set', 'Ref']);

    const unknownRef = await batch([[{ method: 'PATCH', url: '$9', body: { jobtitle: 'x' } }]]);
    expect(unknownRef.status).toBe(400);
    expect((unknownRef.parts[0]!.json?.error as { message: string }).message).toBe("Content-ID Reference: '$9' does not exist in the batch context.");
  });

  it('refuses a GET inside a change set and more than 1000 operations', async () => {
    const getInside = await batch([[{ method: 'GET', url: '/api/data/v9.2/leads' }]]);
    expect(getInside.status).toBe(400);
    const many = Array.from({ length: 1001 }, () => ({ method: 'GET', url: '/api/data/v9.2/WhoAmI' }));
    const tooMany = await batch(many);
    expect(tooMany.status).toBe(400);
    expect(await batch(many.slice(0, 1000))).toMatchObject({ status: 200 });
  });

  it('loses the answer of a $batch that wrote, after its change set committed, and passes one that only read', async () => {
    const lead = sim.admin.create('lead', { lastname: 'Batch', emailaddress1: 'batch@x.com' });
    const id = lead.leadid as string;
    sim.admin.injectFault({ kind: 'lost_answer', count: 1, answer: 504, batch: true });
    expect((await batch([{ method: 'GET', url: `/api/data/v9.2/leads(${id})?$select=jobtitle` }])).status).toBe(200);
    const lost = await batch([[{ method: 'PATCH', url: `/api/data/v9.2/leads(${id})`, body: { jobtitle: 'Committed' } }]]);
    expect(lost.status).toBe(504);
    expect(sim.admin.get('lead', id)?.['jobtitle']).toBe('Committed');
    expect((await batch([[{ method: 'PATCH', url: `/api/data/v9.2/leads(${id})`, body: { jobtitle: 'Answered' } }]])).status).toBe(200);
  });

  it('is understood by an independent client library (dynamics-web-api batches)', async () => {
    const dwa = new DynamicsWebApi({ serverUrl: sim.url, dataApi: { version: '9.2' }, onTokenRefresh: getToken });
    dwa.startBatch();
    void dwa.create({ collection: 'leads', data: { lastname: 'DWA1' } });
    void dwa.create({ collection: 'leads', data: { lastname: 'DWA2' } });
    void dwa.retrieveMultiple({ collection: 'leads', select: ['lastname'] });
    const results = (await dwa.executeBatch({ inChangeSet: false })) as unknown[];
    expect(results).toHaveLength(3);
    expect(sim.admin.count('lead')).toBe(2);
  });
});

describe('Dataverse simulator service protection', () => {
  it('counts a batch as one request whatever it carries and reports what is left in the x-ms-ratelimit headers', async () => {
    sim.admin.setLimits({ requestsPerWindow: 3 });
    const ops = Array.from({ length: 50 }, (_, i) => ({ method: 'POST', url: '/api/data/v9.2/contacts', body: { lastname: `C${i}` } }));
    const first = await batch(ops);
    expect(first.status).toBe(200);
    expect(first.headers.get('x-ms-ratelimit-burst-remaining-xrm-requests')).toBe('2');
    expect((await batch(ops)).status).toBe(200);
    expect((await batch(ops)).status).toBe(200);
    const refused = await batch(ops);
    // a 429 for a batch is a plain 429: nothing ran
    expect(refused.status).toBe(429);
    expect(refused.headers.get('content-type')).toMatch(/^application\/json/);
    expect(JSON.parse(refused.text)).toEqual({ error: { code: '0x80072322', message: 'Number of requests exceeded the limit of 3 over time window of 300 seconds.' } });
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(sim.admin.count('contact')).toBe(150);
    clock += 300_001;
    expect((await batch(ops.slice(0, 1))).status).toBe(200);
  });

  it('charges each operation of a batch to the execution-time window and refuses with 0x80072321 past it', async () => {
    sim.admin.setLimits({ executionMsPerWindow: 1000 });
    sim.admin.setTiming({ operationMs: 1 });
    const ops = Array.from({ length: 600 }, (_, i) => ({ method: 'POST', url: '/api/data/v9.2/contacts', body: { lastname: `E${i}` } }));
    expect((await batch(ops)).status).toBe(200);
    const second = await batch(ops);
    expect(second.status).toBe(200);
    expect(Number(second.headers.get('x-ms-ratelimit-time-remaining-xrm-requests'))).toBe(400);
    const refused = await get('WhoAmI');
    expect(refused.status).toBe(429);
    expect(refused.json).toEqual({
      error: {
        code: '0x80072321',
        message:
          'Combined execution time of incoming requests exceeded limit of 1,000 milliseconds over time window of 300 seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.',
      },
    });
    expect(Number(refused.headers.get('retry-after'))).toBe(300);
  });

  it('refuses requests over the concurrency limit at once with 0x80072326', async () => {
    sim.admin.setLimits({ maxConcurrent: 2 });
    sim.admin.setTiming({ latencyMs: 200 });
    const answers = await Promise.all(Array.from({ length: 5 }, () => get('WhoAmI')));
    expect(answers.filter((a) => a.status === 200)).toHaveLength(2);
    const refused = answers.filter((a) => a.status === 429);
    expect(refused).toHaveLength(3);
    expect(refused[0]!.json).toEqual({ error: { code: '0x80072326', message: 'Number of concurrent requests exceeded the limit of 2.' } });
  });

  it('reads many rows with an In filter and refuses URLs over the length limit, which a batch can carry', async () => {
    const ids = Array.from({ length: 800 }, () => randomUUID());
    sim.admin.bulkInsert('contact', ids.map((contactid, i) => ({ contactid, lastname: `In${i}` })));
    const filter = (list: string[]) => encodeURIComponent(`Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=[${list.map((id) => `'${id}'`).join(',')}])`);
    const fits = await get(`contacts?$select=lastname&$filter=${filter(ids.slice(0, 500))}`);
    expect(fits.status).toBe(200);
    expect((fits.json?.value as unknown[]).length).toBe(500);
    const tooLong = await get(`contacts?$select=lastname&$filter=${filter(ids)}`);
    expect(tooLong.status).toBe(414);
    const tunnelled = await batch([{ method: 'GET', url: `/api/data/v9.2/contacts?$select=lastname&$filter=${filter(ids)}` }]);
    expect(tunnelled.parts[0]!.status).toBe(200);
    expect((tunnelled.parts[0]!.json?.value as unknown[]).length).toBe(800);
  });
});

describe('Dataverse simulator synchronous plug-ins', () => {
  it('rewrites a value during the write, and the representation returned shows what was stored, single and in a batch', async () => {
    sim.admin.addValueRewrite({ table: 'contact', column: 'address1_country', from: 'usa', to: 'United States' });
    sim.admin.addValueRewrite({ table: 'contact', column: 'address1_country', from: 'us', to: 'United States' });
    const single = await fetch(`${sim.url}/api/data/v9.2/contacts?$select=address1_country`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', Prefer: 'return=representation' },
      body: JSON.stringify({ lastname: 'P', address1_country: 'usa' }),
    });
    expect(single.status).toBe(201);
    const created = (await single.json()) as Record<string, unknown>;
    expect(created.address1_country).toBe('United States');

    const res = await batch(
      [
        {
          method: 'PATCH',
          url: `/api/data/v9.2/contacts(${String(created.contactid)})?$select=address1_country`,
          body: { address1_country: 'US' },
          headers: { 'If-Match': String(created['@odata.etag']), Prefer: 'return=representation' },
        },
      ],
      { continueOnError: true },
    );
    expect(res.parts[0]!.status).toBe(200);
    expect(res.parts[0]!.json?.address1_country).toBe('United States');
    expect(sim.admin.get('contact', String(created.contactid))?.address1_country).toBe('United States');
    // other values pass untouched
    const other = sim.admin.update('contact', String(created.contactid), { address1_country: 'Canada' });
    expect(other.address1_country).toBe('Canada');
  });
});
