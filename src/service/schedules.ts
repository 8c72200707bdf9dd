import type { Config } from '../config.ts';
import { createEmbeddedUpkeep } from '../db/embedded-upkeep.ts';
import type { Logger } from '../logger.ts';
import { createRetentionService, type RetentionService } from '../retention/index.ts';
import { seedSandbox, type SandboxSeed } from '../sandbox/seed.ts';
import type { Closers } from './closers.ts';
import type { Engine } from './engine.ts';
import type { Store } from './store.ts';
import type { Vendors } from './vendors.ts';

/** The background work, started once the service listens: the inbox worker, the sweep, retention, upkeep. */
export function startSchedules(
  config: Config,
  { db }: Store,
  { worker, syncPerson, sweeper, metrics, batchSyncs, leases }: Engine,
  deps: { logger: Logger; closers: Closers; owner: string },
): RetentionService {
  const { logger, closers } = deps;
  const retention = createRetentionService({
    db,
    policy: config.retention,
    cron: config.retention.cron,
    owner: deps.owner,
    logger: logger.child({ component: 'retention' }),
    onPruned: (result) => metrics.recordPrune(result),
    leases,
  });
  worker.start();
  closers.add('inbox worker', () => worker.stop());
  closers.add('sync person calls', () => syncPerson.idle());
  batchSyncs.begin();
  // closed before Sync Person's calls are waited for (closers run last first): no new page starts
  closers.add('batch sync person', () => batchSyncs.stop());
  sweeper.start();
  closers.add('sweep scheduler', () => sweeper.stop());
  retention.start();
  closers.add('retention', () => retention.stop());
  // PGlite has no autovacuum (single-user PostgreSQL); on PostgreSQL this does nothing
  const upkeep = createEmbeddedUpkeep({ db, logger: logger.child({ component: 'embedded-upkeep' }) });
  upkeep.start();
  closers.add('embedded database upkeep', () => upkeep.stop());
  return retention;
}

/**
 * The built-in simulators, wired as an admin would wire the real systems: Dataverse's webhook steps
 * point at this service; then the demo data, when asked for and the database is the sandbox's.
 */
export async function wireSandbox(
  url: string,
  { db }: Store,
  { sandbox, sandboxDatabase, webhookSecrets }: Vendors,
  logger: Logger,
): Promise<SandboxSeed | undefined> {
  if (sandbox) {
    // As an admin would with the Plugin Registration Tool: a webhook step on lead and contact.
    sandbox.dataverse.admin.registerWebhook({
      url: `${url}/webhooks/dynamics`,
      authType: 'WebhookKey',
      authValue: webhookSecrets.dynamics,
      entities: ['lead', 'contact'],
      messages: ['Create', 'Update', 'Delete', 'Merge'],
      postImage: true,
    });
    // ...and an Update step on account and systemuser: company and owner fields follow their edits
    sandbox.dataverse.admin.registerWebhook({
      url: `${url}/webhooks/dynamics`,
      authType: 'WebhookKey',
      authValue: webhookSecrets.dynamics,
      entities: ['account', 'systemuser'],
      messages: ['Update'],
      postImage: false,
    });
    logger.warn({ marketoWebhookSecret: webhookSecrets.marketo }, 'sandbox webhook secret for X-Webhook-Secret (generated for this run)');
  }
  if (sandboxDatabase === 'foreign') logger.warn('sandbox: the database holds data this sandbox did not create; not seeding it (use an empty DATA_DIR)');
  return sandbox && sandboxDatabase === 'ready' ? seedSandbox({ sandbox, db, logger }) : undefined;
}
