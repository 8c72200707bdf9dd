import { openIntents } from '../sync/create-intents.ts';
import { recordDynamicsEcho } from '../sync/journal.ts';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import { createDynamicsWebhooks } from '../webhooks/dynamics.ts';
import { createMarketoWebhooks } from '../webhooks/marketo.ts';
import type { Engine } from './engine.ts';
import type { ServiceOptions } from './options.ts';
import type { Store } from './store.ts';
import type { Vendors } from './vendors.ts';

/**
 * The Dataverse intake ignores the sync user's own writes once it knows who that is; until then
 * (Dynamics unreachable at start-up) each webhook asks again, and the merge catches echoes.
 * Starts asking at once.
 */
function learnSyncUser(engine: Engine['engine'], logger: Logger): () => string | undefined {
  let syncUserId: string | undefined;
  let learning = false;
  const knownSyncUser = () => {
    if (syncUserId === undefined && !learning) {
      learning = true;
      engine.syncUserId().then(
        (id) => (syncUserId = id),
        (error: unknown) => logger.warn({ err: error }, 'could not learn the Dynamics sync user yet; echoes are caught by the merge'),
      ).finally(() => (learning = false));
    }
    return syncUserId;
  };
  knownSyncUser();
  return knownSyncUser;
}

/** The two webhook receivers: they check a delivery, drop echoes and erased persons, and queue the rest in the inbox. */
export function createWebhookIntake(
  config: Config,
  { db, suppressions }: Store,
  { webhookSecrets }: Vendors,
  { engine, intake, syncPerson, worker }: Engine,
  deps: { logger: Logger; options: ServiceOptions },
) {
  const { logger, options } = deps;
  const knownSyncUser = learnSyncUser(engine, logger);
  return {
    marketo: createMarketoWebhooks({
      inbox: intake,
      secret: webhookSecrets.marketo,
      syncPerson,
      logger,
      notify: () => worker.notify(),
      syncPersonBudgetMs: config.server.syncPersonBudgetMs,
      bodyLimitBytes: config.server.bodyLimitBytes,
      erased: (id) => suppressions.suppressed({ marketoIds: [id] }),
      ...(options.webhookClock ? { now: options.webhookClock } : {}),
    }),
    dynamics: createDynamicsWebhooks({
      inbox: intake,
      secret: webhookSecrets.dynamics,
      syncUserId: knownSyncUser,
      unfinishedCreate: async (id) => (await openIntents(db.prisma, { dynamicsIds: [id] })).length > 0,
      notify: () => worker.notify(),
      bodyLimitBytes: config.server.bodyLimitBytes,
      erased: (id) => suppressions.suppressed({ dynamicsIds: [id] }),
      echoed: (id, echo) => recordDynamicsEcho(db, id, echo),
    }),
  };
}

export type WebhookIntake = ReturnType<typeof createWebhookIntake>;
