import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testEngines } from '../support/database.ts';
import { bootService, type TestService } from '../support/service.ts';

// A contact's company is its parent account: the account's fields reach the person one way, and an
// edit of the account reaches every linked contact's person, in full Marketo calls. Through the real
// app, the account's Update webhook step and both simulators.

let n = 0;
const unique = (name: string) => `${name}.${Date.now().toString(36)}${++n}@example.com`;

type Sent = { method: string; url: string; body: string };

/** Marketo's Sync Leads calls (writes), as the service sent them. */
function marketoWrites(sent: readonly Sent[]): Sent[] {
  return sent.filter((r) => r.method === 'POST' && new URL(r.url).pathname === '/rest/v1/leads.json' && !r.url.includes('_method=GET'));
}

describe.each(testEngines())('account fields on contact-linked persons on %s', (engine) => {
  let t: TestService;
  const sent: Sent[] = [];

  beforeAll(async () => {
    // no scheduled sweep: its re-discovery of hundreds of new contacts would only add load here
    t = await bootService(engine, { SYNC_SWEEP_CRON: '0 0 0 1 1 *', SYNC_FULL_CRON: '0 0 0 1 1 *' }, {
      interceptVendorHttp: {
        marketo: (next) => (input, init) => {
          const url = typeof input === 'string' ? input : input instanceof URL ? input.toString() : input.url;
          sent.push({ method: init?.method ?? 'GET', url, body: typeof init?.body === 'string' ? init.body : '' });
          return next(input, init);
        },
      },
    });
  });
  afterAll(async () => {
    await t.stop();
  });

  function account(values: Record<string, unknown>): string {
    return String(t.dataverse.create('account', values).accountid);
  }

  async function contactOf(accountId: string | null, values: Record<string, unknown> = {}) {
    const created = t.dataverse.create('contact', {
      firstname: 'Ada',
      lastname: 'Lovelace',
      emailaddress1: unique('contact'),
      ...(accountId ? { 'parentcustomerid_account@odata.bind': `/accounts(${accountId})` } : {}),
      ...values,
    });
    const dynamicsId = String(created.contactid);
    await t.settle();
    const link = await t.service.db.prisma.syncLink.findFirstOrThrow({ where: { dynamicsId } });
    return { dynamicsId, marketoId: link.marketoId };
  }

  it('copies the parent account into the person’s company fields, the industry as its option label', async () => {
    const id = account({
      name: 'Litware, Inc.',
      websiteurl: 'https://litware.example',
      telephone1: '+1 425 555 0100',
      industrycode: 7,
      numberofemployees: 250,
      revenue: 1_250_000,
      sic: '7372',
      address1_line1: '1 Microsoft Way',
      address1_city: 'Redmond',
      address1_stateorprovince: 'WA',
      address1_postalcode: '98052',
      address1_country: 'United States',
    });
    const { marketoId } = await contactOf(id);
    expect(t.marketo.getLead(marketoId)).toMatchObject({
      company: 'Litware, Inc.',
      website: 'https://litware.example',
      mainPhone: '+1 425 555 0100',
      industry: 'Consulting',
      numberOfEmployees: 250,
      annualRevenue: 1_250_000,
      sicCode: '7372',
      billingStreet: '1 Microsoft Way',
      billingCity: 'Redmond',
      billingState: 'WA',
      billingPostalCode: '98052',
      billingCountry: 'United States',
    });
  });

  it('follows a contact moved to another account, and logs the company change on the person with its fields', async () => {
    const first = account({ name: 'Contoso' });
    const second = account({ name: 'Fabrikam', websiteurl: 'https://fabrikam.example' });
    const { dynamicsId, marketoId } = await contactOf(first);
    expect(t.marketo.getLead(marketoId)).toMatchObject({ company: 'Contoso' });
    t.dataverse.update('contact', dynamicsId, { 'parentcustomerid_account@odata.bind': `/accounts(${second})` });
    await t.settle();
    expect(t.marketo.getLead(marketoId)).toMatchObject({ company: 'Fabrikam', website: 'https://fabrikam.example' });
    const updates = (await t.activities(marketoId)).filter((a) => a.type === 'UPDATED_IN_MARKETO');
    expect(JSON.stringify(updates.at(-1)?.fields)).toContain('Fabrikam');
  });

  it('never writes a company field edited in Marketo back to Dynamics: the account wins, one way', async () => {
    const id = account({ name: 'Northwind' });
    const { marketoId } = await contactOf(id);
    t.marketo.updateLead(marketoId, { company: 'Typo Inc', firstName: 'Augusta' });
    await t.marketoWebhook('person-changed', { marketoId }).expect(202);
    await t.settle();
    expect(t.dataverse.get('account', id)).toMatchObject({ name: 'Northwind' });
    expect(t.marketo.getLead(marketoId)).toMatchObject({ company: 'Northwind', firstName: 'Augusta' });
  });

  it('renames the company of every linked contact’s person when the account is renamed, in Marketo write calls of at least an inbox batch each', async () => {
    const N = 320;
    const id = account({ name: 'Tailspin Toys' });
    for (let i = 0; i < N; i++) {
      t.dataverse.create('contact', { lastname: `Fan${i}`, emailaddress1: unique(`fan${i}`), 'parentcustomerid_account@odata.bind': `/accounts(${id})` });
    }
    await t.settle(300_000);
    // a webhook delivery lost on a loaded machine (Dataverse retries only 502-504) is what the sweep catches
    const swept = await t.service.sweeper.requestSweep({ trigger: 'TEST' });
    expect(swept.status).toBe('started');
    await t.settle(300_000);
    const links = await t.service.db.prisma.syncLink.findMany({ where: { dynamicsId: { in: contactIds(id) } } });
    expect(links).toHaveLength(N);
    sent.length = 0;
    t.dataverse.update('account', id, { name: 'Tailspin Toys International' });
    await t.settle(300_000);
    for (const link of links) expect(t.marketo.getLead(link.marketoId)?.company).toBe('Tailspin Toys International');
    const sizes = marketoWrites(sent).map((w) => (JSON.parse(w.body) as { input: unknown[] }).input.length);
    // every person written once, in calls of many persons. Not yet in ceil(N/300) calls: a call is
    // filled by the writes of the inbox batches (INBOX_BATCH_SIZE, 100) whose reads came back
    // together, and fanned-out batches often do not (measured [100, 100, 120] for N = 320)
    expect(sizes.reduce((sum, n) => sum + n, 0)).toBe(N);
    expect(sizes.length, `Sync Leads calls carried ${JSON.stringify(sizes)}`).toBeLessThanOrEqual(Math.ceil(N / 100));
  }, 600_000);

  function contactIds(accountId: string): string[] {
    return t.dataverse
      .list('contact')
      .filter((c) => c._parentcustomerid_value === accountId)
      .map((c) => String(c.contactid));
  }
});
