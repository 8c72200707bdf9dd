import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import type { World } from './world.ts';

// Every write both simulators took during a campaign, one JSON line each in the work folder
// (vendor-writes.jsonl): who wrote what to which record, when. The oracle judges from the edits it
// made and the log the service kept; when it reports a violation, this is the vendors' own side of
// the story (a write that landed twice, late, or from a paused replica), read by hand.

export function keepVendorWriteTrail(world: World): string {
  const file = join(world.workDir, 'vendor-writes.jsonl');
  const write = (entry: Record<string, unknown>) => appendFileSync(file, `${JSON.stringify(entry)}\n`);
  world.dv.onWrite((change) => {
    const table = change.table.logicalName;
    if (table !== 'lead' && table !== 'contact') return;
    write({
      at: new Date(change.at).toISOString(),
      vendor: 'dataverse',
      message: change.message,
      table,
      id: change.id,
      by: change.userId === world.dataverseSim.syncUserId ? 'sync' : change.userId,
      port: change.remotePort ?? null,
      depth: change.depth ?? null,
      changed: change.changed,
      version: change.record?.versionnumber ?? null,
    });
  });
  world.mkto.onApiCall((call) => {
    if (call.phase !== 'after' || (call.endpoint !== 'leads.sync' && call.endpoint !== 'leads.merge')) return;
    write({ at: new Date().toISOString(), vendor: 'marketo', endpoint: call.endpoint, port: call.remotePort ?? null, body: call.body, result: call.result ?? null });
  });
  return file;
}
