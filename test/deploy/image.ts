import { execFile } from 'node:child_process';
import { cp, mkdir, readFile, symlink } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';

// The Dockerfile, read and carried out without a container engine: each stage gets a directory
// standing in for its filesystem root, COPY copies what it names (from the build context, minus
// .dockerignore, or from an earlier stage), ENV and WORKDIR set what later steps see, and each
// RUN must be one this file knows how to carry out. An instruction or a RUN command it does not
// know fails the assembly: the Dockerfile and the deploy test cannot drift apart silently.

const run = promisify(execFile);

export interface Instruction {
  op: string;
  args: string;
  line: number;
}

export interface Stage {
  base: string;
  name: string | undefined;
  instructions: Instruction[];
}

export const KNOWN_INSTRUCTIONS = ['FROM', 'WORKDIR', 'COPY', 'RUN', 'ENV', 'USER', 'EXPOSE', 'HEALTHCHECK', 'CMD'] as const;

export function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i += 1) {
    const start = i;
    let line = lines[i]!;
    if (/^\s*(#|$)/.test(line)) continue;
    while (line.endsWith('\\') && i + 1 < lines.length) {
      i += 1;
      line = line.slice(0, -1).trimEnd() + ' ' + lines[i]!.trim();
    }
    const match = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    if (!match) throw new Error(`Dockerfile line ${start + 1}: cannot read "${line}"`);
    const op = match[1]!.toUpperCase();
    if (!(KNOWN_INSTRUCTIONS as readonly string[]).includes(op)) {
      throw new Error(`Dockerfile line ${start + 1}: ${op} is not carried out by test/deploy/image.ts; teach it, or keep the Dockerfile to ${KNOWN_INSTRUCTIONS.join(', ')}`);
    }
    const args = match[2]!.trim();
    if (op === 'FROM') {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!from) throw new Error(`Dockerfile line ${start + 1}: FROM ${args}`);
      stages.push({ base: from[1]!, name: from[2], instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (!stage) throw new Error(`Dockerfile line ${start + 1}: ${op} before FROM`);
    stage.instructions.push({ op, args, line: start + 1 });
  }
  return stages;
}

/** A JSON exec form (CMD ["node", "x.js"]) or nothing. */
export function execForm(args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined;
  const parsed = JSON.parse(args) as unknown;
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === 'string')) throw new Error(`not an exec form: ${args}`);
  return parsed;
}

function expand(value: string, env: Record<string, string>): string {
  return value.replace(/\$\{([A-Za-z_]\w*)\}|\$([A-Za-z_]\w*)/g, (_, a?: string, b?: string) => env[(a ?? b)!] ?? '');
}

export interface AssembledStage {
  name: string | undefined;
  /** the directory standing for the stage's / */
  root: string;
  /** the WORKDIR, inside root */
  workdir: string;
  env: Record<string, string>;
  user: string | undefined;
  exposed: string[];
  healthcheck: string[] | undefined;
  cmd: string[] | undefined;
  /** what each RUN was carried out as (for the test's log) */
  ran: string[];
}

export interface AssembleOptions {
  /** the build context (the repository) */
  context: string;
  /** where the stages' roots go (outside the repository, so no node_modules above them is found) */
  into: string;
  /** the base images' environment (PATH with this machine's node, as the node image's /usr/local/bin) */
  baseEnv: Record<string, string>;
  /** npm ci of the build stage: the repository's node_modules, then its postinstall (Prisma generate) */
  log?: (line: string) => void;
}

async function dockerignore(context: string): Promise<string[]> {
  const text = await readFile(join(context, '.dockerignore'), 'utf8').catch(() => '');
  return text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
}

export async function assembleImage(dockerfile: string, options: AssembleOptions): Promise<AssembledStage[]> {
  const stages = parseDockerfile(dockerfile);
  const ignored = await dockerignore(options.context);
  const isIgnored = (path: string) => ignored.some((pattern) => path === pattern || path.startsWith(`${pattern}/`));
  const done: AssembledStage[] = [];
  for (const [index, stage] of stages.entries()) {
    const root = join(options.into, `stage-${index}-${stage.name ?? 'unnamed'}`);
    await mkdir(root, { recursive: true });
    const state: AssembledStage = { name: stage.name, root, workdir: root, env: { ...options.baseEnv }, user: undefined, exposed: [], healthcheck: undefined, cmd: undefined, ran: [] };
    const inRoot = (containerPath: string) => (containerPath.startsWith('/') ? join(root, containerPath) : join(state.workdir, containerPath));
    for (const { op, args, line } of stage.instructions) {
      const where = `Dockerfile line ${line}`;
      switch (op) {
        case 'WORKDIR':
          state.workdir = join(root, expand(args, state.env));
          await mkdir(state.workdir, { recursive: true });
          break;
        case 'ENV': {
          const match = /^([A-Za-z_]\w*)=(.*)$/.exec(args);
          if (!match) throw new Error(`${where}: ENV must be NAME=value`);
          const [name, value] = [match[1]!, expand(match[2]!, state.env)];
          // PATH entries the image adds are inside the image; the base image's are this machine's
          const base = new Set((options.baseEnv['PATH'] ?? '').split(':'));
          state.env[name] = name === 'PATH' ? value.split(':').map((entry) => (base.has(entry) || !entry.startsWith('/') ? entry : join(root, entry))).join(':') : value;
          break;
        }
        case 'COPY': {
          const words = args.split(/\s+/);
          const from = words[0]!.startsWith('--from=') ? words.shift()!.slice('--from='.length) : undefined;
          if (words.some((w) => w.startsWith('--'))) throw new Error(`${where}: COPY flags other than --from are not carried out`);
          const dest = words.pop()!;
          const source = from === undefined ? undefined : done.find((s) => s.name === from);
          if (from !== undefined && !source) throw new Error(`${where}: no stage ${from}`);
          const target = inRoot(dest);
          for (const src of words) {
            const origin = source ? join(source.root, src) : join(options.context, src);
            if (!source && isIgnored(relative(options.context, origin))) throw new Error(`${where}: ${src} is in .dockerignore`);
            const to = dest.endsWith('/') ? join(target, src.split('/').pop()!) : target;
            await mkdir(dirname(to), { recursive: true });
            await cp(origin, to, {
              recursive: true,
              dereference: false,
              filter: (path) => source !== undefined || !isIgnored(relative(options.context, path)),
            });
          }
          break;
        }
        case 'RUN':
          await carryOut(args, state, options, where);
          break;
        case 'USER':
          // not switched: the test runs as whoever runs it; the image's user only owns /app/data
          state.user = args;
          break;
        case 'EXPOSE':
          state.exposed.push(...args.split(/\s+/));
          break;
        case 'HEALTHCHECK': {
          const match = /\bCMD\s+(.*)$/.exec(args);
          if (!match) throw new Error(`${where}: HEALTHCHECK without CMD`);
          state.healthcheck = execForm(match[1]!) ?? ['/bin/sh', '-c', match[1]!];
          break;
        }
        case 'CMD':
          state.cmd = execForm(args) ?? ['/bin/sh', '-c', args];
          break;
        default:
          throw new Error(`${where}: ${op} is not carried out`);
      }
    }
    done.push(state);
  }
  return done;
}

/**
 * The RUN commands this Dockerfile uses, each carried out for real in the stage's directory, except
 * what only shapes an image layer (`npm cache clean --force` would empty this machine's shared
 * cache; chown needs root and the test runs as its own user).
 */
async function carryOut(command: string, state: AssembledStage, options: AssembleOptions, where: string): Promise<void> {
  const exec = async (file: string, args: string[]) => {
    state.ran.push([file, ...args].join(' '));
    options.log?.(`${where}: ${[file, ...args].join(' ')}`);
    await run(file, args, { cwd: state.workdir, env: state.env, maxBuffer: 64 * 1024 * 1024 });
  };
  for (const part of command.split('&&').map((p) => p.trim())) {
    let match: RegExpExecArray | null;
    if (part === 'npm ci') {
      // the full install of the build stage: this repository's (same lockfile), then its postinstall
      await symlink(join(options.context, 'node_modules'), join(state.workdir, 'node_modules'), 'dir');
      state.ran.push('npm ci (the repository node_modules, same lockfile)');
      await exec('npm', ['run', 'generate']);
    } else if (part === 'npm ci --omit=dev --ignore-scripts') {
      await exec('npm', ['ci', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund']);
    } else if (part === 'npm run build') {
      await exec('npm', ['run', 'build']);
    } else if (part === 'npm cache clean --force') {
      state.ran.push('(npm cache clean --force: not run, it would empty the shared npm cache)');
    } else if ((match = /^mkdir -p (\S+)$/.exec(part))) {
      await mkdir(join(state.root, match[1]!), { recursive: true });
      state.ran.push(part);
    } else if (/^chown \S+ \S+$/.test(part)) {
      state.ran.push(`(${part}: not run, needs root)`);
    } else {
      throw new Error(`${where}: RUN ${part} is not carried out by test/deploy/image.ts; teach it`);
    }
  }
}
