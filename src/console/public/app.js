// The console's router: one view per hash (#/person?q=...), each a module with
// `mount(main, params)` that may return a function to stop its refresh timer.
import { notice } from './lib.js';

const views = {
  person: () => import('./views/person.js'),
  timeline: () => import('./views/timeline.js'),
  queue: () => import('./views/queue.js'),
  sweeps: () => import('./views/sweeps.js'),
  batches: () => import('./views/batches.js'),
  mappings: () => import('./views/mappings.js'),
  throughput: () => import('./views/throughput.js'),
  erasures: () => import('./views/erasures.js'),
};

let stop;

async function show() {
  const [path, query = ''] = location.hash.replace(/^#\/?/, '').split('?');
  const name = views[path] ? path : 'person';
  const params = new URLSearchParams(query);
  for (const link of document.querySelectorAll('nav a')) {
    if (link.dataset.view === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (typeof stop === 'function') stop();
  stop = undefined;
  notice('');
  // a fresh <main> per view, so no listener of the previous view survives
  const old = document.getElementById('view');
  const main = old.cloneNode(false);
  old.replaceWith(main);
  main.dataset.view = name;
  try {
    const view = await views[name]();
    stop = await view.mount(main, params);
  } catch (error) {
    notice(error.message, 'bad');
  }
}

window.addEventListener('hashchange', show);
show();
