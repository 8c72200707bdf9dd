import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDemo, type DemoTarget } from '../../scripts/demo.ts';

// The README's first hour, literally: `npm start` with no credentials (a temp DATA_DIR, a free
// port), the "what to try" block it prints, each printed command run by a shell as copied, and
// then the demo scenario against that very process.

const run = promisify(execFile);
const root = new URL('../..', import.meta.url).pathname;

// A group is gone once none of its processes is still running. Zombies count as gone: they hold no
// files, and the ones orphaned by npm's exit wait for whichever reaper adopts them. A clean stop is
// app.integration's subject; here a slow one is only cut short, so a busy machine fails nothing.
async function groupGone(pgid: number, patienceMs: number): Promise<void> {
  const deadline = Date.now() + patienceMs;
  while ((await runningInGroup(pgid)) > 0) {
    if (Date.now() > deadline) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        // ESRCH: the group ended since we looked
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function runningInGroup(pgid: number): Promise<number> {
  let running = 0;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // pid (comm) state ppid pgrp ...: comm may hold spaces, so read after its closing parenthesis
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') running += 1;
  }
  return running;
}

describe('sandbox mode as the README starts it', () => {
  let child: ChildProcess;
  let dataDir: string;
  let output = '';
  let block = '';

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'mds-sandbox-'));
    const env: NodeJS.ProcessEnv = { ...process.env, PORT: '0', DATA_DIR: dataDir, LOG_LEVEL: 'warn' };
    for (const name of Object.keys(env)) if (/^(MARKETO_|DYNAMICS_|DATABASE_URL$|GRAPHQL_API_TOKEN$)/.test(name)) delete env[name];
    child = spawn('npm', ['start'], { cwd: root, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const deadline = Date.now() + 110_000;
    while (Date.now() < deadline) {
      const match = /^-{20,}\nSANDBOX READY[\s\S]*?\n-{20,}\n/m.exec(output);
      if (match) {
        block = match[0];
        return;
      }
      if (child.exitCode !== null) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    throw new Error(`npm start did not print the "what to try" block:\n${output}`);
  }, 120_000);
  afterAll(async () => {
    if (child?.pid) {
      if (child.exitCode === null) process.kill(-child.pid, 'SIGTERM');
      // npm can exit before the service under it has closed its database: wait for the whole
      // process group, or the data directory is removed while PGlite still writes into it.
      await groupGone(child.pid, 25_000);
    }
    if (dataDir) await rm(dataDir, { recursive: true, force: true, maxRetries: 3 });
  }, 30_000);

  const value = (label: string) => {
    const match = new RegExp(`^  ${label}\\s+(\\S+)`, 'm').exec(block);
    if (!match) throw new Error(`no "${label}" in:\n${block}`);
    return match[1]!;
  };
  const target = (): DemoTarget => ({
    url: value('service'),
    graphqlToken: value('GraphQL API token'),
    marketoWebhookSecret: value('Marketo webhook secret'),
    marketoUrl: value('Marketo simulator').replace(/\/__admin\/leads$/, ''),
    dataverseUrl: value('Dataverse simulator').replace(/\/__admin\/records\/contact$/, ''),
  });

  it('prints the block once, leading to the operator console, with the secrets and the simulator commands', async () => {
    expect(output.match(/SANDBOX READY/g)).toHaveLength(1);
    const ready = await fetch(`${value('service')}/readyz`, { headers: { authorization: `Bearer ${value('GraphQL API token')}` } });
    expect(await ready.json()).toMatchObject({ status: 'ready', sandbox: true });
    const signIn = await fetch(value('operator console'));
    expect(signIn.status).toBe(401); // the console's sign-in form
    expect(await signIn.text()).toContain('API token');
    const commands = block.split('\n').filter((line) => line.startsWith('curl '));
    expect(commands.map((c) => /webhooks\/marketo\/sync-person|__admin\/records\/contact|__admin\/leads|\/graphql/.exec(c)?.[0])).toEqual([
      '__admin/records/contact',
      '__admin/leads',
      'webhooks/marketo/sync-person',
    ]);
  });

  it('runs each printed command as pasted into a shell, with the promised results', async () => {
    const commands = block.split('\n').filter((line) => line.startsWith('curl '));
    const shell = async (command: string) => JSON.parse((await run('bash', ['-c', command])).stdout) as Record<string, unknown>;
    const edited = await shell(commands[0]!);
    expect(edited).toMatchObject({ jobtitle: 'Chief Operating Officer', address1_city: 'Rotterdam' });
    let person: Record<string, unknown> = {};
    for (let i = 0; i < 100 && person['title'] !== 'Chief Operating Officer'; i++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      person = await shell(commands[1]!);
    }
    expect(person).toMatchObject({ title: 'Chief Operating Officer', city: 'Rotterdam' });
    const synced = await shell(commands[2]!);
    expect(synced).toMatchObject({ status: 'created', dynamicsEntity: 'lead' });
  }, 60_000);

  it('runs the demo scenario green against it', async () => {
    const lines: string[] = [];
    const result = await runDemo(target(), { print: (line) => lines.push(line) });
    expect(result.ok, lines.join('\n')).toBe(true);
    expect(result.steps.map((s) => s.ok)).toEqual([true, true, true, true, true, true]);
  }, 120_000);

  it('serves metrics that count what just happened', async () => {
    const text = await (await fetch(`${value('service')}/metrics`, { headers: { authorization: `Bearer ${value('GraphQL API token')}` } })).text();
    expect(text).toMatch(/mds_webhook_intake_total\{source="marketo_sync_person",outcome="created"[^}]*\} [1-9]/);
    expect(text).toMatch(/mds_engine_outcomes_total\{outcome="done"[^}]*\} [1-9]/);
    expect(text).toMatch(/mds_activities_last_hour\{type="COLLISION_RESOLVED"[^}]*\} [1-9]/);
    expect(text).toMatch(/mds_api_calls_total\{system="dynamics"[^}]*\} [1-9]/);
    expect(text).toContain('mds_inbox_oldest_pending_age_seconds');
  });
});
