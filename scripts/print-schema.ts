import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { printSchema } from 'graphql';
import { buildSchema } from '../src/graphql/schema.ts';

// Writes the SDL of the code-first schema to schema.graphql (the contract users read and diff).
// With --check it writes nothing and exits 1 when schema.graphql is not current (CI).

const target = fileURLToPath(new URL('../schema.graphql', import.meta.url));
const sdl = `${printSchema(buildSchema())}\n`;

if (process.argv.includes('--check')) {
  const current = await readFile(target, 'utf8').catch(() => '');
  if (current !== sdl) {
    console.error('schema.graphql is stale: run `npm run graphql:print` and commit the result');
    process.exit(1);
  }
  console.log('schema.graphql is current');
} else {
  await writeFile(target, sdl);
  console.log(`wrote ${target}`);
}
