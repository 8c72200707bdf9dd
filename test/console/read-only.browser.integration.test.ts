import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConsole } from '../../src/console/console.routes.ts';
import { createConsoleSessions } from '../../src/console/session.ts';
import type { Database } from '../../src/db/database.ts';
import { createGraphQLHandler } from '../../src/graphql/handler.ts';
import { useMigratedDatabase } from '../support/database.ts';
import { fakeActions, seed, testDeps } from '../graphql/support.ts';
import { launchBrowser, screenshot, skipBrowser } from './browser.ts';
import { memoryTokens } from './tokens.ts';

// A read-only token in a real browser: every view shows its data, every action is disabled, and
// an action forced through the page's own session (cookie + CSRF token) is refused by the server.

describe.skipIf(skipBrowser)('the console for a read-only token', () => {
  let db: Database;
  let server: Server;
  let url: string;
  let browser: Awaited<ReturnType<typeof launchBrowser>>;
  const { actions, calls } = fakeActions();
  const tokens = memoryTokens();

  useMigratedDatabase('pglite', { opened: (opened) => (db = opened) });
  beforeAll(async () => {
    await seed(db.prisma);
    const sessions = createConsoleSessions({ prisma: db.prisma, tokens: tokens.api });
    const app = express();
    app.use('/graphql', createGraphQLHandler({ ...testDeps(db.prisma, { actions }), sessions }).middleware);
    app.use(createConsole({ sessions, sandbox: false }));
    server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await launchBrowser();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    server?.close();
  });

  it('shows the data with every action disabled, and the server refuses an action forced through', async () => {
    const page = await browser.context.newPage();
    await page.goto(`${url}/`);
    await page.getByLabel('API token').fill(tokens.readSecret);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('read-only', { exact: true }).waitFor();

    await page.evaluate(() => (location.hash = '#/timeline?m=1001'));
    const reapply = page.getByRole('button', { name: /Re-apply the losing value/ });
    await reapply.waitFor();
    expect(await reapply.isDisabled()).toBe(true);
    await screenshot(page, '10-read-only-timeline');

    await page.evaluate(() => (location.hash = '#/queue'));
    const replay = page.locator('#dead').getByRole('button', { name: 'Replay' });
    await replay.waitFor();
    expect(await replay.isDisabled()).toBe(true);
    expect(await page.getByRole('button', { name: 'Replay all matching' }).isDisabled()).toBe(true);

    await page.evaluate(() => (location.hash = '#/sweeps'));
    expect(await page.getByRole('button', { name: 'Run a sweep now' }).isDisabled()).toBe(true);
    await page.evaluate(() => (location.hash = '#/mappings'));
    expect(await page.getByLabel('Collision winner for lead title').isDisabled()).toBe(true);

    // the page's own session, CSRF token and all: the server still says no
    const answer = await page.evaluate(async () => {
      const csrf = document.querySelector('meta[name="csrf-token"]')!.getAttribute('content')!;
      const res = await fetch('/graphql', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': csrf }, body: JSON.stringify({ query: 'mutation { requestSweep { ok } }' }) });
      return (await res.json()) as { errors?: { extensions?: { code?: string } }[] };
    });
    expect(answer.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(calls.requestSweep).toBe(0);
  }, 60_000);
});
