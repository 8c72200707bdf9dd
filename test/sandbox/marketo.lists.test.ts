import { afterEach, describe, expect, it } from 'vitest';
import { startMarketoSimulator, type StartedMarketoSimulator } from '../../src/sandbox/marketo/index.ts';

// Static lists in the Marketo simulator, as reference marketo §14 documents Get Leads by List Id.

// untyped wire JSON, asserted field by field
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;

const open: StartedMarketoSimulator[] = [];
afterEach(async () => {
  for (const sim of open.splice(0)) await sim.close();
});

async function start() {
  const sim = await startMarketoSimulator();
  open.push(sim);
  const answer = await fetch(`${sim.url}/identity/oauth/token?grant_type=client_credentials&client_id=${sim.clientId}&client_secret=${sim.clientSecret}`);
  const { access_token: token } = (await answer.json()) as { access_token: string };
  const get = async (path: string) => (await (await fetch(`${sim.url}${path}`, { headers: { Authorization: `Bearer ${token}` } })).json()) as Json;
  return { sim, get };
}

describe('Marketo simulator: Get Leads by List Id', () => {
  it('pages a list 300 members at most, in id order, with the token of the previous answer and none after the last page', async () => {
    const { sim, get } = await start();
    const ids = sim.admin.seedLeads(Array.from({ length: 650 }, (_, i) => ({ email: `m${i}@list.example`, lastName: `M${i}` })));
    const listId = sim.admin.createList('Trade show', ids);
    const seen: number[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await get(`/rest/v1/lists/${listId}/leads.json?fields=email,lastName${token ? `&nextPageToken=${encodeURIComponent(token)}` : ''}`);
      expect(page.success).toBe(true);
      expect(page.result.length).toBeLessThanOrEqual(300);
      expect(page).not.toHaveProperty('moreResult');
      seen.push(...page.result.map((l: Json) => l.id as number));
      expect(Object.keys(page.result[0]).sort()).toEqual(['email', 'id', 'lastName']);
      token = page.nextPageToken as string | undefined;
      pages++;
    } while (token);
    expect(pages).toBe(3);
    expect(seen).toEqual([...ids].sort((a, b) => a - b));
  });

  it('answers the default fields, drops a member deleted from Marketo, and refuses an unknown list or an oversized page', async () => {
    const { sim, get } = await start();
    const [a, b] = sim.admin.seedLeads([{ email: 'a@list.example', firstName: 'A', lastName: 'One' }, { email: 'b@list.example', lastName: 'Two' }]);
    const listId = sim.admin.createList('Small', [a!, b!]);
    sim.admin.deleteLead(b!);
    const page = await get(`/rest/v1/lists/${listId}/leads.json`);
    expect(page.result).toHaveLength(1);
    expect(Object.keys(page.result[0]).sort()).toEqual(['createdAt', 'email', 'firstName', 'id', 'lastName', 'updatedAt']);
    expect((await get('/rest/v1/lists/999999/leads.json')).errors[0].code).toBe('1013');
    expect((await get(`/rest/v1/lists/${listId}/leads.json?batchSize=301`)).errors[0].code).toBe('1003');
  });
});
