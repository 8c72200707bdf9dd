import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createDataverseClient,
  DataverseAuthError,
  DataverseConflictError,
  DataverseDeltaExpiredError,
  DataverseForbiddenError,
  DataverseNotFoundError,
  DataverseTransientError,
  DataverseValidationError,
  type DataverseClientOptions,
} from '../../src/connectors/dynamics/index.ts';
import { startDataverseSimulator, type DataverseSimulator } from '../../src/sandbox/dynamics/index.ts';

let sim: DataverseSimulator;

beforeAll(async () => {
  sim = await startDataverseSimulator({ webhookRetryDelayMs: 10 });
});
afterAll(async () => {
  await sim.close();
});
beforeEach(() => {
  sim.admin.reset();
});

function client(extra: Partial<DataverseClientOptions> = {}) {
  return createDataverseClient({
    url: sim.url,
    tenantId: sim.tenantId,
    clientId: sim.clientId,
    clientSecret: sim.clientSecret,
    tokenUrl: sim.tokenUrl,
    retryBaseDelayMs: 10,
    ...extra,
  });
}

/**
 * A clock for the client (and, when given to it, the simulator) that moves only when the client
 * sleeps: a pause is then measured on it exactly, however busy this machine is. `stamped` records
 * on it when each request was sent and answered, in the order it happened.
 */
function handMovedClock() {
  let at = Date.now();
  const events: { kind: 'sent' | 'answered'; at: number; retryAfterMs: number }[] = [];
  const now = () => at;
  return {
    now,
    options: {
      now,
      sleep: (ms: number) => {
        at += ms;
        return Promise.resolve();
      },
    },
    /** 429s answered */
    throttled: () => events.filter((e) => e.kind === 'answered' && e.retryAfterMs > 0).length,
    stamped(next: typeof fetch): typeof fetch {
      return async (input, init) => {
        events.push({ kind: 'sent', at, retryAfterMs: 0 });
        const response = await next(input, init);
        const retryAfterMs = response.status === 429 ? Number(response.headers.get('retry-after')) * 1000 : 0;
        events.push({ kind: 'answered', at, retryAfterMs });
        return response;
      };
    },
    /** requests sent while a Retry-After answered earlier had not yet run out */
    sentTooEarly() {
      let pausedUntil = Number.NEGATIVE_INFINITY;
      const early: number[] = [];
      for (const e of events) {
        if (e.kind === 'answered' && e.retryAfterMs > 0) pausedUntil = Math.max(pausedUntil, e.at + e.retryAfterMs);
        if (e.kind === 'sent' && e.at < pausedUntil) early.push(e.at);
      }
      return early;
    },
  };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to fail');
}

describe('Dataverse client against the simulator', () => {
  it('shares one token request between concurrent callers and caches WhoAmI', async () => {
    const c = client();
    const [a, b] = await Promise.all([c.whoAmI(), c.whoAmI(), c.findByEmail('lead', 'x@y.com', ['firstname'])]);
    expect(a.userId).toBe(sim.syncUserId);
    expect(b).toBe(a);
    expect(c.stats().tokenRequests).toBe(1);
    expect(c.stats().endpoints['GET WhoAmI']?.calls).toBe(1);
  });

  it('creates, reads, finds by email and updates a lead, reporting etag, version and the writer', async () => {
    const c = client();
    const created = await c.createRecord('lead', { firstname: 'Ann', lastname: 'Lee', emailaddress1: 'Ann@Example.com', companyname: 'Acme' });
    expect(created.etag).toBe(`W/"${created.versionnumber}"`);
    expect(created.modifiedby).toBe(sim.syncUserId);
    expect(created.values).toMatchObject({ firstname: 'Ann', companyname: 'Acme' });
    expect(created.modifiedon).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const found = await c.findByEmail('lead', 'ann@example.com', ['emailaddress1']);
    expect(found.map((r) => r.id)).toEqual([created.id]);

    const updated = await c.updateRecord('lead', created.id, { jobtitle: 'CTO' }, { etag: created.etag, columns: ['jobtitle', 'firstname'] });
    expect(updated.versionnumber).toBeGreaterThan(created.versionnumber);
    expect(updated.values).toMatchObject({ jobtitle: 'CTO', firstname: 'Ann' });

    const read = await c.getRecord('lead', created.id, ['jobtitle']);
    expect(read?.etag).toBe(updated.etag);
  });

  it('reads many rows by id in chunks and pages through them', async () => {
    const ids = Array.from({ length: 7 }, (_, i) => sim.admin.create('contact', { lastname: `C${i}` }).contactid as string);
    const c = client({ idChunkSize: 3, maxPageSize: 2 });
    const rows = await c.getRecords('contact', [...ids, ids[0]!], ['lastname']);
    expect(rows.map((r) => r.id).sort()).toEqual([...ids].sort());
    expect(c.stats().endpoints['GET contacts']?.calls).toBeGreaterThanOrEqual(5);
  });

  it('queries rows modified since a watermark in stable modifiedon, id order', async () => {
    for (let i = 0; i < 5; i += 1) sim.admin.create('lead', { lastname: `L${i}` });
    const c = client({ maxPageSize: 2 });
    const seen: string[] = [];
    for await (const page of c.queryModifiedSince('lead', new Date(Date.now() - 60_000), ['lastname'])) {
      expect(page.length).toBeLessThanOrEqual(2);
      seen.push(...page.map((r) => r.id));
    }
    expect(seen).toHaveLength(5);
    expect(new Set(seen).size).toBe(5);
  });

  it('assigns an owner resolved from a domain name and refuses an unknown one', async () => {
    const rep = sim.admin.addUser({ domainname: 'sam@contoso.com', firstname: 'Sam', lastname: 'Rep' });
    const c = client();
    const lead = await c.createRecord('lead', { lastname: 'Owned' }, { owner: { domainName: 'sam@contoso.com' }, columns: ['_ownerid_value'] });
    expect(lead.values._ownerid_value).toBe(rep);
    await c.assignOwner('lead', lead.id, { systemUserId: sim.uiUserId });
    expect(sim.admin.get('lead', lead.id)?._ownerid_value).toBe(sim.uiUserId);
    expect(await rejection(c.assignOwner('lead', lead.id, { domainName: 'nobody@contoso.com' }))).toBeInstanceOf(DataverseNotFoundError);
  });

  it('rides out a 429 storm by pausing every call for Retry-After without losing any call', async () => {
    const clock = handMovedClock();
    const c = client({ ...clock.options, fetch: clock.stamped(fetch) });
    await c.whoAmI();
    sim.admin.injectFault({ kind: 'rate_limit', count: 6, retryAfterSeconds: 1 });
    const created = await Promise.all(Array.from({ length: 10 }, (_, i) => c.createRecord('contact', { lastname: `R${i}` })));
    expect(created).toHaveLength(10);
    expect(sim.admin.count('contact')).toBe(10);
    expect(c.stats().rateLimitedPauses).toBeGreaterThanOrEqual(6);
    // on the client's clock: no request went out before the Retry-After of a 429 answered before it
    expect(clock.sentTooEarly()).toEqual([]);
    expect(clock.throttled()).toBe(6);
  });

  it('honours the simulator request limit with its Retry-After', async () => {
    // one clock for the simulator and the client: the window and the pause are counted, not waited for
    const clock = handMovedClock();
    const limited = await startDataverseSimulator({ now: clock.now });
    try {
      limited.admin.setLimits({ requestsPerWindow: 3, windowMs: 1000 });
      const c = client({ ...clock.options, fetch: clock.stamped(fetch), url: limited.url, tenantId: limited.tenantId, clientId: limited.clientId, clientSecret: limited.clientSecret, tokenUrl: limited.tokenUrl });
      for (let i = 0; i < 5; i += 1) await c.findByEmail('lead', `a${i}@x.com`, []);
      expect(c.stats().rateLimitedPauses).toBe(1);
      expect(clock.sentTooEarly()).toEqual([]);
      await c.close();
    } finally {
      await limited.close();
    }
  });

  it('renews a token revoked mid-run once and carries on', async () => {
    const c = client();
    await c.whoAmI();
    sim.admin.expireAccessTokens();
    const lead = await c.createRecord('lead', { lastname: 'After expiry' });
    expect(lead.id).toBeTruthy();
    expect(c.stats().tokenRequests).toBe(2);
  });

  it('renews a token that is about to expire before sending it', async () => {
    let clock = Date.now();
    const c = client({ now: () => clock });
    await c.whoAmI();
    clock += 3599_000 - 299_000;
    await c.findByEmail('lead', 'a@b.com', []);
    expect(c.stats().tokenRequests).toBe(2);
  });

  it('reports a refused client secret as an auth error carrying the AADSTS message', async () => {
    const error = await rejection(client({ clientSecret: 'wrong' }).whoAmI());
    expect(error).toBeInstanceOf(DataverseAuthError);
    expect((error as Error).message).toContain('AADSTS7000215');
  });

  it('turns a stale If-Match into a typed conflict', async () => {
    const c = client();
    const lead = await c.createRecord('lead', { lastname: 'Stale' });
    sim.admin.update('lead', lead.id, { jobtitle: 'Changed in the UI' });
    const error = await rejection(c.updateRecord('lead', lead.id, { jobtitle: 'From Marketo' }, { etag: lead.etag }));
    expect(error).toBeInstanceOf(DataverseConflictError);
    expect(error).toMatchObject({ kind: 'conflict', code: '0x80060882', httpStatus: 412 });
  });

  it('surfaces a business-rule rejection as a validation error with Dynamics message', async () => {
    const c = client();
    const noLastName = await rejection(c.createRecord('lead', { firstname: 'No', emailaddress1: 'no@x.com' }));
    expect(noLastName).toBeInstanceOf(DataverseValidationError);
    expect(noLastName).toMatchObject({ kind: 'validation', code: '0x80040265', message: 'Last Name is required to save a lead.' });
    const badEmail = await rejection(c.createRecord('contact', { lastname: 'X', emailaddress1: 'not-an-email' }));
    expect((badEmail as Error).message).toContain('valid email');
    const badOption = await rejection(c.createRecord('lead', { lastname: 'X', leadsourcecode: 99 }));
    expect(badOption).toMatchObject({ kind: 'validation', code: '0x8004431a' });
  });

  it('gets null for an unreadable secured column, 403 on writing it, and reports the access', async () => {
    const c = client();
    const contact = await c.createRecord('contact', { lastname: 'Secret', emailaddress1: 'secret@x.com', jobtitle: 'CFO' });
    sim.admin.secureColumn('contact', 'emailaddress1', { read: false, update: false });
    sim.admin.secureColumn('contact', 'jobtitle', { read: true, update: false });
    const read = await c.getRecord('contact', contact.id, ['emailaddress1', 'jobtitle']);
    expect(read?.values.emailaddress1).toBeNull();
    expect(read?.values.jobtitle).toBe('CFO');
    const error = await rejection(c.updateRecord('contact', contact.id, { emailaddress1: 'new@x.com' }));
    expect(error).toBeInstanceOf(DataverseForbiddenError);
    expect(error).toMatchObject({ code: '0x8004f507', httpStatus: 403, securedColumn: true });

    const access = new Map((await c.getColumnAccess('contact')).map((a) => [a.logicalName, a]));
    expect(access.get('emailaddress1')).toMatchObject({ isSecured: true, canRead: false, canUpdate: false });
    expect(access.get('jobtitle')).toMatchObject({ isSecured: true, canRead: true, canUpdate: false });
    expect(access.get('firstname')).toMatchObject({ isSecured: false, canRead: true, canUpdate: true });
    expect(access.get('fullname')).toMatchObject({ canRead: true, canUpdate: false });
    expect(access.get('new_synctomkto')?.options).toEqual([
      { value: 0, label: 'No' },
      { value: 1, label: 'Yes' },
    ]);
  });

  it('answers null for a missing row and not_found for writes to it', async () => {
    const c = client();
    const missing = '00000000-0000-0000-0000-000000000001';
    expect(await c.getRecord('contact', missing, [])).toBeNull();
    const update = await rejection(c.updateRecord('contact', missing, { jobtitle: 'x' }));
    expect(update).toBeInstanceOf(DataverseNotFoundError);
    expect(update).toMatchObject({ code: '0x80040217', message: `contact With Id = ${missing} Does Not Exist` });
    expect(await rejection(c.deleteRecord('contact', missing))).toBeInstanceOf(DataverseNotFoundError);
  });

  it('retries 5xx answers and gives up with a transient error when they persist', async () => {
    const c = client({ transientRetries: 2 });
    sim.admin.injectFault({ kind: 'server_error', count: 2, status: 503 });
    const lead = await c.createRecord('lead', { lastname: 'Retried' });
    expect(sim.admin.get('lead', lead.id)).not.toBeNull();
    sim.admin.injectFault({ kind: 'server_error', count: 5, status: 502 });
    const error = await rejection(c.findByEmail('lead', 'a@b.com', []));
    expect(error).toBeInstanceOf(DataverseTransientError);
    sim.admin.clearFaults();
    // writes travel in $batch requests
    expect(c.stats().endpoints['POST $batch']).toMatchObject({ errors: 2, retries: 2 });
  });

  it('treats a dropped connection as transient and retries it', async () => {
    const c = client();
    await c.whoAmI();
    sim.admin.injectFault({ kind: 'network', count: 1 });
    const lead = await c.createRecord('lead', { lastname: 'Network' });
    expect(lead.id).toBeTruthy();
  });

  it('times out a slow call as transient', async () => {
    const c = client({ timeoutMs: 100, transientRetries: 0 });
    await c.whoAmI();
    sim.admin.injectFault({ kind: 'latency', count: 1, ms: 400 });
    expect(await rejection(c.findByEmail('lead', 'a@b.com', []))).toBeInstanceOf(DataverseTransientError);
  });

  it('pages change tracking, returns tombstones, and raises delta_expired for an expired token', async () => {
    const ids = Array.from({ length: 5 }, (_, i) => sim.admin.create('contact', { lastname: `D${i}` }).contactid as string);
    const c = client({ maxPageSize: 2 });
    let deltaLink: string | undefined;
    let initial = 0;
    let pages = 0;
    for await (const page of c.trackChanges('contact', ['lastname'])) {
      pages += 1;
      initial += page.upserts.length;
      expect(page.deletedIds).toEqual([]);
      deltaLink = page.deltaLink;
    }
    expect(pages).toBe(3);
    expect(initial).toBe(5);
    expect(deltaLink).toContain('$deltatoken=');

    sim.admin.update('contact', ids[0]!, { jobtitle: 'Updated' });
    sim.admin.delete('contact', ids[1]!);
    const added = sim.admin.create('contact', { lastname: 'New' }).contactid as string;
    const temp = sim.admin.create('contact', { lastname: 'Gone' }).contactid as string;
    sim.admin.delete('contact', temp);

    const upserts: string[] = [];
    const deleted: string[] = [];
    let next: string | undefined;
    for await (const page of c.trackChanges('contact', ['lastname'], deltaLink)) {
      upserts.push(...page.upserts.map((r) => r.id));
      deleted.push(...page.deletedIds);
      next = page.deltaLink;
    }
    expect(upserts.sort()).toEqual([ids[0]!, added].sort());
    expect(deleted.sort()).toEqual([ids[1]!, temp].sort());
    expect(next).toBeDefined();

    sim.admin.expireDeltaTokens('contact');
    const error = await rejection(c.trackChanges('contact', ['lastname'], next).next());
    expect(error).toBeInstanceOf(DataverseDeltaExpiredError);
    expect(error).toMatchObject({ kind: 'delta_expired', code: '0x80044352' });
  });

  it('refuses to follow a delta link to another host', async () => {
    const c = client();
    const error = await rejection(c.trackChanges('lead', [], 'https://evil.example.com/api/data/v9.2/leads?$deltatoken=1').next());
    expect(error).toMatchObject({ kind: 'permanent' });
  });
});
