import type { LiveReads, LiveRecords } from '../graphql/context.ts';
import type { MappingService } from '../sync/mappings.ts';
import type { DynamicsPort, MarketoPort } from '../sync/ports.ts';

// The console's "value on each side, now": both records read through the same ports (and the same
// pacing) the engine uses, with the entity's enabled mappings. A side that cannot be read says why.

export function createLiveReads(deps: { marketo: MarketoPort; dynamics: DynamicsPort; mappings: MappingService }): LiveReads {
  const message = (error: unknown) => (error instanceof Error ? error.message : String(error));
  return {
    async records(link): Promise<LiveRecords> {
      const { bindings } = await deps.mappings.forEntity(link.entity);
      const [person, record] = await Promise.allSettled([
        deps.marketo.readPersons([link.marketoId], bindings),
        deps.dynamics.readRecords(link.entity, [link.dynamicsId], bindings),
      ]);
      const errors: string[] = [];
      if (person.status === 'rejected') errors.push(`Marketo: ${message(person.reason)}`);
      if (record.status === 'rejected') errors.push(`Dynamics: ${message(record.reason)}`);
      const view = record.status === 'fulfilled' ? record.value.get(link.dynamicsId) : undefined;
      return {
        marketo: person.status === 'fulfilled' ? (person.value.get(link.marketoId)?.fields ?? null) : null,
        dynamics: view?.fields ?? null,
        dynamicsSyncFilter: view?.syncFilter ?? null,
        errors,
      };
    },
    async refreshFieldAccess(entity) {
      deps.mappings.invalidate(entity);
      await deps.mappings.forEntity(entity);
    },
  };
}
