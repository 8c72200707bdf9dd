// Static lists as a resource of the split simulator: the lists themselves (../lists.ts) hosted on
// one simulator's store, one instance per simulator.
import { createStaticLists } from '../lists.ts';
import type { MarketoSim } from '../marketo.state.ts';
import { SimulatorError, type Route } from '../marketo.types.ts';
import { project, requestedFields } from './leads.ts';
import { parseBatchSize } from './params.ts';

type StaticLists = ReturnType<typeof createStaticLists>;
const bySim = new WeakMap<MarketoSim, StaticLists>();

export function staticListsOf(sim: MarketoSim): StaticLists {
  let lists = bySim.get(sim);
  if (!lists) {
    lists = createStaticLists({
      fail: (code, message) => {
        throw new SimulatorError(code, message);
      },
      project: (id, fields) => {
        const lead = sim.store.get(id);
        return lead ? project(lead, fields) : null;
      },
      requestedFields: (params, fallback) => requestedFields(sim.store, params, fallback),
      parseBatchSize,
    });
    bySim.set(sim, lists);
  }
  return lists;
}

export function listRoutes(sim: MarketoSim): Route[] {
  return staticListsOf(sim).routes;
}
