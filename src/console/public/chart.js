// Small inline SVG charts (no library): bars for counts, a line for a second series, with a
// text alternative for screen readers. Values are numbers; labels are strings.
import { escape, html, raw } from './lib.js';

/**
 * @param {{ title: string, labels: string[], bars: { name: string, values: number[], className: string }[], line?: { name: string, values: number[], unit: string } }} o
 */
export function barLineChart(o) {
  const width = 720;
  const height = 200;
  const pad = { left: 44, right: 44, top: 12, bottom: 28 };
  const n = Math.max(1, o.labels.length);
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const stacked = o.labels.map((_, i) => o.bars.reduce((sum, b) => sum + (b.values[i] ?? 0), 0));
  const maxBar = Math.max(1, ...stacked);
  const maxLine = Math.max(1e-9, ...(o.line?.values ?? [0]));
  const slot = plotW / n;
  const barW = Math.max(2, Math.min(28, slot * 0.7));
  let shapes = '';
  o.labels.forEach((label, i) => {
    let y = pad.top + plotH;
    for (const b of o.bars) {
      const v = b.values[i] ?? 0;
      const h = (v / maxBar) * plotH;
      y -= h;
      if (h > 0) shapes += `<rect class="${escape(b.className)}" x="${(pad.left + i * slot + (slot - barW) / 2).toFixed(1)}" y="${y.toFixed(1)}" width="${barW.toFixed(1)}" height="${h.toFixed(1)}"><title>${escape(label)}: ${escape(b.name)} ${v}</title></rect>`;
    }
  });
  if (o.line && o.line.values.length) {
    const points = o.line.values.map((v, i) => `${(pad.left + i * slot + slot / 2).toFixed(1)},${(pad.top + plotH - (v / maxLine) * plotH).toFixed(1)}`);
    shapes += `<polyline class="line" fill="none" points="${points.join(' ')}"/>`;
    shapes += o.line.values
      .map((v, i) => `<circle class="dot" r="3" cx="${(pad.left + i * slot + slot / 2).toFixed(1)}" cy="${(pad.top + plotH - (v / maxLine) * plotH).toFixed(1)}"><title>${escape(o.labels[i])}: ${escape(o.line.name)} ${v.toFixed(1)} ${escape(o.line.unit)}</title></circle>`)
      .join('');
  }
  const axis = `<line class="axis" x1="${pad.left}" y1="${pad.top + plotH}" x2="${width - pad.right}" y2="${pad.top + plotH}"/>
<text class="tick" x="${pad.left - 6}" y="${pad.top + 10}" text-anchor="end">${maxBar}</text><text class="tick" x="${pad.left - 6}" y="${pad.top + plotH}" text-anchor="end">0</text>
${o.line ? `<text class="tick line-tick" x="${width - pad.right + 6}" y="${pad.top + 10}">${escape(maxLine.toFixed(1))} ${escape(o.line.unit)}</text>` : ''}
<text class="tick" x="${pad.left}" y="${height - 8}">${escape(o.labels[0] ?? '')}</text><text class="tick" x="${width - pad.right}" y="${height - 8}" text-anchor="end">${escape(o.labels.at(-1) ?? '')}</text>`;
  const legend = html`<p class="legend">${o.bars.map((b) => html`<span class="key ${b.className}"></span>${b.name} `)}${o.line ? html`<span class="key line"></span>${o.line.name}` : ''}</p>`;
  return html`<figure class="chart"><svg viewBox="0 0 ${width} ${height}" role="img" aria-label="${o.title}">${raw(axis + shapes)}</svg><figcaption>${o.title}</figcaption>${legend}</figure>`;
}
