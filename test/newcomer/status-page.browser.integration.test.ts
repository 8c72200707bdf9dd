import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootService, type TestService } from '../support/service.ts';

// The status page in a real browser (Debian's chromium, driven by playwright-core; nothing is
// downloaded): sign in with the API token, then watch a collision appear without reloading.

const CHROMIUM = '/usr/bin/chromium';
const skip = !existsSync(CHROMIUM) && !process.env.CI;
if (skip) console.warn(`status page browser test skipped: ${CHROMIUM} is missing (apt-get install -y chromium); under CI it runs`);

describe.skipIf(skip)('the status page in headless Chromium', () => {
  let t: TestService;
  let context: BrowserContext;
  let profile: string;

  beforeAll(async () => {
    t = await bootService('pglite');
    profile = await mkdtemp(join(tmpdir(), 'mds-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  }, 60_000);
  afterAll(async () => {
    await context?.close();
    await t?.stop();
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  it('asks for the API token, then shows a collision that happens while it is open', async () => {
    const page = await context.newPage();
    const first = await page.goto(`${t.service.url}/`);
    expect(first?.status()).toBe(401);
    await page.fill('input[name=token]', 'not-the-token');
    await page.click('button[type=submit]');
    await page.locator('text=That is not the API token.').waitFor();

    await page.fill('input[name=token]', t.service.graphqlToken!);
    await page.click('button[type=submit]');
    await page.locator('#connectors').waitFor();
    expect(await page.locator('#connectors').innerText()).toMatch(/marketo\s+OK\s+sandbox/);
    expect(await page.locator('#collisions').innerText()).toContain('No collisions.');
    const cookies = await context.cookies();
    expect(cookies.find((c) => c.name === 'mds_status')).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    expect(cookies.find((c) => c.name === 'mds_status')?.value).not.toContain(t.service.graphqlToken);

    // A scripted edit: a linked contact changed on both sides before the sync sees it.
    const created = t.dataverse.create('contact', { firstname: 'Katherine', lastname: 'Johnson', emailaddress1: `katherine.${Date.now()}@nasa.example.com`, jobtitle: 'Mathematician' });
    const contactId = String(created['contactid']);
    await t.settle();
    const link = await t.service.db.prisma.syncLink.findFirstOrThrow({ where: { dynamicsId: contactId } });
    t.marketo.updateLead(link.marketoId, { title: 'Research Mathematician' });
    t.dataverse.update('contact', contactId, { jobtitle: 'Aerospace Technologist' });
    await t.settle();

    // no reload: the page's own refresh brings it in
    const collisions = page.locator('#collisions');
    await collisions.getByText('Aerospace Technologist').first().waitFor({ timeout: 15_000 });
    const text = await collisions.innerText();
    expect(text).toContain('title');
    expect(text).toContain('Research Mathematician');
    expect(text).toContain('DYNAMICS');
    expect(text).toContain(contactId);
    expect(await page.content()).not.toContain(t.service.webhookSecrets.marketo);
  }, 60_000);
});
