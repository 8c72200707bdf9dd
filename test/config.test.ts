import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.ts';

const live = {
  MARKETO_BASE_URL: 'https://123-ABC-456.mktorest.com/',
  MARKETO_CLIENT_ID: 'id',
  MARKETO_CLIENT_SECRET: 'secret',
  DYNAMICS_URL: 'https://contoso.crm.dynamics.com',
  DYNAMICS_TENANT_ID: 'tenant',
  DYNAMICS_CLIENT_ID: 'app',
  DYNAMICS_CLIENT_SECRET: 'secret',
  MARKETO_WEBHOOK_SECRET: 'm'.repeat(32),
  DYNAMICS_WEBHOOK_SECRET: 'd'.repeat(32),
};

function problemsOf(env: Record<string, string>) {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration', () => {
  it("bounds what a killed replica holds on PostgreSQL under 15 s by default: its inbox and record leases (the heartbeat renews live ones every third)", () => {
    const { sync } = loadConfig({ ...live, DATABASE_URL: 'postgresql://db/mds', GRAPHQL_API_TOKEN: 't'.repeat(32) });
    expect(sync.inboxLeaseSeconds * 1000).toBeLessThan(15_000);
    expect(sync.recordLockMs).toBeLessThan(15_000);
  });

  it('starts in sandbox mode on the embedded database with no variables set', () => {
    const config = loadConfig({});
    expect(config.sandbox).toBe(true);
    expect(config.database.url).toBeUndefined();
    expect(config.database.dataDir).toBe('./data');
    expect(config.server.port).toBe(3000);
    expect(config.sync.sweepCron).toBe('*/5 * * * *');
  });

  it('reads TRUST_PROXY as Express takes it, and the security settings with safe defaults', () => {
    expect(loadConfig({}).trustProxy).toBe(false);
    expect(loadConfig({ TRUST_PROXY: 'true' }).trustProxy).toBe(true);
    expect(loadConfig({ TRUST_PROXY: '1' }).trustProxy).toBe(1);
    expect(loadConfig({ TRUST_PROXY: 'loopback, 10.0.0.0/8' }).trustProxy).toBe('loopback, 10.0.0.0/8');
    expect(() => loadConfig({ TRUST_PROXY: 'yes please' })).toThrow(/TRUST_PROXY/);
    expect(loadConfig({}).security).toEqual({ erasureKey: undefined, loginAttemptsPer15Min: 20, vendorReadsPerTokenPerMin: 30 });
    expect(loadConfig({}).retention.deadPayloadDays).toBe(30);
    const short = (() => {
      try {
        loadConfig({ ERASURE_KEY: 'too-short-key' });
      } catch (error) {
        return (error as ConfigError).message;
      }
      return '';
    })();
    expect(short).toMatch(/ERASURE_KEY: must be at least 32 characters/);
    expect(short).not.toContain('too-short-key');
  });

  it('treats blank values as unset, as docker env files produce them', () => {
    expect(loadConfig({ PORT: '', DATABASE_URL: ' ' }).server.port).toBe(3000);
  });

  it('lists every bad variable at once, by name, with why', () => {
    const error = problemsOf({ PORT: 'abc', SYNC_SWEEP_CRON: 'every five minutes', DATABASE_URL: 'mysql://db/x' });
    expect(error.problems.map((p) => p.variable).sort()).toEqual(['DATABASE_URL', 'PORT', 'SYNC_SWEEP_CRON']);
    expect(error.message).toContain('PORT: must be a whole number from 0 to 65535 (got "abc")');
    expect(error.message).toContain('SYNC_SWEEP_CRON: must be a node-cron expression');
  });

  it('names each missing credential once any credential of that system is set', () => {
    const error = problemsOf({ ...live, MARKETO_CLIENT_SECRET: '' });
    expect(error.problems).toContainEqual({ variable: 'MARKETO_CLIENT_SECRET', message: 'required once any MARKETO_* credential is set' });
  });

  it('refuses half a sandbox: one system real and the other simulated', () => {
    const { DYNAMICS_URL: _u, DYNAMICS_TENANT_ID: _t, DYNAMICS_CLIENT_ID: _c, DYNAMICS_CLIENT_SECRET: _s, ...marketoOnly } = live;
    const error = problemsOf(marketoOnly);
    expect(error.problems.map((p) => p.variable)).toContain('DYNAMICS_URL');
  });

  it('requires webhook secrets when connected to real systems, and never echoes a secret', () => {
    const error = problemsOf({ ...live, MARKETO_WEBHOOK_SECRET: '', DYNAMICS_WEBHOOK_SECRET: 'short-secret' });
    expect(error.problems.map((p) => p.variable).sort()).toEqual(['DYNAMICS_WEBHOOK_SECRET', 'MARKETO_WEBHOOK_SECRET']);
    expect(error.message).not.toContain('short-secret');
  });

  it('derives the Entra token URL from the tenant unless overridden', () => {
    const config = loadConfig(live);
    expect(config.sandbox).toBe(false);
    expect(config.marketo.credentials?.baseUrl).toBe('https://123-ABC-456.mktorest.com');
    expect(config.dynamics.credentials?.tokenUrl).toBe('https://login.microsoftonline.com/tenant/oauth2/v2.0/token');
    expect(loadConfig({ ...live, DYNAMICS_TOKEN_URL: 'http://127.0.0.1:9/token' }).dynamics.credentials?.tokenUrl).toBe(
      'http://127.0.0.1:9/token',
    );
  });

  it('accepts node-cron schedules with a seconds field', () => {
    expect(loadConfig({ SYNC_SWEEP_CRON: '*/10 * * * * *' }).sync.sweepCron).toBe('*/10 * * * * *');
  });

  it('turns a schedule off with "off", for replicas that should never start one', () => {
    const config = loadConfig({ SYNC_SWEEP_CRON: 'off', SYNC_FULL_CRON: 'OFF' });
    expect(config.sync.sweepCron).toBeUndefined();
    expect(config.sync.fullCron).toBeUndefined();
  });
  it('decides production from real credentials or PRODUCTION, never from NODE_ENV alone', () => {
    expect(loadConfig({ NODE_ENV: 'production' }).production).toBe(false);
    expect(loadConfig({ ...live }).production).toBe(true);
    expect(loadConfig({ ...live, PRODUCTION: 'false' }).production).toBe(false);
    expect(loadConfig({ NODE_ENV: 'development', PRODUCTION: 'true' }).production).toBe(true);
    expect(problemsOf({ PRODUCTION: 'yes' }).problems.map((p) => p.variable)).toEqual(['PRODUCTION']);
  });

  it('uses a shared sandbox (SANDBOX_URL) only in sandbox mode', () => {
    expect(loadConfig({ SANDBOX_URL: 'http://sandbox:4000/' }).sandboxUrl).toBe('http://sandbox:4000');
    expect(loadConfig({ ...live, SANDBOX_URL: 'http://sandbox:4000' }).sandboxUrl).toBeUndefined();
    expect(loadConfig({ METRICS_PORT: '9464' }).metricsPort).toBe(9464);
    expect(loadConfig({ METRICS_PORT: '' }).metricsPort).toBeUndefined();
  });
});
