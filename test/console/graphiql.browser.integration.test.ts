import type { ConsoleMessage, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootService, type TestService } from '../support/service.ts';
import { launchBrowser, screenshot, skipBrowser } from './browser.ts';

// GraphiQL outside production, in a real browser: the page renders, runs a query with the token
// and loads everything (scripts, styles, the editor's workers) from the service itself, under the
// page's own CSP, with no violation reported.

describe.skipIf(skipBrowser)('GraphiQL in headless Chromium', () => {
  let t: TestService;
  let browser: Awaited<ReturnType<typeof launchBrowser>>;
  let page: Page;
  const requested: string[] = [];
  const violations: string[] = [];

  beforeAll(async () => {
    t = await bootService('pglite', { SYNC_SWEEP_CRON: 'off', SYNC_FULL_CRON: 'off' });
    browser = await launchBrowser();
    page = await browser.context.newPage();
    page.on('request', (request) => requested.push(request.url()));
    page.on('console', (message: ConsoleMessage) => {
      if (/Content Security Policy|Refused to/i.test(message.text())) violations.push(message.text());
    });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await t?.stop();
  });

  it('renders from the service’s own origin under its CSP and answers a query sent with the token', async () => {
    const answer = await page.goto(`${t.service.url}/graphql`);
    expect(answer?.status()).toBe(200);
    expect(answer?.headers()['content-security-policy']).toContain("default-src 'none'");
    const editor = page.locator('.graphiql-container').first();
    await editor.waitFor({ timeout: 30_000 });
    // the headers tab holds a placeholder token: put the real one in
    await page.evaluate((token) => {
      localStorage.clear();
      localStorage.setItem('graphiql:headers', JSON.stringify({ Authorization: `Bearer ${token}` }));
    }, t.service.graphqlToken!);
    await page.reload();
    await editor.waitFor({ timeout: 30_000 });
    // the query typed below, not GraphiQL's own schema introspection, which it sends after a reload
    const isQuery = (body: string) => body.includes('__typename') && !body.includes('IntrospectionQuery');
    const ran = page.waitForResponse((r) => r.url().endsWith('/graphql') && r.request().method() === 'POST' && isQuery(r.request().postData() ?? ''), { timeout: 30_000 });
    // the query editor (Monaco): replace the welcome text with a query
    await page.locator('.graphiql-query-editor .monaco-editor').first().click();
    await page.keyboard.press('ControlOrMeta+A');
    await page.keyboard.press('Delete');
    await page.keyboard.type('{ __typename }');
    await page.getByRole('button', { name: /execute query/i }).click();
    const response = await ran;
    expect(response.status()).toBe(200);
    expect(await response.json()).toEqual({ data: { __typename: 'Query' } });
    await page.locator('.graphiql-response').getByText('__typename').waitFor();
    await screenshot(page, 'graphiql');
    const origin = new URL(t.service.url).origin;
    const elsewhere = requested.filter((url) => !url.startsWith(origin) && !url.startsWith('blob:') && !url.startsWith('data:'));
    expect(elsewhere).toEqual([]);
    expect(requested.some((url) => url.includes('/graphql/graphiql/yoga-graphiql.umd.js'))).toBe(true);
    expect(violations).toEqual([]);
  }, 90_000);
});
