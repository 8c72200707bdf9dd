import { afterAll, afterEach, beforeAll } from 'vitest';
import type { DatabaseEngine } from '../../src/db/database.ts';
import { bootService, type TestService } from './service.ts';

// Vendor HTTP as the service's clients send it, with a hook each test sets to play an automation, a
// plug-in or a fault at the exact moment it matters (ServiceOptions.interceptVendorHttp).

export type HookPlan = { body?: string; after?: (response: Response) => Promise<void>; fail?: Error } | undefined;
export type Hook = (url: string, init: RequestInit | undefined, body: string) => HookPlan | Promise<HookPlan>;

/** One interceptor per vendor whose behaviour each test sets (and clears after itself). */
export function interceptor() {
  let hook: Hook | undefined;
  return {
    set(next: Hook | undefined) {
      hook = next;
    },
    wrap(next: typeof fetch): typeof fetch {
      return async (input, init) => {
        const url = typeof input === 'string' ? input : input instanceof URL ? input.toString() : input.url;
        const body = typeof init?.body === 'string' ? init.body : '';
        const plan = hook ? await hook(url, init, body) : undefined;
        if (plan?.fail) throw plan.fail;
        const response = await next(input, plan?.body !== undefined ? { ...init, body: plan.body } : init);
        if (plan?.after) await plan.after(response.clone());
        return response;
      };
    },
  };
}

/** Waits for a condition; the deadline only catches a hang, it is no speed check. */
export async function until<T>(what: string, check: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A gate a hook waits on until the test opens it. */
export function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  let reached!: () => void;
  const arrived = new Promise<void>((resolve) => (reached = resolve));
  return {
    /** called by the hook: says it is here, then waits */
    async pass(): Promise<void> {
      reached();
      await opened;
    },
    /** resolves once the hook is waiting at the gate */
    arrived,
    open,
  };
}

/**
 * The real service for a describe block, its vendor HTTP through one interceptor per vendor whose
 * hooks are cleared after each test. `service()` is the running service (after beforeAll).
 */
export function useInterceptedService(engine: DatabaseEngine, env: Record<string, string>) {
  let t: TestService | undefined;
  const marketoHttp = interceptor();
  const dynamicsHttp = interceptor();
  beforeAll(async () => {
    t = await bootService(engine, env, { interceptVendorHttp: { marketo: (next) => marketoHttp.wrap(next), dynamics: (next) => dynamicsHttp.wrap(next) } });
  });
  afterEach(() => {
    marketoHttp.set(undefined);
    dynamicsHttp.set(undefined);
  });
  afterAll(async () => {
    await t?.stop();
  });
  return {
    marketoHttp,
    dynamicsHttp,
    service: (): TestService => {
      if (!t) throw new Error('the service starts in beforeAll');
      return t;
    },
  };
}
