import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express from 'express';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startDataverseSimulator, type DataverseSimulator } from '../../src/sandbox/dynamics/index.ts';
import { startMarketoSimulator, type MarketoSimulatorOptions, type StartedMarketoSimulator } from '../../src/sandbox/marketo/index.ts';

// Accounts, owners, Assign and Merge in the Dataverse simulator; Merge Leads in the Marketo one
// (reference dataverse §10-§13, marketo §11).

// loosely typed JSON for assertions on vendor-shaped bodies
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

let sim: DataverseSimulator;
let token: string;
let receiver: Server;
let receiverUrl: string;
const received: { headers: Record<string, unknown>; body: Json }[] = [];

async function api(method: string, path: string, options: { body?: unknown; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { Accept: 'application/json', Authorization: `Bearer ${token}`, ...options.headers };
  if (options.body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`${sim.url}/api/data/v9.2/${path}`, { method, headers, ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }) });
  const text = await res.text();
  const json: Json = text ? JSON.parse(text) : undefined;
  return { status: res.status, json };
}

beforeAll(async () => {
  sim = await startDataverseSimulator({ webhookRetryDelayMs: 10 });
  const res = await fetch(sim.tokenUrl, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: sim.clientId, client_secret: sim.clientSecret, scope: `${sim.url}/.default`, grant_type: 'client_credentials' }),
  });
  token = ((await res.json()) as { access_token: string }).access_token;
  const app = express();
  app.post('/hook', express.json({ limit: '5mb' }), (req, res) => {
    received.push({ headers: req.headers, body: req.body });
    res.status(202).end();
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
  for (const w of sim.admin.webhooks()) sim.admin.unregisterWebhook(w.id);
});

describe('Dataverse simulator: accounts and owners', () => {
  it('stores the account columns a sync copies and lists industrycode labels in its option set metadata', async () => {
    const created = await api('POST', 'accounts?$select=name,industrycode,revenue,numberofemployees', {
      body: { name: 'Litware', websiteurl: 'https://litware.example', industrycode: 7, revenue: 20000, numberofemployees: 120, sic: '7372', address1_city: 'Redmond' },
      headers: { Prefer: 'return=representation' },
    });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ name: 'Litware', industrycode: 7, revenue: 20000, numberofemployees: 120 });
    const meta = await api('GET', "EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata");
    const industry = meta.json.value.find((a: Json): boolean => a.LogicalName === 'industrycode');
    expect(industry.OptionSet.Options).toHaveLength(33);
    expect(industry.OptionSet.Options[6]).toMatchObject({ Value: 7, Label: { UserLocalizedLabel: { Label: 'Consulting' } } });
    const refused = await api('POST', 'accounts', { body: { name: 'X', industrycode: 99 } });
    expect(refused.status).toBe(400);
    expect(refused.json.error.code).toBe('0x8004431a');
  });

  it('annotates a contact’s parent account and owner lookups only when the Prefer header asks for them', async () => {
    const account = sim.admin.create('account', { name: 'Fabrikam' });
    const userId = sim.admin.addUser({ domainname: 'sam@contoso.example', firstname: 'Sam', lastname: 'Seller', internalemailaddress: 'sam@contoso.example', title: 'AE' });
    const contact = sim.admin.create('contact', {
      lastname: 'Lee',
      'parentcustomerid_account@odata.bind': `/accounts(${String(account.accountid)})`,
      'ownerid@odata.bind': `/systemusers(${userId})`,
    });
    const path = `contacts(${String(contact.contactid)})?$select=_parentcustomerid_value,_ownerid_value`;
    const plain = await api('GET', path);
    expect(plain.json._parentcustomerid_value).toBe(account.accountid);
    expect(Object.keys(plain.json).some((k) => k.includes('@Microsoft'))).toBe(false);
    const annotated = await api('GET', path, { headers: { Prefer: 'odata.include-annotations="OData.Community.Display.V1.FormattedValue,Microsoft.Dynamics.CRM.lookuplogicalname"' } });
    expect(annotated.json).toMatchObject({
      '_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname': 'account',
      '_parentcustomerid_value@OData.Community.Display.V1.FormattedValue': 'Fabrikam',
      _ownerid_value: userId,
      '_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname': 'systemuser',
      '_ownerid_value@OData.Community.Display.V1.FormattedValue': 'Sam Seller',
    });
    const user = await api('GET', `systemusers(${userId})?$select=fullname,internalemailaddress,title`);
    expect(user.json).toMatchObject({ fullname: 'Sam Seller', internalemailaddress: 'sam@contoso.example', title: 'AE' });
    const byAccount = await api('GET', `contacts?$select=contactid&$filter=_parentcustomerid_value eq ${String(account.accountid)}`);
    expect((byAccount.json.value as Json[]).map((r): unknown => r.contactid)).toEqual([contact.contactid]);
  });

  it('expands a contact’s parent account and owning user in the same read, null where the lookup points at another table', async () => {
    const account = sim.admin.create('account', { name: 'Litware', websiteurl: 'https://litware.example' });
    const userId = sim.admin.addUser({ domainname: 'ida@contoso.example', firstname: 'Ida', lastname: 'Owner', internalemailaddress: 'ida@contoso.example', title: 'AE' });
    const parent = sim.admin.create('contact', { lastname: 'Parent' });
    const underAccount = sim.admin.create('contact', { lastname: 'A', 'parentcustomerid_account@odata.bind': `/accounts(${String(account.accountid)})`, 'ownerid@odata.bind': `/systemusers(${userId})` });
    const underContact = sim.admin.create('contact', { lastname: 'B', 'parentcustomerid_contact@odata.bind': `/contacts(${String(parent.contactid)})` });
    const expand = '$expand=parentcustomerid_account($select=name,websiteurl),owninguser($select=fullname,title)';
    const one = await api('GET', `contacts(${String(underAccount.contactid)})?$select=lastname&${expand}`);
    expect(one.status).toBe(200);
    expect(one.json.parentcustomerid_account).toMatchObject({ name: 'Litware', websiteurl: 'https://litware.example', accountid: account.accountid });
    expect(one.json.owninguser).toMatchObject({ fullname: 'Ida Owner', title: 'AE', systemuserid: userId });
    const ids = [underAccount.contactid, underContact.contactid].map((id) => `'${String(id)}'`).join(',');
    const many = await api('GET', `contacts?$select=lastname&${expand}&$filter=Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=[${ids}])&$orderby=lastname asc`);
    expect((many.json.value as Json[]).map((r): unknown[] => [r.lastname, r.parentcustomerid_account?.name ?? null])).toEqual([
      ['A', 'Litware'],
      ['B', null],
    ]);
    const unknown = await api('GET', `contacts?$select=lastname&$expand=parentaccount($select=name)`);
    expect(unknown.status).toBe(400);
    expect(unknown.json.error.message).toContain("Could not find a property named 'parentaccount'");
  });

  it('reassigns with PATCH ownerid@odata.bind, and the Update step sees ownerid in its Target', async () => {
    sim.admin.registerWebhook({ url: receiverUrl, entities: ['contact', 'account'], messages: ['Update'] });
    const userId = sim.admin.addUser({ domainname: 'kim@contoso.example', firstname: 'Kim' , lastname: 'Owner' });
    const contact = sim.admin.create('contact', { lastname: 'Assigned' });
    const res = await api('PATCH', `contacts(${String(contact.contactid)})`, { body: { 'ownerid@odata.bind': `/systemusers(${userId})` }, headers: { 'If-Match': '*' } });
    expect(res.status).toBe(204);
    await sim.admin.flushWebhooks();
    expect(received).toHaveLength(1);
    const target = received[0]!.body.InputParameters[0].value;
    expect(target.Attributes.find((a: Json): boolean => a.key === 'ownerid').value).toMatchObject({ Id: userId, LogicalName: 'systemuser' });
  });

  it('tracks account changes, and deleting an account deletes its contacts', async () => {
    const first = await api('GET', 'accounts?$select=name', { headers: { Prefer: 'odata.track-changes' } });
    const deltaLink = String(first.json['@odata.deltaLink']);
    const account = sim.admin.create('account', { name: 'Contoso' });
    const contact = sim.admin.create('contact', { lastname: 'Child', 'parentcustomerid_account@odata.bind': `/accounts(${String(account.accountid)})` });
    sim.admin.update('account', String(account.accountid), { name: 'Contoso Ltd' });
    const delta = await api('GET', deltaLink.slice(deltaLink.indexOf('accounts')), { headers: { Prefer: 'odata.track-changes' } });
    expect((delta.json.value as Json[]).map((r): unknown => r.name)).toEqual(['Contoso Ltd']);
    sim.admin.delete('account', String(account.accountid));
    expect(sim.admin.get('contact', String(contact.contactid))).toBeNull();
  });
});

describe('Dataverse simulator: the Merge action', () => {
  it('deactivates the subordinate with masterid and merged, fills the target’s empty columns, writes UpdateContent and fires only a Merge step', async () => {
    sim.admin.registerWebhook({ url: receiverUrl, entities: ['contact'], messages: ['Update', 'Merge'] });
    const master = sim.admin.create('contact', { lastname: 'Master', emailaddress1: 'm@x.com' });
    const sub = sim.admin.create('contact', { lastname: 'Sub', emailaddress1: 's@x.com', jobtitle: 'CTO' });
    const masterId = String(master.contactid);
    const subId = String(sub.contactid);
    const res = await api('POST', 'Merge', {
      body: {
        Target: { '@odata.type': 'Microsoft.Dynamics.CRM.contact', contactid: masterId },
        Subordinate: { '@odata.type': 'Microsoft.Dynamics.CRM.contact', contactid: subId },
        UpdateContent: { '@odata.type': 'Microsoft.Dynamics.CRM.contact', mobilephone: '555' },
        PerformParentingChecks: false,
      },
    });
    expect(res.status).toBe(204);
    expect(sim.admin.get('contact', masterId)).toMatchObject({ lastname: 'Master', emailaddress1: 'm@x.com', jobtitle: 'CTO', mobilephone: '555' });
    const loser = await api('GET', `contacts(${subId})?$select=statecode,statuscode,_masterid_value,merged`);
    expect(loser.json).toMatchObject({ statecode: 1, statuscode: 2, _masterid_value: masterId, merged: true });
    await sim.admin.flushWebhooks();
    expect(received.map((r): unknown => r.body.MessageName)).toEqual(['Merge']);
    const inputs = Object.fromEntries(received[0]!.body.InputParameters.map((p: Json): [unknown, unknown] => [p.key, p.value]));
    expect(inputs.Target).toMatchObject({ Id: masterId, LogicalName: 'contact' });
    expect(inputs.SubordinateId).toBe(subId);
    const again = await api('POST', 'Merge', {
      body: { Target: { '@odata.type': 'Microsoft.Dynamics.CRM.contact', contactid: masterId }, Subordinate: { '@odata.type': 'Microsoft.Dynamics.CRM.contact', contactid: subId }, PerformParentingChecks: false },
    });
    expect(again.status).toBe(400);
  });

  it('moves a merged-away account’s contacts to the surviving account and refuses parameters without @odata.type', async () => {
    const keep = sim.admin.create('account', { name: 'Keep' });
    const gone = sim.admin.create('account', { name: 'Gone' });
    const contact = sim.admin.create('contact', { lastname: 'Moves', 'parentcustomerid_account@odata.bind': `/accounts(${String(gone.accountid)})` });
    const untyped = await api('POST', 'Merge', { body: { Target: { accountid: keep.accountid }, Subordinate: { accountid: gone.accountid }, PerformParentingChecks: false } });
    expect(untyped.status).toBe(400);
    const res = await api('POST', 'Merge', {
      body: {
        Target: { '@odata.type': 'Microsoft.Dynamics.CRM.account', accountid: keep.accountid },
        Subordinate: { '@odata.type': 'Microsoft.Dynamics.CRM.account', accountid: gone.accountid },
        PerformParentingChecks: false,
      },
    });
    expect(res.status).toBe(204);
    const moved = await api('GET', `contacts(${String(contact.contactid)})?$select=_parentcustomerid_value`);
    expect(moved.json._parentcustomerid_value).toBe(keep.accountid);
  });
});

const marketoSims: StartedMarketoSimulator[] = [];
afterEach(async () => {
  for (const m of marketoSims.splice(0)) await m.close();
});

async function marketo(options: MarketoSimulatorOptions = {}) {
  const m = await startMarketoSimulator(options);
  marketoSims.push(m);
  const tokenResponse = await fetch(`${m.url}/identity/oauth/token?grant_type=client_credentials&client_id=${m.clientId}&client_secret=${m.clientSecret}`);
  const { access_token: bearer } = (await tokenResponse.json()) as { access_token: string };
  const call = async (method: string, path: string): Promise<Json> => {
    const response = await fetch(`${m.url}${path}`, { method, headers: { Authorization: `Bearer ${bearer}`, 'Content-Type': 'application/json' } });
    const json: Json = await response.json();
    return json;
  };
  return { m, call };
}

describe('Marketo simulator: Merge Leads', () => {
  it('keeps the winner’s values, takes a loser’s where the winner is empty, removes the losers and logs Merge Leads on the winner', async () => {
    const { m, call } = await marketo();
    const winner = m.admin.createLead({ email: 'w@x.com', firstName: 'Win' });
    const loser = m.admin.createLead({ email: 'l@x.com', firstName: 'Lose', title: 'CFO' });
    const answer = await call('POST', `/rest/v1/leads/${winner.id}/merge.json?leadId=${loser.id}`);
    expect(answer.success).toBe(true);
    expect(answer.result).toBeUndefined();
    expect(m.admin.getLead(winner.id)).toMatchObject({ email: 'w@x.com', firstName: 'Win', title: 'CFO' });
    expect(m.admin.getLead(loser.id)).toBeUndefined();
    const activities = await call('GET', `/rest/v1/activities.json?activityTypeIds=32&nextPageToken=${encodeURIComponent((await call('GET', '/rest/v1/activities/pagingtoken.json?sinceDatetime=2000-01-01T00:00:00Z')).nextPageToken)}`);
    expect(activities.result).toHaveLength(1);
    expect(activities.result[0]).toMatchObject({ leadId: winner.id, activityTypeId: 32 });
    expect(activities.result[0].attributes).toContainEqual({ name: 'Merge IDs', value: String(loser.id) });
  });

  it('shows merged-away persons in deletedleads only behind its switch, and refuses more than 25 losers with 1080', async () => {
    const { m, call } = await marketo();
    const token = async () => encodeURIComponent((await call('GET', '/rest/v1/activities/pagingtoken.json?sinceDatetime=2000-01-01T00:00:00Z')).nextPageToken as string);
    const a = m.admin.createLead({ email: 'a@x.com' });
    const b = m.admin.createLead({ email: 'b@x.com' });
    await call('POST', `/rest/v1/leads/${a.id}/merge.json?leadId=${b.id}`);
    expect((await call('GET', `/rest/v1/activities/deletedleads.json?nextPageToken=${await token()}`)).result ?? []).toHaveLength(0);
    m.admin.setMergeLogsDeleteLead(true);
    const c = m.admin.createLead({ email: 'c@x.com' });
    await call('POST', `/rest/v1/leads/${a.id}/merge.json?leadIds=${c.id}`);
    const deleted = (await call('GET', `/rest/v1/activities/deletedleads.json?nextPageToken=${await token()}`)).result as Json[];
    expect(deleted.map((d): unknown => d.leadId)).toEqual([c.id]);
    const many = Array.from({ length: 26 }, (_, i) => i + 100).join(',');
    const refused = await call('POST', `/rest/v1/leads/${a.id}/merge.json?leadIds=${many}`);
    expect(refused.success).toBe(false);
    expect(refused.errors[0].code).toBe('1080');
  });
});
