// SVG line/scatter plots and their PNG rendering: content, geometry (points land where the axis
// frame says they should), tick choice, input errors, determinism, and a PNG that sharp decodes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { niceTicks, plotSvg, PlotSeries, svgToPng } from '../src/report/plot';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function numbers(attr: string, svg: string, tag: string): number[][] {
  const re = new RegExp(`<${tag} ([^>]*)/?>`, 'g');
  return [...svg.matchAll(re)].map((m) => {
    const a = m[1];
    return attr.split(',').map((name) => Number(new RegExp(`\\b${name}="([-0-9.]+)"`).exec(a)![1]));
  });
}

test('niceTicks: round steps of 1, 2 or 5 times a power of ten covering the range', () => {
  const a = niceTicks(0, 1);
  assert.deepEqual(a.labels, ['0.0', '0.2', '0.4', '0.6', '0.8', '1.0']); // one precision per axis
  assert.equal(a.lo, 0);
  assert.equal(a.hi, 1);
  const b = niceTicks(0.3, 97);
  assert.deepEqual(b.values, [0, 20, 40, 60, 80, 100]);
  const c = niceTicks(-3, 3.5);
  assert.deepEqual(c.values, [-4, -2, 0, 2, 4]);
  assert.deepEqual(c.labels, ['-4', '-2', '0', '2', '4']);
  const d = niceTicks(41.3, 41.3); // one value: padded by 10% each side
  assert.ok(d.lo <= 41.3 - 4 && d.hi >= 41.3 + 4, `[${d.lo}, ${d.hi}]`);
  const e = niceTicks(0.1, 0.7); // 0.1 * 3 is 0.30000000000000004 in floats: the label must still read 0.3
  assert.ok(e.labels.includes('0.3'), e.labels.join(' '));
  assert.ok(e.values.every((v, i) => i === 0 || Math.abs(v - e.values[i - 1] - e.step) < 1e-12));
  assert.throws(() => niceTicks(NaN, 1), /invalid range/);
});

test('plotSvg: series, labels, title and legend are in the document; text is escaped', () => {
  const series: PlotSeries[] = [
    { label: 'fine-tuned -> pretrained', x: [0, 0.5, 1], y: [10, 12, 30] },
    { label: 'a < b & "c"', x: [0, 0.5, 1], y: [30, 25, 10], style: 'scatter' },
  ];
  const svg = plotSvg(series, { title: 'Chain of forgetting', xLabel: 'switch point', yLabel: 'FID' });
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
  assert.ok(svg.trimEnd().endsWith('</svg>'));
  for (const text of ['Chain of forgetting', 'switch point', 'FID', 'fine-tuned -&gt; pretrained', 'a &lt; b &amp; &quot;c&quot;']) {
    assert.ok(svg.includes(`>${text}<`), `missing text ${text}`);
  }
  assert.ok(!svg.includes('a < b'), 'raw < in text');
  assert.equal((svg.match(/<polyline /g) ?? []).length, 1, 'one line: the scatter series has none');
  // 3 markers for the line+markers series, 3 for the scatter one, plus one legend marker each.
  assert.equal((svg.match(/<circle /g) ?? []).length, 8);
});

test('plotSvg: points land on the axis frame at the ends of the data range', () => {
  // Data spanning exactly nice tick values: (0, 0) is the frame's bottom-left corner, (10, 100) its top-right.
  const svg = plotSvg([{ label: 's', x: [0, 5, 10], y: [0, 50, 100], style: 'scatter' }], { legend: false, width: 500, height: 300 });
  const frame = numbers('x,y,width,height', svg, 'rect').find((_, i, all) => i === all.length - 2)!; // the frame, before the clip rect
  const [fx, fy, fw, fh] = frame;
  const pts = numbers('cx,cy', svg, 'circle');
  assert.equal(pts.length, 3);
  const close = (a: number, b: number): void => assert.ok(Math.abs(a - b) <= 0.01, `${a} vs ${b}`);
  close(pts[0][0], fx);
  close(pts[0][1], fy + fh);
  close(pts[1][0], fx + fw / 2);
  close(pts[1][1], fy + fh / 2);
  close(pts[2][0], fx + fw);
  close(pts[2][1], fy);
});

test('plotSvg: error bars span y - err .. y + err and widen the axis', () => {
  const svg = plotSvg([{ label: 's', x: [0, 1], y: [50, 50], yErr: [50, 0] }], { legend: false });
  const bars = [...svg.matchAll(/<path d="M([-0-9.]+) ([-0-9.]+)V([-0-9.]+)/g)].map((m) => [Number(m[1]), Number(m[2]), Number(m[3])]);
  assert.equal(bars.length, 2);
  const [fx, fy, fw, fh] = numbers('x,y,width,height', svg, 'rect').slice(-2, -1)[0];
  // y range is 0..100 (50 +- 50), so the first bar runs from the bottom to the top of the frame.
  assert.ok(Math.abs(bars[0][0] - fx) < 0.01 && Math.abs(bars[0][1] - (fy + fh)) < 0.01 && Math.abs(bars[0][2] - fy) < 0.01, JSON.stringify(bars[0]));
  assert.ok(Math.abs(bars[1][0] - (fx + fw)) < 0.01 && bars[1][1] === bars[1][2], 'a zero error bar has no length');
});

test('plotSvg: empty or non-finite input gets a clear error', () => {
  assert.throws(() => plotSvg([]), /no series to plot/);
  assert.throws(() => plotSvg([{ label: 'empty', x: [], y: [] }]), /series 0 \('empty'\) is empty/);
  assert.throws(() => plotSvg([{ label: 'ok', x: [0], y: [1] }, { label: 'bad', x: [0, 1], y: [1, NaN] }]), /series 1 \('bad'\) has a non-finite y at index 1 \(NaN\)/);
  assert.throws(() => plotSvg([{ label: 'inf', x: [Infinity], y: [1] }]), /non-finite x at index 0/);
  assert.throws(() => plotSvg([{ label: 'len', x: [0, 1], y: [1] }]), /2 x values and 1 y values/);
  assert.throws(() => plotSvg([{ label: 'err', x: [0], y: [1], yErr: [-1] }]), /negative error bar/);
  assert.throws(() => plotSvg([{ label: 'err', x: [0], y: [1], yErr: [NaN] }]), /non-finite error bar/);
  assert.throws(() => plotSvg([{ label: 's', x: [0], y: [1] }], { xRange: [1, 0] }), /xRange must be/);
});

test('plotSvg is deterministic and does not modify its input', () => {
  const series: PlotSeries[] = [{ label: 'a', x: [0, 0.1, 0.2], y: [1 / 3, 2 / 3, 1], yErr: [0.1, 0.1, 0.1] }, { label: 'b', x: [0, 0.2], y: [0.5, 0.7] }];
  const copy = JSON.stringify(series);
  const first = plotSvg(series, { title: 't' });
  assert.equal(plotSvg(JSON.parse(copy) as PlotSeries[], { title: 't' }), first);
  assert.equal(JSON.stringify(series), copy);
  // A single point is drawn as a marker even in 'line' style.
  assert.equal((plotSvg([{ label: 'one', x: [3], y: [4], style: 'line' }], { legend: false }).match(/<circle /g) ?? []).length, 1);
});

test('svgToPng: a PNG of the SVG\'s size (or scaled) that shows the series colour', async () => {
  const svg = plotSvg([{ label: 'red', x: [0, 1], y: [0, 1], color: '#ff0000' }], { width: 320, height: 240 });
  const png = await svgToPng(svg);
  assert.deepEqual(png.subarray(0, 8), PNG_SIGNATURE);
  const meta = await sharp(png).metadata();
  assert.equal(meta.format, 'png');
  assert.equal(meta.width, 320);
  assert.equal(meta.height, 240);
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  let red = 0;
  for (let i = 0; i < info.width * info.height; i++) {
    const [r, g, b] = [data[i * info.channels], data[i * info.channels + 1], data[i * info.channels + 2]];
    if (r > 200 && g < 60 && b < 60) red++;
  }
  assert.ok(red > 100, `only ${red} red pixels: the line was not rendered`);
  const big = await sharp(await svgToPng(svg, { scale: 2 })).metadata();
  assert.equal(big.width, 640);
  assert.equal(big.height, 480);
  await assert.rejects(svgToPng('not svg'), /expected an SVG document/);
  await assert.rejects(svgToPng('<svg xmlns="http://www.w3.org/2000/svg"><rect'), /sharp could not render/);
});
