import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBudgetCoordinator, type BudgetCoordinator } from '../../src/connectors/budget/coordinator.ts';
import { marketoBudgetSpec, perCallPools } from '../../src/connectors/budget/vendors.ts';
import { createMarketoClient, type MarketoClient } from '../../src/connectors/marketo/marketo.client.ts';
import { createMemberStore } from '../../src/db/budget-members.ts';
import type { Database } from '../../src/db/database.ts';
import { migrate } from '../../src/db/migrate.ts';
import { projectPaths } from '../../src/paths.ts';
import { startMarketoSimulator, type StartedMarketoSimulator } from '../../src/sandbox/marketo/marketo.simulator.ts';
import { freshDatabase, testEngines, type TestDatabase } from '../support/database.ts';
import { mostInAnyWindow } from '../support/budget-sim.ts';

// Members of one Marketo budget on a real database, each with its own connection and client,
// against a simulator that enforces exactly the deployment's share as the instance's limits: any
// call over the share is a 606 or 615 there. Counted, not timed: the calls that reached Marketo in
// any window of its clock, and the refusals (none).

const WINDOW_MS = 2_000;
const SHARE = { callsPerWindow: 10, windowMs: WINDOW_MS, maxConcurrent: 3 };
const CALLS = 50;

for (const engine of testEngines()) {
  const replicas = engine === 'postgres' ? 3 : 1;
  describe(`${replicas} member(s) of one Marketo budget on ${engine}`, () => {
    let database: TestDatabase;
    let sim: StartedMarketoSimulator;
    const dbs: Database[] = [];
    const members: { coordinator: BudgetCoordinator; client: MarketoClient }[] = [];
    const arrivals: number[] = [];

    beforeAll(async () => {
      database = await freshDatabase(engine);
      const first = await database.open();
      await migrate(first, projectPaths());
      // the instance allows exactly the share: 10 calls in any 2 s, 3 in flight
      sim = await startMarketoSimulator({ limits: { callsPerWindow: SHARE.callsPerWindow, windowMs: WINDOW_MS, maxConcurrent: SHARE.maxConcurrent }, latencyMs: 20 });
      for (let i = 0; i < replicas; i += 1) {
        const db = i === 0 ? first : await database.open();
        dbs.push(db);
        const coordinator = createBudgetCoordinator({ store: createMemberStore(db), member: `replica-${i}`, leaseMs: 3_000, intervalMs: 1_000, growRetryMs: 200 });
        const budget = coordinator.join(marketoBudgetSpec('marketo:test', SHARE), perCallPools.marketo);
        await coordinator.start();
        const client = createMarketoClient({
          baseUrl: sim.url,
          clientId: sim.clientId,
          clientSecret: sim.clientSecret,
          budget,
          fill: false,
          // a 606 or 615 would be retried: the simulator's counters still show it
          retry: { rateLimitDelayMs: 20, maxDelayMs: 200, rateLimitRetries: 30 },
          fetch: (input, init) => {
            if (String(input instanceof Request ? input.url : input).includes('/rest/')) arrivals.push(Date.now());
            return fetch(input, init);
          },
        });
        members.push({ coordinator, client });
      }
    }, 60_000);

    afterAll(async () => {
      for (const m of members) {
        await m.coordinator.stop();
        await m.client.close();
      }
      await sim?.close();
      await database?.drop();
    });

    it('spend no more than the share in any window together and are never refused, every member calling as fast as it may', async () => {
      let left = CALLS;
      const worker = async (client: MarketoClient, n: number) => {
        while (left > 0) {
          left -= 1;
          await client.getLeadsByFilter('email', [`person${n}-${left}@example.com`]);
        }
      };
      await Promise.all(members.flatMap((m, i) => [0, 1, 2, 3].map((k) => worker(m.client, i * 10 + k))));
      const counters = sim.admin.counters();
      expect(counters.byEndpoint['leads.query']?.ok).toBe(CALLS);
      expect(counters.byEndpoint['leads.query']?.errors['606'] ?? 0).toBe(0);
      expect(counters.byEndpoint['leads.query']?.errors['615'] ?? 0).toBe(0);
      expect(mostInAnyWindow(arrivals, WINDOW_MS)).toBeLessThanOrEqual(SHARE.callsPerWindow);
      if (replicas > 1) {
        // every member got a slice: the budget is divided, not held by the first to come
        expect(members.every((m) => m.client.stats().calls > 0)).toBe(true);
      }
    }, 120_000);

    it.runIf(replicas > 1)('hold the limits when a member dies holding a slice and another takes its place', async () => {
      const before = sim.admin.counters().byEndpoint['leads.query']?.ok ?? 0;
      const dead = members.shift()!;
      // a kill: no more beats, no more calls; its row keeps its slice until its lease and the window have passed
      await dead.coordinator.stop({ leave: false });
      const coordinator = createBudgetCoordinator({ store: createMemberStore(dbs[0]!), member: 'replica-new', leaseMs: 3_000, intervalMs: 1_000, growRetryMs: 200 });
      const budget = coordinator.join(marketoBudgetSpec('marketo:test', SHARE), perCallPools.marketo);
      await coordinator.start();
      const client = createMarketoClient({ baseUrl: sim.url, clientId: sim.clientId, clientSecret: sim.clientSecret, budget, fill: false, retry: { rateLimitDelayMs: 20, maxDelayMs: 200, rateLimitRetries: 30 } });
      members.push({ coordinator, client });
      let left = 30;
      const worker = async (c: MarketoClient, n: number) => {
        while (left > 0) {
          left -= 1;
          await c.getLeadsByFilter('email', [`again${n}-${left}@example.com`]);
        }
      };
      await Promise.all(members.flatMap((m, i) => [0, 1].map((k) => worker(m.client, i * 10 + k))));
      const counters = sim.admin.counters().byEndpoint['leads.query'];
      expect((counters?.ok ?? 0) - before).toBe(30);
      expect(counters?.errors['606'] ?? 0).toBe(0);
      expect(counters?.errors['615'] ?? 0).toBe(0);
      expect(client.stats().calls).toBeGreaterThan(0);
    }, 120_000);
  });
}
