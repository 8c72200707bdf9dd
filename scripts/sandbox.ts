// npm run sandbox [-- options]: the deployment's one shared sandbox (src/sandbox/shared.ts): both
// simulators on fixed ports, seeded once the service answers /readyz, and the descriptor the
// replicas read through SANDBOX_URL. Prints the sandbox block (token, secret, what to try) once.
// Options (defaults fit docker-compose.yml): --host 0.0.0.0 --port 4000 --marketo-port 4001
// --dynamics-port 4002 --internal http://sandbox --app http://app:3000
// --public http://localhost (the simulators as the host reaches them) --public-app http://localhost:3000
import { parseArgs } from 'node:util';
import { consoleBanner } from '../src/console/banner.ts';
import { createLogger } from '../src/logger.ts';
import { startSharedSandbox } from '../src/sandbox/shared.ts';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '0.0.0.0' },
    port: { type: 'string', default: '4000' },
    'marketo-port': { type: 'string', default: '4001' },
    'dynamics-port': { type: 'string', default: '4002' },
    internal: { type: 'string', default: 'http://sandbox' },
    app: { type: 'string', default: 'http://app:3000' },
    public: { type: 'string', default: 'http://localhost' },
    'public-app': { type: 'string', default: 'http://localhost:3000' },
  },
});
const port = (name: 'port' | 'marketo-port' | 'dynamics-port') => {
  const value = Number(values[name]);
  if (!Number.isInteger(value) || value < 0 || value > 65_535) {
    console.error(`--${name} must be a port number (got ${JSON.stringify(values[name])})`);
    process.exit(64); // EX_USAGE
  }
  return value;
};
const logger = createLogger({ level: 'info' });
const shared = await startSharedSandbox({
  host: values.host,
  port: port('port'),
  marketoPort: port('marketo-port'),
  dynamicsPort: port('dynamics-port'),
  internalBase: values.internal,
  appUrl: values.app,
});
logger.warn({ descriptor: `${values.internal}:${shared.port}/sandbox.json` }, 'SANDBOX: simulated Marketo and Dynamics for every replica (SANDBOX_URL)');
const stopped = new AbortController();
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    stopped.abort();
    void shared.close().then(() => process.exit(0), () => process.exit(1));
  });
}
const seed = await shared.seedWhenServiceReady({ logger, signal: stopped.signal });
const publicBase = values.public.replace(/\/+$/, '');
process.stdout.write(
  consoleBanner({
    url: values['public-app'].replace(/\/+$/, ''),
    marketoUrl: `${publicBase}:${port('marketo-port')}`,
    dataverseUrl: `${publicBase}:${port('dynamics-port')}`,
    marketoWebhookSecret: shared.descriptor.webhookSecrets.marketo,
    graphqlToken: shared.descriptor.apiToken,
    // delivered and queued by now; the replicas link the records as they work them
    seed: { ...seed, settled: false },
  }),
);
