import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/paths.ts';
import { freshDatabase, postgresUrl, type TestDatabase } from '../support/database.ts';
import { until } from '../support/intercept.ts';
import { readCompose, type ComposeService } from './compose.ts';
import { assembleImage, type AssembledStage } from './image.ts';

// The first production deploy, without Docker (these machines have no container engine): the
// runtime stage assembled exactly as the Dockerfile describes (test/deploy/image.ts: only what it
// copies, `npm ci --omit=dev --ignore-scripts`, the build stage's compiled output), run with
// docker-compose.yml's environment as `docker compose up` sees it with no .env and no credentials:
// the shared sandbox service, then replicas of the app against a fresh PostgreSQL database. The
// compose network's names become this machine's loopback: postgres -> TEST_DATABASE_URL's server,
// sandbox and app -> 127.0.0.1 on free ports (containers each have their own port 3000; here the
// replicas need ports of their own).

const exec = promisify(execFile);
const root = projectRoot();

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

interface Running {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

describe.skipIf(!postgresUrl())('the Docker image, assembled from the Dockerfile and run with the compose file (PostgreSQL)', () => {
  let dir: string;
  let runtime: AssembledStage;
  let compose: Record<string, ComposeService>;
  let database: TestDatabase;
  const running: Running[] = [];

  /** a process of the image: its ENV, then the service's compose environment, cwd its WORKDIR */
  function start(command: string[], env: Record<string, string>): Running {
    const [file, ...args] = command;
    const child = spawn(file!, args, { cwd: runtime.workdir, env: { ...runtime.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (text += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const handle = { child, output: () => text, exited };
    running.push(handle);
    return handle;
  }
  /** `docker compose run --rm app <command...>` */
  async function runCli(command: string[], env: Record<string, string>): Promise<{ code: number | null; output: string }> {
    const handle = start(command, env);
    const code = await handle.exited;
    return { code, output: handle.output() };
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mds-image-'));
    const stages = await assembleImage(await readFile(join(root, 'Dockerfile'), 'utf8'), {
      context: root,
      into: dir,
      // the node image's environment: its node and npm on PATH (here this machine's), npm's cache
      baseEnv: { PATH: `${dirname(process.execPath)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, HOME: process.env.HOME ?? tmpdir() },
    });
    runtime = stages.at(-1)!;
    compose = readCompose(await readFile(join(root, 'docker-compose.yml'), 'utf8'), {});
    database = await freshDatabase('postgres');
  }, 600_000);

  afterAll(async () => {
    for (const { child, exited } of running) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    }
    await database?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('starts, answers /readyz, runs the token and migration CLIs, and runs three replicas beside one shared sandbox', async () => {
    // the runtime stage holds only what the Dockerfile put there: no TypeScript runner, no sources
    const installed = await exec('node', ['-e', 'for (const m of ["tsx", "vitest/package.json", "eslint/package.json"]) { try { require.resolve(m); console.log("found " + m) } catch {} }'], { cwd: runtime.workdir, env: runtime.env });
    expect(installed.stdout).toBe('');
    expect(runtime.cmd).toEqual(['node', 'dist/src/main.js']);

    const app = compose['app']!;
    const sandboxService = compose['sandbox']!;
    expect(sandboxService.image).toBe(app.image); // one image, two roles
    // the compose network, mapped onto this machine
    const composeDb = new URL(app.environment['DATABASE_URL']!);
    expect(composeDb.hostname).toBe('postgres');
    const ports = { descriptor: await freePort(), marketo: await freePort(), dynamics: await freePort(), app: [await freePort(), await freePort(), await freePort()] };
    expect(runtime.exposed).toEqual([app.environment['PORT']]);
    const sandboxUrl = new URL(app.environment['SANDBOX_URL']!);
    expect(sandboxUrl.hostname).toBe('sandbox');
    const appEnv = (replica: number) => ({
      ...app.environment,
      DATABASE_URL: database.url!,
      SANDBOX_URL: `http://127.0.0.1:${ports.descriptor}`,
      PORT: String(ports.app[replica]),
    });

    // docker compose run --rm app db-migrate: a fresh database gets every migration
    const migrated = await runCli(['db-migrate'], appEnv(0));
    expect(migrated.output).toMatch(/applied: \d{14}_/);
    expect(migrated.code).toBe(0);

    // the sandbox service: its command, with the compose names and ports mapped
    const mapped: Record<string, string> = {
      [sandboxUrl.port]: String(ports.descriptor),
      '4001': String(ports.marketo),
      '4002': String(ports.dynamics),
      'http://sandbox': 'http://127.0.0.1',
      'http://app:3000': `http://127.0.0.1:${ports.app[0]}`,
    };
    const sandboxCommand = sandboxService.command!.map((arg) => mapped[arg] ?? arg);
    expect(sandboxCommand).not.toEqual(sandboxService.command); // every mapped value occurred
    for (const port of ['4001', '4002']) expect(sandboxService.ports).toContain(`${port}:${port}`);
    const sandbox = start(sandboxCommand, sandboxService.environment);

    // replica 1 (the image's CMD), answering /readyz; anonymous callers learn only the status
    const first = start(runtime.cmd!, appEnv(0));
    const url = `http://127.0.0.1:${ports.app[0]}`;
    const status = await until('replica 1 ready', async () => {
      const answer = await fetch(`${url}/readyz`).catch(() => undefined);
      return answer?.ok ? ((await answer.json()) as unknown) : undefined;
    }, 120_000).catch((error: unknown) => {
      throw new Error(`${String(error)}\n--- replica 1:\n${first.output()}\n--- sandbox:\n${sandbox.output()}`);
    });
    expect(status).toEqual({ status: 'ready' });
    expect(first.output()).toContain('database schema is current');

    // the image's HEALTHCHECK, as Docker runs it
    const [checkFile, ...checkArgs] = runtime.healthcheck!;
    await exec(checkFile!, checkArgs, { cwd: runtime.workdir, env: { ...runtime.env, ...appEnv(0) } });

    // docker compose run --rm app token create ...: a token the running service accepts
    const created = await runCli(['token', 'create', '--scope', 'read', '--name', 'deploy test'], appEnv(0));
    expect(created.code).toBe(0);
    const secret = /mds_[\w-]{43}/.exec(created.output)?.[0];
    expect(secret).toBeDefined();
    const details = (await (await fetch(`${url}/readyz`, { headers: { authorization: `Bearer ${secret}` } })).json()) as Record<string, unknown>;
    expect(details).toMatchObject({ status: 'ready', sandbox: true, database: { ok: true, engine: 'postgres' }, migrations: { current: true } });
    // outside production the image serves GraphiQL and its bundle itself (the image copies that package alone)
    const graphiql = await fetch(`${url}/graphql`, { headers: { accept: 'text/html' } });
    expect(graphiql.status).toBe(200);
    const assets = [...(await graphiql.text()).matchAll(/<(?:script src|link[^>]* href)=(\/graphql\/graphiql\/[^ >]+)/g)].map((m) => m[1]!);
    expect(assets).toHaveLength(2); // the bundle and its stylesheet
    for (const asset of assets) expect((await fetch(`${url}${asset}`)).status).toBe(200);

    // the sandbox seeds once a replica is ready and prints the token every replica accepts
    await until('the sandbox block', () => sandbox.output().includes('SANDBOX READY'), 120_000);
    const sandboxToken = /GraphQL API token\s+(mds_\S+)/.exec(sandbox.output())?.[1];
    expect(sandboxToken).toBeDefined();

    // replicas 2 and 3 join the same database and the same sandbox
    const others = [start(runtime.cmd!, appEnv(1)), start(runtime.cmd!, appEnv(2))];
    for (const replica of [1, 2]) {
      await until(`replica ${replica + 1} ready`, async () => (await fetch(`http://127.0.0.1:${ports.app[replica]}/readyz`).catch(() => undefined))?.ok, 120_000).catch((error: unknown) => {
        throw new Error(`${String(error)}\n--- replica ${replica + 1}:\n${others[replica - 1]!.output()}`);
      });
    }
    for (const port of ports.app) {
      const answer = await fetch(`http://127.0.0.1:${port}/graphql`, {
        method: 'POST',
        headers: { authorization: `Bearer ${sandboxToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ query: '{ __typename }' }),
      });
      expect(answer.status).toBe(200);
    }
    // the seeded Dynamics records reach the replicas through the sandbox's webhook step
    const db = await database.open();
    await until('the seeded records linked', async () => (await db.prisma.syncLink.count()) >= 22, 120_000);

    // docker compose down: SIGTERM, a clean exit
    for (const handle of [first, ...others, sandbox]) handle.child.kill('SIGTERM');
    const codes = await Promise.all([first, ...others, sandbox].map((h) => h.exited));
    expect(codes).toEqual([0, 0, 0, 0]);
  }, 600_000);
});
