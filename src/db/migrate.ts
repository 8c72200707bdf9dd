import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { lockKeys, type Database } from './database.ts';
import { noSchemaFilter, openSchemaEngine } from './schema-engine.ts';

export interface MigrationFiles {
  /** absolute path of prisma/migrations */
  migrationsDir: string;
  /** absolute path of prisma/schema.prisma */
  schemaPath: string;
}

export interface MigrationStatus {
  available: string[];
  applied: string[];
  pending: string[];
  current: boolean;
}

export async function listMigrations(migrationsDir: string): Promise<string[]> {
  const entries = await readdir(migrationsDir, { withFileTypes: true });
  return entries
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();
}

export async function loadMigrationList(migrationsDir: string) {
  const names = await listMigrations(migrationsDir);
  const migrationDirectories = await Promise.all(
    names.map(async (name) => ({
      path: name,
      migrationFile: {
        path: 'migration.sql',
        content: { tag: 'ok' as const, value: await readFile(join(migrationsDir, name, 'migration.sql'), 'utf8') },
      },
    })),
  );
  const lockPath = join(migrationsDir, 'migration_lock.toml');
  const lockContent = await readFile(lockPath, 'utf8').catch(() => null);
  return {
    baseDir: migrationsDir,
    lockfile: { path: 'migration_lock.toml', content: lockContent },
    shadowDbInitScript: '',
    migrationDirectories,
  };
}

/**
 * Applies every migration of prisma/migrations that the database has not recorded yet, through
 * Prisma's WASM schema engine (it records them in `_prisma_migrations`, like `migrate deploy`).
 * Serialised across replicas by an advisory lock, so two replicas starting at once apply each
 * migration once; the second one finds nothing to do.
 */
export async function migrate(db: Database, files: MigrationFiles): Promise<{ applied: string[] }> {
  const schema = { path: files.schemaPath, content: await readFile(files.schemaPath, 'utf8') };
  const migrationsList = await loadMigrationList(files.migrationsDir);
  return db.withExclusiveLock(lockKeys.migrate, () =>
    db.withSchemaEngineAdapter(async (adapterFactory) => {
      const engine = await openSchemaEngine(adapterFactory, schema);
      try {
        const result = await engine.applyMigrations({ migrationsList, filters: noSchemaFilter });
        return { applied: result.appliedMigrationNames };
      } finally {
        engine.free();
      }
    }),
  );
}

export async function migrationStatus(db: Database, migrationsDir: string): Promise<MigrationStatus> {
  const available = await listMigrations(migrationsDir);
  let applied: string[] = [];
  try {
    const rows = await db.prisma.$queryRaw<{ migration_name: string }[]>`
      SELECT migration_name FROM _prisma_migrations
      WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL`;
    applied = rows.map((row) => row.migration_name).sort();
  } catch {
    applied = [];
  }
  const appliedSet = new Set(applied);
  const pending = available.filter((name) => !appliedSet.has(name));
  return { available, applied, pending, current: pending.length === 0 };
}
