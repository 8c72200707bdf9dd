// Erasures: the erasure list (pseudonyms only, never an id or an email) and, for an admin token,
// "lift" per entry: from then on the sweep and webhooks may link and log the person again.
import { canAdminister, escape, gql, html, notice, raw, render, table, when } from '../lib.js';

const QUERY = '{ erasures { id createdAt identifiers { kind pseudonym } } }';
const LIFT = 'mutation($id: ID!) { liftErasure(erasureId: $id) { ok error lifted } }';

export async function mount(main) {
  render(
    main,
    html`<h2 class="view-title">Erasures</h2>
<p class="muted">People erased with forgetPerson stay erased: the sweep, webhooks, matching and Sync Person skip them until an admin lifts the entry.</p>
<div id="erasures" aria-live="polite"></div>`,
  );
  async function load() {
    const erasures = (await gql(QUERY)).erasures;
    render(
      main.querySelector('#erasures'),
      table(
        ['Erased', 'Identifiers (pseudonyms)', ''],
        erasures.map((e) => [
          when(e.createdAt),
          html`${e.identifiers.map((i) => html`<code>${i.pseudonym}</code> <span class="muted">${i.kind.toLowerCase().replace('_', ' ')}</span><br>`)}`,
          canAdminister()
            ? raw(`<button type="button" class="action" data-lift="${escape(e.id)}">Lift</button>`)
            : raw('<button type="button" class="action" disabled title="lifting an erasure needs an admin token">Lift</button>'),
        ]),
        'Nobody has been erased.',
      ),
    );
  }
  main.addEventListener('click', async (event) => {
    const button = event.target.closest('button[data-lift]');
    if (!button) return;
    button.disabled = true;
    try {
      const { liftErasure: r } = await gql(LIFT, { id: button.dataset.lift });
      if (!r.ok) throw new Error(r.error);
      notice(`Erasure lifted (${r.lifted} identifiers): the person syncs again.`, 'ok');
      await load();
    } catch (error) {
      notice(error.message, 'bad');
      if (button.isConnected) button.disabled = false;
    }
  });
  await load();
}
