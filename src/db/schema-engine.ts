import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import * as wasmBindings from '@prisma/schema-engine-wasm/schema_engine_bg';
import { bindMigrationAwareSqlAdapterFactory } from '@prisma/driver-adapter-utils';
import type { SqlMigrationAwareDriverAdapterFactory } from '@prisma/driver-adapter-utils';
import type { SchemaEngine } from '@prisma/schema-engine-wasm';

// Prisma's schema engine as WASM, driven through the same driver adapter as the app: the
// native engine binary cannot be downloaded on our machines (see STACK.md). The package's own
// entry imports the .wasm file directly, which Node cannot, so it is instantiated by hand, once.
let wasmReady: Promise<void> | undefined;

// Our lib settings (ES2023, no DOM) do not declare WebAssembly, though Node has it.
const wasm = (
  globalThis as unknown as {
    WebAssembly: {
      compile(bytes: Uint8Array): Promise<object>;
      instantiate(module: object, imports: object): Promise<{ exports: Record<string, unknown> }>;
    };
  }
).WebAssembly;

function loadWasm(): Promise<void> {
  wasmReady ??= (async () => {
    const bindingsUrl = import.meta.resolve('@prisma/schema-engine-wasm/schema_engine_bg');
    const wasmPath = fileURLToPath(new URL('./schema_engine_bg.wasm', bindingsUrl));
    const module = await wasm.compile(await readFile(wasmPath));
    const instance = await wasm.instantiate(module, {
      './schema_engine_bg.js': wasmBindings,
    });
    wasmBindings.__wbg_set_wasm(instance.exports);
    (instance.exports as { __wbindgen_start?: () => void }).__wbindgen_start?.();
  })();
  return wasmReady;
}

export async function openSchemaEngine(
  adapterFactory: SqlMigrationAwareDriverAdapterFactory,
  schema: { path: string; content: string },
): Promise<SchemaEngine> {
  await loadWasm();
  return wasmBindings.SchemaEngine.new(
    { datamodels: [[schema.path, schema.content]] },
    () => {},
    bindMigrationAwareSqlAdapterFactory(adapterFactory),
  );
}

export const noSchemaFilter = { externalTables: [], externalEnums: [] };
