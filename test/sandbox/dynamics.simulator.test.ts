import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express from 'express';
import { DynamicsWebApi } from 'dynamics-web-api';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseDataverseWebhook } from '../../src/connectors/dynamics/index.ts';
import { startDataverseSimulator, type DataverseSimulator } from '../../src/sandbox/dynamics/index.ts';

// loosely typed JSON for assertions on vendor-shaped bodies
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

let sim: DataverseSimulator;
let token: string;
let receiver: Server;
let receiverUrl: string;
const received: { url: string; headers: Record<string, unknown>; body: unknown }[] = [];
let receiverStatuses: number[] = [];

async function getToken(): Promise<string> {
  const res = await fetch(sim.tokenUrl, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: sim.clientId, client_secret: sim.clientSecret, scope: `${sim.url}/.default`, grant_type: 'client_credentials' }),
  });
  const json = (await res.json()) as { access_token: string };
  return json.access_token;
}

async function api(method: string, path: string, options: { body?: unknown; headers?: Record<string, string>; auth?: string | null } = {}) {
  const headers: Record<string, string> = { Accept: 'application/json', ...options.headers };
  if (options.auth !== null) headers.Authorization = `Bearer ${options.auth ?? token}`;
  if (options.body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`${sim.url}/api/data/v9.2/${path}`, {
    method,
    headers,
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: (text ? JSON.parse(text) : undefined) };
}

beforeAll(async () => {
  sim = await startDataverseSimulator({ webhookRetryDelayMs: 10 });
  token = await getToken();
  const app = express();
  app.post('/hook', express.json({ limit: '5mb' }), (req, res) => {
    received.push({ url: req.originalUrl, headers: req.headers, body: req.body });
    res.status(receiverStatuses.shift() ?? 202).end();
  });
  receiver = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
});
afterAll(async () => {
  await sim.close();
  await new Promise((resolve) => receiver.close(resolve));
});
beforeEach(() => {
  sim.admin.reset();
  received.length = 0;
  receiverStatuses = [];
});

describe('Dataverse simulator refuses what the real API refuses', () => {
  it('answers 401 with WWW-Authenticate without a token or with a wrong one', async () => {
    const none = await api('GET', 'WhoAmI', { auth: null });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toContain(`authorization_uri=https://login.microsoftonline.com/${sim.tenantId}`);
    expect((await api('GET', 'WhoAmI', { auth: 'forged' })).status).toBe(401);
    const who = await api('GET', 'WhoAmI');
    expect(who.json).toMatchObject({ UserId: sim.syncUserId });
  });

  it('refuses a bad client secret, an unknown client and a wrong scope with AADSTS bodies', async () => {
    const post = (fields: Record<string, string>) =>
      fetch(sim.tokenUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ client_id: sim.clientId, client_secret: sim.clientSecret, scope: `${sim.url}/.default`, grant_type: 'client_credentials', ...fields }),
      });
    const badSecret = await post({ client_secret: 'nope' });
    expect(badSecret.status).toBe(401);
    expect(await badSecret.json()).toMatchObject({ error: 'invalid_client', error_codes: [7000215] });
    const badClient = await post({ client_id: '11111111-1111-1111-1111-111111111111' });
    expect(await badClient.json()).toMatchObject({ error: 'unauthorized_client', error_codes: [700016] });
    const badScope = await post({ scope: 'https://graph.microsoft.com/.default' });
    expect(badScope.status).toBe(400);
    expect(await badScope.json()).toMatchObject({ error: 'invalid_scope', error_codes: [70011] });
  });

  it('expires tokens after their configured lifetime', async () => {
    // the simulator's clock, moved by hand: the lifetime is counted, not waited for
    let clock = Date.now();
    const shortLived = await startDataverseSimulator({ tokenLifetimeSeconds: 1, now: () => clock });
    try {
      const res = await fetch(shortLived.tokenUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ client_id: shortLived.clientId, client_secret: shortLived.clientSecret, scope: `${shortLived.url}/.default`, grant_type: 'client_credentials' }),
      });
      const { access_token: t, expires_in } = (await res.json()) as { access_token: string; expires_in: number };
      expect(expires_in).toBe(1);
      const whoAmI = () => fetch(`${shortLived.url}/api/data/v9.2/WhoAmI`, { headers: { Authorization: `Bearer ${t}` } });
      clock += 999;
      expect((await whoAmI()).status).toBe(200);
      clock += 1;
      expect((await whoAmI()).status).toBe(401);
    } finally {
      await shortLived.close();
    }
  });

  it('rejects bad filter syntax, unknown columns, type mismatches and $skip with 0x80060888', async () => {
    for (const query of [
      "leads?$filter=lastname eq 'x",
      'leads?$filter=nosuchcolumn eq 1',
      "leads?$filter=lastname eq 5",
      'leads?$filter=(lastname eq null',
      'leads?$select=nosuchcolumn',
      'leads?$orderby=nosuchcolumn desc',
      'leads?$skip=10',
      "contacts?$filter=parentcustomerid eq 00000000-0000-0000-0000-000000000001",
    ]) {
      const res = await api('GET', query);
      expect(res.status, query).toBe(400);
      expect(res.json.error.code, query).toBe('0x80060888');
    }
  });

  it('evaluates eq/ne/gt/ge/lt/le, and/or, parentheses, In and case-insensitive strings', async () => {
    const a = sim.admin.create('lead', { lastname: 'Alpha', emailaddress1: 'A@x.com', leadsourcecode: 1 });
    const b = sim.admin.create('lead', { lastname: 'Beta', emailaddress1: 'b@x.com', leadsourcecode: 5 });
    sim.admin.create('lead', { lastname: 'Gamma', leadsourcecode: 8 });
    const ids = async (filter: string) =>
      ((await api('GET', `leads?$select=lastname&$orderby=lastname asc&$filter=${encodeURIComponent(filter)}`)).json.value as { lastname: string }[]).map((r) => r.lastname);
    expect(await ids("emailaddress1 eq 'a@X.COM'")).toEqual(['Alpha']);
    expect(await ids('leadsourcecode ge 5')).toEqual(['Beta', 'Gamma']);
    expect(await ids('leadsourcecode lt 5 or (leadsourcecode gt 5 and leadsourcecode le 8)')).toEqual(['Alpha', 'Gamma']);
    expect(await ids('emailaddress1 ne null and leadsourcecode ne 1')).toEqual(['Beta']);
    expect(await ids(`Microsoft.Dynamics.CRM.In(PropertyName='leadid',PropertyValues=['${a.leadid as string}','${b.leadid as string}'])`)).toEqual(['Alpha', 'Beta']);
    expect(await ids(`leadid eq ${a.leadid as string} or leadid eq ${b.leadid as string}`)).toEqual(['Alpha', 'Beta']);
  });

  it('pages with opaque skiptokens honouring odata.maxpagesize and ignores $top when it is present', async () => {
    for (let i = 0; i < 5; i += 1) sim.admin.create('contact', { lastname: `P${i}` });
    const first = await api('GET', 'contacts?$select=lastname&$top=1', { headers: { Prefer: 'odata.maxpagesize=2' } });
    expect(first.json.value).toHaveLength(2);
    expect(first.headers.get('preference-applied')).toBe('odata.maxpagesize=2');
    const next: string = first.json['@odata.nextLink'];
    expect(next).toContain('$skiptoken=%3Ccookie%20pagenumber%3D%222%22');
    const all = [...first.json.value];
    let link: string | undefined = next;
    while (link) {
      const page = await fetch(link, { headers: { Authorization: `Bearer ${token}`, Prefer: 'odata.maxpagesize=2' } });
      const json = (await page.json()) as { value: unknown[]; '@odata.nextLink'?: string };
      all.push(...json.value);
      link = json['@odata.nextLink'];
    }
    expect(all).toHaveLength(5);
    const topOnly = await api('GET', 'contacts?$select=lastname&$top=3');
    expect(topOnly.json.value).toHaveLength(3);
    expect(topOnly.json['@odata.nextLink']).toBeUndefined();
    const tampered = await api('GET', `contacts?$skiptoken=${encodeURIComponent('<cookie pagenumber="2" />')}`);
    expect(tampered.status).toBe(400);
  });

  it('creates with 204 + OData-EntityId or 201 + representation, and upserts with PATCH', async () => {
    const plain = await api('POST', 'contacts', { body: { lastname: 'Plain' } });
    expect(plain.status).toBe(204);
    expect(plain.headers.get('odata-entityid')).toMatch(/\/api\/data\/v9\.2\/contacts\([0-9a-f-]{36}\)$/);
    const rep = await api('POST', 'contacts?$select=lastname', { body: { lastname: 'Rep' }, headers: { Prefer: 'return=representation' } });
    expect(rep.status).toBe(201);
    expect(rep.json['@odata.etag']).toBe(`W/"${rep.json.versionnumber ?? ''}"`.replace('W/""', rep.headers.get('etag') ?? ''));
    expect(rep.headers.get('etag')).toMatch(/^W\/"\d+"$/);
    const id = '5b0c1a8e-0000-4000-8000-000000000001';
    const upsert = await api('PATCH', `contacts(${id})`, { body: { lastname: 'Upserted' }, headers: { Prefer: 'return=representation' } });
    expect(upsert.status).toBe(201);
    const again = await api('PATCH', `contacts(${id})`, { body: { jobtitle: 'x' }, headers: { Prefer: 'return=representation' } });
    expect(again.status).toBe(200);
    const createOnly = await api('PATCH', `contacts(${id})`, { body: { jobtitle: 'y' }, headers: { 'If-None-Match': '*' } });
    expect(createOnly.status).toBe(412);
    const duplicate = await api('POST', 'contacts', { body: { contactid: id, lastname: 'Dup' } });
    expect(duplicate.status).toBe(412);
    expect(duplicate.json.error.code).toBe('0x80040237');
  });

  it('answers 412 0x80060882 for a stale ETag, 404 0x80040217 for If-Match * on a missing row, and 304 when unchanged', async () => {
    const c = sim.admin.create('contact', { lastname: 'Versioned' });
    const id = c.contactid as string;
    const etag = c['@odata.etag'] as string;
    sim.admin.update('contact', id, { jobtitle: 'changed' });
    const stale = await api('PATCH', `contacts(${id})`, { body: { jobtitle: 'mine' }, headers: { 'If-Match': etag } });
    expect(stale.status).toBe(412);
    expect(stale.json.error).toEqual({ code: '0x80060882', message: "The version of the existing record doesn't match the RowVersion property provided." });
    const staleDelete = await api('DELETE', `contacts(${id})`, { headers: { 'If-Match': etag } });
    expect(staleDelete.status).toBe(412);
    const missing = '5b0c1a8e-0000-4000-8000-00000000dead';
    const noRow = await api('PATCH', `contacts(${missing})`, { body: { jobtitle: 'x' }, headers: { 'If-Match': '*' } });
    expect(noRow.status).toBe(404);
    expect(noRow.json.error.code).toBe('0x80040217');
    const current = await api('GET', `contacts(${id})?$select=lastname`);
    const notModified = await api('GET', `contacts(${id})?$select=lastname`, { headers: { 'If-None-Match': current.json['@odata.etag'] } });
    expect(notModified.status).toBe(304);
  });

  it('refuses unknown columns, wrong JSON types, read-only columns and over-long strings in a body', async () => {
    expect((await api('POST', 'leads', { body: { lastname: 'x', nosuch: 1 } })).json.error.code).toBe('0x80048d19');
    expect((await api('POST', 'leads', { body: { lastname: 5 } })).json.error.code).toBe('0x80048d19');
    expect((await api('POST', 'leads', { body: { lastname: 'x', fullname: 'y' } })).json.error.code).toBe('0x80048d19');
    const long = await api('POST', 'leads', { body: { lastname: 'x'.repeat(51) } });
    expect(long.status).toBe(400);
    expect(long.json.error.code).toBe('0x80044331');
    const noContentType = await fetch(`${sim.url}/api/data/v9.2/leads`, { method: 'POST', headers: { Authorization: `Bearer ${token}` }, body: '{"lastname":"x"}' });
    expect(noContentType.status).toBe(415);
  });

  it('rejects $filter with change tracking and errors when tracking is disabled for the table', async () => {
    const withFilter = await api('GET', "leads?$filter=lastname eq 'x'", { headers: { Prefer: 'odata.track-changes' } });
    expect(withFilter.status).toBe(400);
    expect(withFilter.json.error.message).toContain('"$filter" query parameter isn\'t supported when Change Tracking is enabled');
    sim.admin.setChangeTracking('lead', false);
    const disabled = await api('GET', 'leads?$select=lastname', { headers: { Prefer: 'odata.track-changes' } });
    expect(disabled.status).toBe(400);
    const garbage = await api('GET', 'contacts?$select=lastname&$deltatoken=garbage');
    expect(garbage.json.error.code).toBe('0x80044352');
  });

  it('answers 429 with Retry-After and the service-protection code when the request limit is hit', async () => {
    sim.admin.setLimits({ requestsPerWindow: 2, windowMs: 60_000 });
    try {
      await api('GET', 'WhoAmI');
      await api('GET', 'WhoAmI');
      const limited = await api('GET', 'WhoAmI');
      expect(limited.status).toBe(429);
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(limited.json.error.code).toBe('0x80072322');
    } finally {
      sim.admin.setLimits({ requestsPerWindow: 6000, windowMs: 300_000 });
    }
    expect(sim.admin.stats()['GET WhoAmI']?.byStatus['429']).toBe(1);
  });

  it('applies a write and then loses its answer (dropped or 504), leaving reads alone and telling its listener', async () => {
    const fired: string[] = [];
    sim.admin.onFault((fault) => fired.push(fault.kind));
    const lead = sim.admin.create('lead', { lastname: 'Lost', emailaddress1: 'lost@x.com' });
    const id = lead.leadid as string;
    sim.admin.injectFault({ kind: 'lost_answer', count: 1, answer: 'network', batch: false });
    // a read writes nothing: it passes and leaves the fault for the write
    expect((await api('GET', `leads(${id})?$select=jobtitle`)).status).toBe(200);
    await expect(api('PATCH', `leads(${id})`, { body: { jobtitle: 'Landed' }, headers: { 'If-Match': '*' } })).rejects.toThrow();
    expect(sim.admin.get('lead', id)?.['jobtitle']).toBe('Landed');
    sim.admin.injectFault({ kind: 'lost_answer', count: 1, answer: 504, batch: false });
    const created = await fetch(`${sim.url}/api/data/v9.2/leads`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ lastname: 'Created', leadid: '00000000-0000-0000-0000-0000000000a1' }),
    });
    expect(created.status).toBe(504);
    expect(sim.admin.get('lead', '00000000-0000-0000-0000-0000000000a1')?.['lastname']).toBe('Created');
    expect(fired).toEqual(['lost_answer', 'lost_answer']);
    expect((await api('PATCH', `leads(${id})`, { body: { jobtitle: 'Answered' }, headers: { 'If-Match': '*' } })).status).toBe(204);
  });

  it('qualifies a lead into a contact that points back at it', async () => {
    const lead = sim.admin.create('lead', { firstname: 'Q', lastname: 'Lead', emailaddress1: 'q@x.com' });
    const res = await api('POST', `leads(${lead.leadid as string})/Microsoft.Dynamics.CRM.QualifyLead`, {
      body: { CreateAccount: false, CreateContact: true, CreateOpportunity: false, Status: 3 },
    });
    expect(res.status).toBe(200);
    const contactId = res.json.value[0].contactid as string;
    const contact = sim.admin.get('contact', contactId);
    expect(contact).toMatchObject({ _originatingleadid_value: lead.leadid, emailaddress1: 'q@x.com' });
    expect(sim.admin.get('lead', lead.leadid as string)).toMatchObject({ statecode: 1, statuscode: 3 });
    const twice = await api('POST', `leads(${lead.leadid as string})/Microsoft.Dynamics.CRM.QualifyLead`, { body: { CreateContact: true } });
    expect(twice.status).toBe(400);
  });
});

describe('Dataverse simulator webhooks', () => {
  it('posts a RemoteExecutionContext shaped like the real sample, with the writer as InitiatingUserId', async () => {
    sim.admin.registerWebhook({ url: receiverUrl, authValue: 'k3y', entities: ['contact'], messages: ['Create', 'Update', 'Delete'], postImage: true });
    const c = sim.admin.create('contact', { firstname: 'James', lastname: 'Glynn', statecode: 0 });
    const id = c.contactid as string;
    await api('PATCH', `contacts(${id})`, { body: { firstname: 'Jim' }, headers: { 'If-Match': '*' } });
    sim.admin.delete('contact', id);
    await sim.admin.flushWebhooks();
    expect(received).toHaveLength(3);
    const [created, updated, deleted] = received;
    expect(updated!.url).toBe('/hook?code=k3y');
    expect(updated!.headers).toMatchObject({
      'x-ms-dynamics-entity-name': 'contact',
      'x-ms-dynamics-request-name': 'Update',
      'x-ms-dynamics-organization': new URL(sim.url).host,
    });
    expect(updated!.headers['x-ms-correlation-request-id']).toBe((updated!.body as { CorrelationId: string }).CorrelationId);

    const sample = JSON.parse(readFileSync(new URL('../fixtures/dataverse-webhook-contact-update.json', import.meta.url), 'utf8')) as Record<string, unknown>;
    const topKeys = (o: unknown) => Object.keys(o as object).sort();
    expect(topKeys(updated!.body)).toEqual(topKeys(sample));
    const target = (updated!.body as Json).InputParameters[0].value;
    expect(topKeys(target)).toEqual(topKeys((sample as Json).InputParameters[0].value));

    const fromSim = parseDataverseWebhook(updated!.body);
    const fromSample = parseDataverseWebhook(sample);
    if (!fromSim.ok || !fromSample.ok) throw new Error('both bodies must parse');
    expect(Object.keys(fromSim.notice).sort()).toEqual(Object.keys(fromSample.notice).sort());
    expect(fromSim.notice).toMatchObject({ messageName: 'Update', entity: 'contact', id, initiatingUserId: sim.syncUserId, userId: sim.syncUserId, depth: 1 });
    expect(fromSim.notice.changedAttributes).toMatchObject({ firstname: 'Jim', fullname: 'Jim Glynn', contactid: id, modifiedby: { id: sim.syncUserId, logicalName: 'systemuser' } });
    expect(fromSim.notice.changedAttributes).not.toHaveProperty('lastname');
    expect(fromSim.notice.postImage).toMatchObject({ lastname: 'Glynn', firstname: 'Jim', statecode: 0 });

    const createdNotice = parseDataverseWebhook(created!.body);
    expect(createdNotice.ok && createdNotice.notice).toMatchObject({ messageName: 'Create', initiatingUserId: sim.uiUserId });
    expect(createdNotice.ok && createdNotice.notice.changedAttributes).toMatchObject({ statecode: 0, ownerid: { id: sim.uiUserId, logicalName: 'systemuser' } });
    const deletedNotice = parseDataverseWebhook(deleted!.body);
    expect(deletedNotice.ok && deletedNotice.notice).toMatchObject({ messageName: 'Delete', id, changedAttributes: {} });
    expect((deleted!.body as Json).InputParameters[0].value.__type).toMatch(/^EntityReference:/);
  });

  it('posts each change with the row as that change left it, though later writes come before it is sent', async () => {
    sim.admin.registerWebhook({ url: receiverUrl, authValue: 'k', entities: ['contact'], messages: ['Update'], postImage: true });
    const id = sim.admin.create('contact', { firstname: 'A', lastname: 'Row' }).contactid as string;
    for (const firstname of ['B', 'C', 'D']) sim.admin.update('contact', id, { firstname });
    await sim.admin.flushWebhooks();
    const pairs = received.map((r) => {
      const parsed = parseDataverseWebhook(r.body);
      if (!parsed.ok) throw new Error('the body must parse');
      return [parsed.notice.changedAttributes.firstname, parsed.notice.postImage?.firstname];
    });
    expect(pairs.sort()).toEqual([
      ['B', 'B'],
      ['C', 'C'],
      ['D', 'D'],
    ]);
  });

  it('retries a delivery once on 503 but never on 500', async () => {
    sim.admin.registerWebhook({ url: receiverUrl, authValue: 'k', entities: ['lead'], messages: ['Create'] });
    receiverStatuses = [503, 503];
    sim.admin.create('lead', { lastname: 'Retry' });
    await sim.admin.flushWebhooks();
    expect(received).toHaveLength(2);
    received.length = 0;
    receiverStatuses = [500];
    sim.admin.create('lead', { lastname: 'NoRetry' });
    await sim.admin.flushWebhooks();
    expect(received).toHaveLength(1);
    expect(sim.admin.webhookDeliveries().map((d) => [d.status, d.attempts])).toEqual([
      [503, 2],
      [500, 1],
    ]);
  });

  it('delivers at most webhookConcurrency webhooks at once, starting them in the order the changes happened, and tells in-process listeners of each stored change', async () => {
    let inFlight = 0;
    let most = 0;
    const started: string[] = [];
    const release: (() => void)[] = [];
    const limited = await startDataverseSimulator({
      webhookConcurrency: 2,
      fetch: async (_url, init) => {
        inFlight += 1;
        most = Math.max(most, inFlight);
        started.push((JSON.parse(init?.body as string) as { PrimaryEntityId: string }).PrimaryEntityId);
        // held until the test lets it go: how many are in flight at once is counted, not timed
        await new Promise<void>((resolve) => release.push(resolve));
        inFlight -= 1;
        return new Response(null, { status: 202 });
      },
    });
    try {
      const told: string[] = [];
      limited.admin.onRecordChanged((table, id) => told.push(`${table}:${id}`));
      limited.admin.registerWebhook({ url: receiverUrl, authValue: 'k', entities: ['lead'], messages: ['Create'] });
      const ids = Array.from({ length: 6 }, (_, i) => limited.admin.create('lead', { lastname: `Queued ${i}` }).leadid as string);
      expect(told).toEqual(ids.map((id) => `lead:${id}`));
      const flushed = limited.admin.flushWebhooks();
      while (started.length < ids.length) {
        await new Promise((resolve) => setImmediate(resolve));
        release.shift()?.();
      }
      while (release.length > 0) release.shift()!();
      await flushed;
      expect(most).toBe(2);
      expect(started).toEqual(ids);
    } finally {
      await limited.close();
    }
  });

  it('skips Update steps whose filtering attributes did not change', async () => {
    sim.admin.registerWebhook({ url: receiverUrl, authValue: 'k', entities: ['lead'], messages: ['Update'], filteringAttributes: ['emailaddress1'] });
    const lead = sim.admin.create('lead', { lastname: 'Filter' });
    sim.admin.update('lead', lead.leadid as string, { jobtitle: 'ignored' });
    sim.admin.update('lead', lead.leadid as string, { emailaddress1: 'fires@x.com' });
    await sim.admin.flushWebhooks();
    expect(received).toHaveLength(1);
  });
});

describe('dynamics-web-api, an independent client, against the simulator', () => {
  it('retrieves, pages, creates and updates', async () => {
    for (let i = 0; i < 5; i += 1) sim.admin.create('lead', { lastname: `W${i}`, emailaddress1: `w${i}@x.com` });
    const dwa = new DynamicsWebApi({ serverUrl: sim.url, dataApi: { version: '9.2' }, onTokenRefresh: getToken });
    const who = await dwa.callFunction<{ UserId: string }>('WhoAmI');
    expect(who.UserId).toBe(sim.syncUserId);

    const page = await dwa.retrieveMultiple({ collection: 'leads', select: ['lastname'], maxPageSize: 2, orderBy: ['lastname asc'] });
    expect(page.value).toHaveLength(2);
    expect(page.oDataNextLink).toBeDefined();
    const all = await dwa.retrieveAll({ collection: 'leads', select: ['lastname'], maxPageSize: 2, filter: "startswith(lastname,'W')" });
    expect(all.value).toHaveLength(5);

    const created = await dwa.create<Record<string, unknown>, { leadid: string; lastname: string }>({ collection: 'leads', data: { lastname: 'ViaDWA', firstname: 'Lib' }, returnRepresentation: true, select: ['lastname'] });
    expect(created?.lastname).toBe('ViaDWA');
    const updated = await dwa.update<Record<string, unknown>, { jobtitle: string }>({ collection: 'leads', key: created.leadid, data: { jobtitle: 'Tester' }, returnRepresentation: true, select: ['jobtitle'] });
    expect(updated?.jobtitle).toBe('Tester');
    const one = await dwa.retrieve<{ jobtitle: string; fullname: string }>({ collection: 'leads', key: created.leadid, select: ['jobtitle', 'fullname'] });
    expect(one).toMatchObject({ jobtitle: 'Tester', fullname: 'Lib ViaDWA' });
    const lead = sim.admin.get('lead', created.leadid);
    expect(lead?._modifiedby_value).toBe(sim.syncUserId);
  });
});
