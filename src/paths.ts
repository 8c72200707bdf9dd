import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The project root is found from this file, not the working directory, so the service, the
// scripts and the compiled build (dist/src/...) all find prisma/ the same way.
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('package.json not found above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
  return dir;
}

export function projectPaths(root = projectRoot()) {
  return {
    root,
    schemaPath: join(root, 'prisma', 'schema.prisma'),
    migrationsDir: join(root, 'prisma', 'migrations'),
  };
}

/**
 * GraphiQL's bundle (the @graphql-yoga/graphiql package's dist: a self-contained UMD build, its
 * stylesheet and editor workers), served by the service itself; null when it is not installed.
 * It is a devDependency (its own dependency tree is 270 MB, all already inside the bundle); the
 * image copies the package alone from the build stage.
 */
export function graphiqlAssetsDir(): string | null {
  try {
    const dir = join(dirname(createRequire(import.meta.url).resolve('@graphql-yoga/graphiql/package.json')), 'dist');
    return existsSync(join(dir, 'yoga-graphiql.umd.js')) ? dir : null;
  } catch {
    return null;
  }
}
