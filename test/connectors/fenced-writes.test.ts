import { afterEach, describe, expect, it } from 'vitest';
import { createMarketoClient, MarketoApiError, type MarketoClient } from '../../src/connectors/marketo/index.ts';
import { createRideAlong } from '../../src/connectors/ride-along.ts';
import { startMarketoSimulator, type StartedMarketoSimulator } from '../../src/sandbox/marketo/index.ts';
import { FencedOutError } from '../../src/sync/fence.ts';
import type { WriteFence } from '../../src/sync/ports.ts';

// Every vendor write is fenced: the connectors ask the work's fence right before each call that
// carries its records, and drop the records whose work lost its lease. And Marketo writes whose
// first try may have landed are never replayed blindly (Marketo has no conditional write).

/** A fence the test controls: holds until `lose()`; counts its checks. */
function fence() {
  const controller = new AbortController();
  let holds = true;
  const f = {
    checks: 0,
    lose() {
      holds = false;
    },
    abort() {
      controller.abort(new FencedOutError());
    },
    signal: controller.signal,
    verify(): Promise<void> {
      f.checks++;
      return holds ? Promise.resolve() : Promise.reject(new FencedOutError());
    },
  };
  return f satisfies WriteFence;
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('fenced writes in a shared call', () => {
  function rides() {
    const admissions: (() => void)[] = [];
    const sent: string[][] = [];
    const along = createRideAlong<string, string[]>({
      maxItems: 300,
      async send(_key, bind, admit) {
        await new Promise<void>((resolve) => admissions.push(resolve));
        bind();
        const items = await admit();
        sent.push(items);
        return items.map((s) => s.toUpperCase());
      },
    });
    return { along, sent, admitNext: () => admissions.shift()?.() };
  }

  it('a write whose fence fails at admission leaves the call; the others are sent and line up with their answers', async () => {
    const { along, sent, admitNext } = rides();
    const [kept, lost] = [fence(), fence()];
    const a = along.ride('k', ['a'], undefined, kept);
    const b = along.ride('k', ['b'], undefined, lost);
    const c = along.ride('k', ['c']);
    await tick();
    lost.lose();
    admitNext();
    await expect(b).rejects.toBeInstanceOf(FencedOutError);
    expect(await a).toEqual({ result: ['A', 'C'], offset: 0 });
    expect(await c).toEqual({ result: ['A', 'C'], offset: 1 });
    expect(sent).toEqual([['a', 'c']]);
    expect([kept.checks, lost.checks]).toEqual([1, 1]);
  });

  it('a write whose work is aborted while it waits for a call leaves the queue at once, unsent', async () => {
    const { along, sent, admitNext } = rides();
    const aborted = fence();
    const b = along.ride('k', ['b'], undefined, aborted);
    const c = along.ride('k', ['c']);
    aborted.abort();
    await expect(b).rejects.toBeInstanceOf(FencedOutError);
    await tick();
    admitNext();
    await c;
    expect(sent).toEqual([['c']]);
    expect(aborted.checks).toBe(0);
  });

  it('work already aborted is refused before it joins', async () => {
    const { along } = rides();
    const aborted = fence();
    aborted.abort();
    await expect(along.ride('k', ['x'], undefined, aborted)).rejects.toBeInstanceOf(FencedOutError);
  });
});

describe('Marketo writes: fenced, and never replayed after an outcome that may have landed', () => {
  const open: { sim: StartedMarketoSimulator; client: MarketoClient }[] = [];
  afterEach(async () => {
    for (const { sim, client } of open.splice(0)) {
      await client.close();
      await sim.close();
    }
  });
  async function setup(timeoutMs?: number) {
    const sim = await startMarketoSimulator({});
    const client = createMarketoClient({
      baseUrl: sim.url,
      clientId: sim.clientId,
      clientSecret: sim.clientSecret,
      retry: { baseDelayMs: 5, rateLimitDelayMs: 20, maxDelayMs: 200, rateLimitRetries: 30 },
      ...(timeoutMs ? { timeoutMs } : {}),
    });
    open.push({ sim, client });
    const lead = sim.admin.createLead({ email: 'fenced@example.com', title: 'before' });
    return { sim, client, id: lead.id };
  }
  const update = (client: MarketoClient, id: number, f?: WriteFence) => client.syncLeads({ action: 'updateOnly', lookupField: 'id', input: [{ id, title: 'after' }], fence: f });
  const calls = (sim: StartedMarketoSimulator) => sim.admin.counters().byEndpoint['leads.sync']?.calls ?? 0;

  it('a write whose work lost its lease makes no call at all', async () => {
    const { sim, client, id } = await setup();
    const lost = fence();
    lost.lose();
    await expect(update(client, id, lost)).rejects.toBeInstanceOf(FencedOutError);
    expect(calls(sim)).toBe(0);
    expect(sim.admin.getLead(id)?.title).toBe('before');
  });

  it('a fence is asked again before a resend after a rate limit (the pause may have cost the lease)', async () => {
    const { sim, client, id } = await setup();
    const f = fence();
    sim.admin.injectFault({ type: 'code', code: '606', times: 1 });
    await update(client, id, f);
    expect(f.checks).toBe(2);
    expect(sim.admin.getLead(id)?.title).toBe('after');
  });

  it.each([
    ['a 5xx', { type: 'http' as const, status: 502 }],
    ['a 604 request time-out', { type: 'code' as const, code: '604' }],
    ['a 611 system error', { type: 'code' as const, code: '611' }],
  ])('after %s the write is not sent again: the caller re-reads and plans again', async (_name, fault) => {
    const { sim, client, id } = await setup();
    sim.admin.injectFault({ ...fault, times: 1, endpoint: 'leads.sync' });
    const error = await update(client, id).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MarketoApiError);
    expect((error as MarketoApiError).kind).toBe('transient');
    expect(calls(sim)).toBe(1);
  });

  it('after a timeout the write is not sent again', async () => {
    const { sim, client, id } = await setup(150);
    sim.admin.injectFault({ type: 'hang', times: 1, endpoint: 'leads.sync' });
    const error = await update(client, id).catch((e: unknown) => e);
    expect((error as MarketoApiError).kind).toBe('transient');
    expect(calls(sim)).toBe(1);
  });

  it('reads are still retried after a transient error', async () => {
    const { sim, client, id } = await setup();
    sim.admin.injectFault({ type: 'code', code: '604', times: 1, endpoint: 'leads.query' });
    expect((await client.getLeadsByIds([id])).map((l) => l.id)).toEqual([id]);
  });
});
