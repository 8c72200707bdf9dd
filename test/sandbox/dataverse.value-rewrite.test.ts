import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDataverseSimulator, type AppliedRewrite, type DataverseSimulator } from '../../src/sandbox/dynamics/index.ts';

// The plug-in hook the chaos campaign uses (issue 12, item 5): a synchronous plug-in rewrites a
// value on the app user's own Web API write; the row and the caller's webhook carry the rewrite.

let sim: DataverseSimulator;
let token: string;

beforeAll(async () => {
  sim = await startDataverseSimulator({ webhookRetryDelayMs: 10 });
  const res = await fetch(sim.tokenUrl, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: sim.clientId, client_secret: sim.clientSecret, scope: `${sim.url}/.default`, grant_type: 'client_credentials' }),
  });
  token = ((await res.json()) as { access_token: string }).access_token;
});
afterAll(async () => {
  await sim.close();
});

describe('a Dataverse value-rewriting plug-in', () => {
  it('stores the rewritten value on the app user\'s PATCH and tells the listener who wrote it', async () => {
    const heard: AppliedRewrite[] = [];
    sim.admin.onValueRewrite((applied) => heard.push(applied));
    sim.admin.addValueRewrite({ table: 'contact', column: 'address1_country', from: 'usa', to: 'United States' });
    const contact = sim.admin.create('contact', { lastname: 'Rewrite', emailaddress1: 'rewrite@example.com' });
    const id = String(contact['contactid']);

    const patch = await fetch(`${sim.url}/api/data/v9.2/contacts(${id})`, {
      method: 'PATCH',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ address1_country: 'USA' }),
    });
    expect(patch.status).toBe(204);
    expect(sim.admin.get('contact', id)?.['address1_country']).toBe('United States');
    expect(heard).toEqual([expect.objectContaining({ table: 'contact', id, column: 'address1_country', from: 'USA', to: 'United States', userId: sim.syncUserId })]);
  });

  it('tells the listener nothing when the write is refused after the rewrite (a business rule)', async () => {
    const heard: AppliedRewrite[] = [];
    sim.admin.onValueRewrite((applied) => heard.push(applied));
    const rewrite = sim.admin.addValueRewrite({ table: 'lead', column: 'address1_city', from: 'nyc', to: 'New York' });
    const rule = sim.admin.addBusinessRule({ table: 'lead', column: 'telephone1', kind: 'pattern', pattern: '^\\+?[0-9 ]+$', message: 'telephone1: invalid format', messages: ['Update'] });
    const lead = sim.admin.create('lead', { lastname: 'Refused', emailaddress1: 'refused@example.com' });
    const id = String(lead['leadid']);

    const patch = await fetch(`${sim.url}/api/data/v9.2/leads(${id})`, {
      method: 'PATCH',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ address1_city: 'NYC', telephone1: 'not a phone' }),
    });
    sim.admin.removeValueRewrite(rewrite.id);
    sim.admin.removeBusinessRule(rule.id);
    expect(patch.status).toBe(400);
    expect(sim.admin.get('lead', id)?.['address1_city'] ?? null).toBeNull();
    expect(heard).toEqual([]);
  });

  it('leaves other values and other tables alone', () => {
    const before = sim.admin.get('lead', String(sim.admin.create('lead', { lastname: 'Other', address1_country: 'usa' })['leadid']));
    expect(before?.['address1_country']).toBe('usa');
    const contact = sim.admin.create('contact', { lastname: 'Other', address1_country: 'usa of america' });
    expect(contact['address1_country']).toBe('usa of america');
  });
});
