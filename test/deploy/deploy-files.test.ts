import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES } from '../../src/config.ts';
import { projectRoot } from '../../src/paths.ts';
import { interpolate, parseYaml, readCompose } from './compose.ts';
import { execForm, parseDockerfile } from './image.ts';

// The deploy files agree with the code and with each other (the assembled image runs in
// dockerfile.integration.test.ts, with PostgreSQL).

const root = projectRoot();
const text = (file: string) => readFile(join(root, file), 'utf8');

describe('the deploy files', () => {
  it('pass every setting the service reads through the compose file, and .env.example documents each', async () => {
    const app = readCompose(await text('docker-compose.yml'), {})['app']!;
    const example = await text('.env.example');
    for (const variable of CONFIG_VARIABLES) {
      expect(Object.keys(app.environment), variable).toContain(variable);
      expect(example, variable).toMatch(new RegExp(`^${variable}=`, 'm'));
    }
  });

  it('pin every image by exact version, and run the Node line the Dockerfile names, listed in engines', async () => {
    const compose = readCompose(await text('docker-compose.yml'), {});
    const version = (JSON.parse(await text('package.json')) as { version: string }).version;
    for (const [name, service] of Object.entries(compose)) {
      if (service.build) expect(service.image, name).toBe(`marketo-dynamics-sync:${version}`);
      else expect(service.image, name).toMatch(/^[\w./-]+:\d+\.\d+(\.\d+)?(-[\w.]+)?$/);
    }
    const stages = parseDockerfile(await text('Dockerfile'));
    for (const stage of stages) expect(stage.base).toMatch(/^node:\d+\.\d+\.\d+-[\w.-]+$/);
    const major = /^node:(\d+)\./.exec(stages.at(-1)!.base)![1]!;
    const { engines } = JSON.parse(await text('package.json')) as { engines: { node: string } };
    const lines = engines.node.split('||').map((range) => /\^(\d+)\./.exec(range.trim())?.[1]);
    expect(lines).toContain(major);
    expect(Math.max(...lines.map(Number))).toBe(Number(major));
  });

  it('refuse a Dockerfile instruction the deploy test does not carry out', () => {
    expect(() => parseDockerfile('FROM node:26.0.0-slim\nADD https://example.com/x /x\n')).toThrow(/ADD is not carried out/);
    expect(() => parseDockerfile('FROM node:26.0.0-slim\nVOLUME /data\n')).toThrow(/VOLUME/);
    expect(parseDockerfile('# c\nFROM a:1 AS b\nRUN one \\\n  two\nCMD ["node", "x.js"]\n')).toEqual([
      { base: 'a:1', name: 'b', instructions: [{ op: 'RUN', args: 'one two', line: 3 }, { op: 'CMD', args: '["node", "x.js"]', line: 5 }] },
    ]);
    expect(execForm('["node", "x.js"]')).toEqual(['node', 'x.js']);
  });

  it("read compose's YAML subset exactly, refusing what they would read differently", () => {
    expect(parseYaml('a:\n  b: "x # y"  # comment\n  c:\n    - 1:2\n    - \'it\'\'s\'\n  d: ["p", "q"]\ne:\n')).toEqual({
      a: { b: 'x # y', c: ['1:2', "it's"], d: ['p', 'q'] },
      e: null,
    });
    expect(() => parseYaml('a: &anchor\n  b: 1\n')).toThrow(/unsupported YAML/);
    expect(() => parseYaml('a:\n  - b: 1\n')).toThrow(/maps inside sequences/);
    expect(interpolate('${A:-x} ${B-y} ${C:-z} $$D $A', { A: '', B: '', C: 'c' })).toBe('x  c $D ');
  });
});
