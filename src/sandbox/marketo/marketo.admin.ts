// The admin side of the Marketo simulator: what a marketer, a test or the sandbox console does to
// it, in process (createAdmin) or over JSON (createAdminRouter, mounted at /__admin by default).
import express, { type Request, type Response } from 'express';
import { coerceFieldValue, type MarketoChangeOrigin, type MarketoStore } from './marketo.store.ts';
import { rollDay, type MarketoSim } from './marketo.state.ts';
import type { MarketoWebhookCallResult, MarketoWebhookDefinition, MarketoWebhookTokens } from './marketo.webhook.ts';
import type {
  MarketoApiCall,
  MarketoEndpoint,
  MarketoFault,
  MarketoFeedOptions,
  MarketoRenderedActivity,
  MarketoSimulatorCounters,
  MarketoSimulatorLead,
  MarketoSimulatorLimits,
} from './marketo.types.ts';
import { renderActivity } from './api/activities.ts';
import { allFieldsOf } from './api/leads.ts';
import { staticListsOf } from './api/lists.ts';
import { isObject } from './api/params.ts';

export type MarketoSimulatorAdmin = ReturnType<typeof createAdmin>;

function uiWrite(store: MarketoStore, values: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, raw] of Object.entries(values)) {
    const field = store.field(key);
    if (!field) throw new Error(`Field '${key}' not found`);
    if (field.readOnly) throw new Error(`Field '${key}' is read-only`);
    const coerced = coerceFieldValue(field, raw);
    if ('reason' in coerced) throw new Error(coerced.reason.message);
    out[key] = coerced.value;
  }
  return out;
}

const uiOrigin: MarketoChangeOrigin = { kind: 'ui', user: 'marketer@marketo-simulator.invalid' };

export function createAdmin(sim: MarketoSim) {
  const { store, webhooks } = sim;
  const admin = {
    clientId: sim.clientId,
    clientSecret: sim.clientSecret,
    apiUser: sim.apiUser,
    store,
    ...staticListsOf(sim).admin,
    /** creates a person as a Marketo user would (no dedupe; logged as a UI change) */
    createLead(values: Record<string, unknown>): MarketoSimulatorLead {
      return allFieldsOf(store, store.create(uiWrite(store, values), uiOrigin));
    },
    /** edits a person in the UI; returns the REST names of the fields that changed */
    updateLead(id: number, values: Record<string, unknown>): string[] {
      if (!store.get(id)) throw new Error(`lead ${id} not found`);
      return store.update(id, uiWrite(store, values), uiOrigin);
    },
    deleteLead(id: number): boolean {
      return store.remove(id, uiOrigin);
    },
    /** a marketer merges persons in the UI (Marketo's merge rules, as the REST merge) */
    mergeLeads(winnerId: number, loserIds: readonly number[]): void {
      for (const id of [winnerId, ...loserIds]) if (!store.get(id)) throw new Error(`lead ${id} not found`);
      store.merge(winnerId, loserIds, uiOrigin, { loserDeleteActivities: sim.mergeLogsDeleteLead });
    },
    /** whether merged-away persons also show in the deletedleads feed (unconfirmed by Adobe: a switch) */
    setMergeLogsDeleteLead(on: boolean): void {
      sim.mergeLogsDeleteLead = on;
    },
    /** in-process only: hears of each update that changed a person's values (a bench's arrival clock) */
    onLeadUpdated(listener: (id: number) => void): void {
      store.onUpdate(listener);
    },
    getLead(id: number): MarketoSimulatorLead | undefined {
      const lead = store.get(id);
      return lead ? allFieldsOf(store, lead) : undefined;
    },
    listLeads(page: { offset?: number; limit?: number } = {}): MarketoSimulatorLead[] {
      const offset = page.offset ?? 0;
      const limit = page.limit ?? 100;
      const out: MarketoSimulatorLead[] = [];
      let i = 0;
      for (const lead of store.leads()) {
        if (i++ < offset) continue;
        if (out.length >= limit) break;
        out.push(allFieldsOf(store, lead));
      }
      return out;
    },
    leadCount: () => store.size(),
    /** bulk load for benchmarks; without activities the change feeds start empty */
    seedLeads(records: Record<string, unknown>[], seedOptions: { recordActivities?: boolean } = {}): number[] {
      return records.map((r) => store.create(uiWrite(store, r), uiOrigin, { recordActivities: seedOptions.recordActivities ?? false }).id);
    },
    activities(filter: { leadId?: number; typeIds?: number[] } = {}): MarketoRenderedActivity[] {
      return store.activitiesOf(filter).map((a) => renderActivity(a, 'generic'));
    },
    injectFault(fault: MarketoFault): void {
      sim.faults.push({ ...fault });
    },
    clearFaults(): void {
      sim.faults = [];
    },
    /** in-process only: hears each REST call synchronously right before and after it runs (a test's hook) */
    onApiCall(listener: (call: MarketoApiCall) => void): void {
      sim.callListeners.push(listener);
    },
    /** in-process only: hears each injected fault at the moment it takes effect */
    onFault(listener: (fault: MarketoFault, endpoint: MarketoEndpoint) => void): void {
      sim.faultListeners.push(listener);
    },
    setLatency(ms: number): void {
      sim.latencyMs = ms;
    },
    setLimits(next: Partial<MarketoSimulatorLimits>): void {
      Object.assign(sim.limits, next);
    },
    setFeedOptions(next: Partial<MarketoFeedOptions>): void {
      Object.assign(sim.feedOptions, next);
    },
    setOmitEmptyResult(value: boolean): void {
      sim.omitEmptyResult = value;
    },
    /** invalidates every token: the next REST call gets 601, identity mints a new one */
    revokeTokens(): void {
      sim.tokens.clear();
      sim.currentToken = undefined;
    },
    /** makes every token expire now: the next REST call gets 602 */
    expireTokens(): void {
      const at = sim.now();
      for (const token of sim.tokens.values()) token.expiresAt = Math.min(token.expiresAt, at);
    },
    counters(): MarketoSimulatorCounters & { dailyUsed: number } {
      rollDay(sim);
      return structuredClone({ ...sim.counters, dailyUsed: sim.dailyUsed });
    },
    resetCounters(): void {
      sim.counters = { total: 0, counted: 0, identity: 0, inFlight: sim.counters.inFlight, byEndpoint: {} };
      sim.windowTimes = [];
      sim.windowHead = 0;
      sim.dailyUsed = 0;
    },
    /** fires a Call Webhook flow step for each lead, as a trigger campaign would */
    async fireWebhook(definition: MarketoWebhookDefinition, leadIds: number[], webhookTokens: MarketoWebhookTokens = {}): Promise<MarketoWebhookCallResult[]> {
      return Promise.all(leadIds.map((id) => webhooks.call(definition, id, webhookTokens)));
    },
    /** empties leads, activities, faults and counters; tokens stay valid */
    reset(): void {
      store.reset();
      staticListsOf(sim).admin.resetLists();
      sim.faults = [];
      sim.latencyMs = sim.options.latencyMs ?? 0;
      admin.resetCounters();
    },
  };
  return admin;
}

function syntheticLead(i: number): Record<string, unknown> {
  return { email: `person${i}@example.com`, firstName: `First${i}`, lastName: `Last${i}`, company: `Company ${i % 997}` };
}

export function createAdminRouter(admin: MarketoSimulatorAdmin): express.Router {
  const router = express.Router();
  router.use(express.json({ limit: '50mb' }));
  const wrap =
    (fn: (req: Request, res: Response) => unknown) =>
    (req: Request, res: Response): void => {
      Promise.resolve()
        .then(() => fn(req, res))
        .then((value) => {
          if (!res.headersSent) res.json(value ?? { ok: true });
        })
        .catch((error: unknown) => {
          if (!res.headersSent) res.status(400).json({ error: error instanceof Error ? error.message : String(error) });
        });
    };
  const body = (req: Request): Record<string, unknown> => (isObject(req.body) ? req.body : {});
  const idParam = (req: Request): number => Number(req.params['id']);

  router.get('/leads', wrap((req) => {
    const query = new URL(req.originalUrl, 'http://simulator.invalid').searchParams;
    return { total: admin.leadCount(), leads: admin.listLeads({ offset: Number(query.get('offset') ?? 0), limit: Number(query.get('limit') ?? 100) }) };
  }));
  router.get('/leads/:id', wrap((req, res) => {
    const lead = admin.getLead(idParam(req));
    if (!lead) res.status(404).json({ error: 'lead not found' });
    return lead;
  }));
  router.post('/leads', wrap((req) => admin.createLead(body(req))));
  router.patch('/leads/:id', wrap((req) => ({ changed: admin.updateLead(idParam(req), body(req)) })));
  router.delete('/leads/:id', wrap((req) => ({ deleted: admin.deleteLead(idParam(req)) })));
  router.post('/leads/:id/merge', wrap((req) => {
    const losers = (body(req) as { loserIds?: unknown }).loserIds;
    if (!Array.isArray(losers) || losers.some((id) => typeof id !== 'number')) throw new Error('loserIds: an array of person ids');
    admin.mergeLeads(idParam(req), losers as number[]);
    return { merged: true };
  }));
  router.post('/seed', wrap((req) => {
    const b = body(req);
    const recordActivities = b['recordActivities'] === true;
    const records = Array.isArray(b['records'])
      ? (b['records'] as Record<string, unknown>[])
      : Array.from({ length: Number(b['count'] ?? 0) }, (_, i) => syntheticLead(admin.leadCount() + i + 1));
    return { ids: admin.seedLeads(records, { recordActivities }).length };
  }));
  router.get('/activities', wrap((req) => {
    const query = new URL(req.originalUrl, 'http://simulator.invalid').searchParams;
    const leadId = query.get('leadId');
    const types = query.get('types');
    return admin.activities({
      ...(leadId ? { leadId: Number(leadId) } : {}),
      ...(types ? { typeIds: types.split(',').map(Number) } : {}),
    });
  }));
  router.post('/faults', wrap((req) => admin.injectFault(body(req) as MarketoFault)));
  router.delete('/faults', wrap(() => admin.clearFaults()));
  router.put('/limits', wrap((req) => admin.setLimits(body(req) as Partial<MarketoSimulatorLimits>)));
  router.put('/latency', wrap((req) => admin.setLatency(Number(body(req)['ms'] ?? 0))));
  router.put('/feed', wrap((req) => admin.setFeedOptions(body(req) as Partial<MarketoFeedOptions>)));
  router.post('/tokens/revoke', wrap(() => admin.revokeTokens()));
  router.post('/tokens/expire', wrap(() => admin.expireTokens()));
  router.get('/counters', wrap(() => admin.counters()));
  router.post('/reset', wrap(() => admin.reset()));
  router.post('/webhooks/fire', wrap((req) => {
    const b = body(req);
    return admin.fireWebhook(
      b['definition'] as MarketoWebhookDefinition,
      Array.isArray(b['leadIds']) ? b['leadIds'].map(Number) : [],
      isObject(b['tokens']) ? (b['tokens'] as MarketoWebhookTokens) : {},
    );
  }));
  return router;
}
