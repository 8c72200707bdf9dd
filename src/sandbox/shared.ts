import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { newSecret } from '../auth/tokens.ts';
import type { Logger } from '../logger.ts';
import { startDataverseSimulator } from './dynamics/index.ts';
import { startMarketoSimulator } from './marketo/index.ts';
import type { Sandbox } from './sandbox.ts';
import { fillSandbox, type SandboxSeed } from './seed.ts';

// One sandbox per deployment (docker compose: the `sandbox` service). In-process sandbox mode gives
// each replica simulators, secrets and a token of its own, which replicas cannot share; this
// process runs the two simulators once, on fixed ports, and hands every replica (SANDBOX_URL) the
// same descriptor: where the simulators are, their credentials, the webhook secrets and the API
// token. Only simulated data is behind any of it. Publish the simulators' ports to the host, not
// the descriptor's.

export const sandboxDescriptorSchema = z.object({
  /** new at each start of the sandbox: replicas clear the sandbox database once per instance */
  instance: z.string().min(1),
  marketo: z.object({ url: z.string(), clientId: z.string(), clientSecret: z.string() }),
  dynamics: z.object({ url: z.string(), tokenUrl: z.string(), tenantId: z.string(), clientId: z.string(), clientSecret: z.string() }),
  webhookSecrets: z.object({ marketo: z.string(), dynamics: z.string() }),
  /** an operate token: replicas take it as they would GRAPHQL_API_TOKEN */
  apiToken: z.string(),
});
export type SandboxDescriptor = z.infer<typeof sandboxDescriptorSchema>;

export const DESCRIPTOR_PATH = '/sandbox.json';

export interface SharedSandboxOptions {
  /** listen address of all three servers */
  host: string;
  /** the descriptor's port */
  port: number;
  marketoPort: number;
  dynamicsPort: number;
  /** how the replicas reach this process (http://sandbox in compose) */
  internalBase: string;
  /** the service as this process reaches it: its Dataverse webhook step and readiness */
  appUrl: string;
}

export interface SharedSandbox {
  descriptor: SandboxDescriptor;
  sandbox: Pick<Sandbox, 'marketo' | 'dataverse'>;
  /** the descriptor server's port (0 in options: a free one) */
  port: number;
  /** waits until the service answers /readyz, then fills both simulators; resolves with what it put there */
  seedWhenServiceReady(options: { logger: Logger; pollMs?: number; signal?: AbortSignal }): Promise<Omit<SandboxSeed, 'settled'>>;
  close(): Promise<void>;
}

export async function startSharedSandbox(options: SharedSandboxOptions): Promise<SharedSandbox> {
  const base = options.internalBase.replace(/\/+$/, '');
  const [marketo, dataverse] = await Promise.all([
    startMarketoSimulator({ host: options.host, port: options.marketoPort }),
    startDataverseSimulator({ host: options.host, port: options.dynamicsPort, publicUrl: `${base}:${options.dynamicsPort}` }),
  ]);
  const descriptor: SandboxDescriptor = {
    instance: randomUUID(),
    marketo: { url: `${base}:${options.marketoPort}`, clientId: marketo.clientId, clientSecret: marketo.clientSecret },
    dynamics: {
      url: dataverse.url,
      tokenUrl: dataverse.tokenUrl,
      tenantId: dataverse.tenantId,
      clientId: dataverse.clientId,
      clientSecret: dataverse.clientSecret,
    },
    webhookSecrets: { marketo: randomBytes(24).toString('base64url'), dynamics: randomBytes(24).toString('base64url') },
    apiToken: newSecret(),
  };
  const appUrl = options.appUrl.replace(/\/+$/, '');
  // As an admin would with the Plugin Registration Tool: one webhook step, to the service (any replica).
  dataverse.admin.registerWebhook({
    url: `${appUrl}/webhooks/dynamics`,
    authType: 'WebhookKey',
    authValue: descriptor.webhookSecrets.dynamics,
    entities: ['lead', 'contact'],
    messages: ['Create', 'Update', 'Delete', 'Merge'],
    postImage: true,
  });
  const body = JSON.stringify(descriptor);
  const server: Server = createServer((req, res) => {
    const found = req.method === 'GET' && req.url === DESCRIPTOR_PATH;
    res.writeHead(found ? 200 : 404, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(found ? body : '{"error":"not found"}');
  });
  server.listen(options.port, options.host);
  await once(server, 'listening');
  return {
    descriptor,
    sandbox: { marketo, dataverse },
    port: (server.address() as AddressInfo).port,
    async seedWhenServiceReady({ logger, pollMs = 1_000, signal }) {
      let told = false;
      for (;;) {
        signal?.throwIfAborted();
        const ready = await fetch(`${appUrl}/readyz`, signal ? { signal } : {}).then((r) => r.ok, () => false);
        if (ready) break;
        if (!told) logger.info({ appUrl }, 'sandbox: waiting for the service to answer /readyz before seeding');
        told = true;
        await new Promise((resolve) => setTimeout(resolve, pollMs));
      }
      const seed = fillSandbox({ marketo, dataverse });
      await dataverse.admin.flushWebhooks();
      return seed;
    },
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await Promise.all([marketo.close(), dataverse.close()]);
    },
  };
}

/**
 * A replica's view of the shared sandbox: its descriptor, asked for until it answers (the sandbox
 * may start after the replica) or `waitMs` passes.
 */
export async function fetchSandboxDescriptor(sandboxUrl: string, options: { waitMs?: number; pollMs?: number; logger?: Logger } = {}): Promise<SandboxDescriptor> {
  const url = `${sandboxUrl.replace(/\/+$/, '')}${DESCRIPTOR_PATH}`;
  const deadline = Date.now() + (options.waitMs ?? 60_000);
  let last = '';
  for (;;) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
      if (response.ok) return sandboxDescriptorSchema.parse(await response.json());
      last = `HTTP ${response.status}`;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() >= deadline) throw new Error(`SANDBOX_URL: no sandbox descriptor at ${url} (${last}); is the sandbox service running?`);
    options.logger?.info({ url, last }, 'waiting for the shared sandbox');
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 1_000));
  }
}
