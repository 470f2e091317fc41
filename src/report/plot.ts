// Line and scatter plots as standalone SVG (axes, ticks, labels, legend, error bars), and SVG ->
// PNG through sharp, for reports that must render without a browser. The output is a pure
// function of the input (fixed palette, coordinates rounded to 0.01 px), so plots diff cleanly.
import sharp from 'sharp';

export type SeriesStyle = 'line' | 'scatter' | 'line+markers';

export interface PlotSeries {
  /** The legend entry. */
  label: string;
  x: readonly number[];
  y: readonly number[];
  /** Symmetric error bars: y[i] ± yErr[i] (same length as y, each >= 0). */
  yErr?: readonly number[];
  /** Default 'line+markers'. */
  style?: SeriesStyle;
  /** Any SVG colour; default the palette colour of the series' position. */
  color?: string;
  /** Draw the line dashed. */
  dashed?: boolean;
}

export interface PlotOptions {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  /** Canvas size in px (default 640 x 420). */
  width?: number;
  height?: number;
  /** Force an axis range (otherwise the data's, error bars included, widened to nice ticks). */
  xRange?: readonly [number, number];
  yRange?: readonly [number, number];
  /** Default true. */
  legend?: boolean;
}

/** Tableau 10: distinguishable, also for the common forms of colour blindness. */
const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif';
const LEGEND_ROW = 18;

/** Escapes text for SVG element content and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** 1, 2 or 5 times a power of ten, nearest above x / count-ish (Heckbert's "nice numbers"). */
function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

/** Decimal places that show a multiple of step exactly. */
function decimalsFor(step: number): number {
  return Math.min(12, Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
}

export interface Ticks {
  /** The axis range: lo and hi widened to multiples of step. */
  lo: number;
  hi: number;
  step: number;
  values: number[];
  labels: string[];
}

/** About `count` evenly spaced round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 6): Ticks {
  if (!Number.isFinite(lo) || !Number.isFinite(hi) || lo > hi) throw new RangeError(`niceTicks: invalid range [${lo}, ${hi}]`);
  if (lo === hi) {
    // One value: give it room on both sides.
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const step = niceStep(hi - lo, count);
  // Small tolerance so that 0.30000000000000004 still counts as the tick 0.3.
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  const decimals = decimalsFor(step);
  const values: number[] = [];
  for (let k = first; k <= last; k++) values.push(Number((k * step).toFixed(decimals)));
  return { lo: values[0], hi: values[values.length - 1], step, values, labels: values.map((v) => formatTick(v, decimals)) };
}

function formatTick(v: number, decimals: number): string {
  const s = v.toFixed(decimals);
  return s === '-0' || /^-0\.0*$/.test(s) ? s.slice(1) : s;
}

function checkSeries(series: readonly PlotSeries[]): void {
  if (!Array.isArray(series) || series.length === 0) throw new RangeError('plotSvg: no series to plot (expected at least one)');
  series.forEach((s, k) => {
    const name = `series ${k} ('${s?.label}')`;
    if (typeof s?.label !== 'string') throw new TypeError(`plotSvg: series ${k} has no string label`);
    if (!s.x || !s.y || s.x.length !== s.y.length) {
      throw new RangeError(`plotSvg: ${name} has ${s.x?.length} x values and ${s.y?.length} y values (expected equal counts)`);
    }
    if (s.x.length === 0) throw new RangeError(`plotSvg: ${name} is empty (expected at least one point)`);
    const check = (arr: readonly number[], what: string): void => {
      arr.forEach((v, i) => {
        if (typeof v !== 'number' || !Number.isFinite(v)) throw new RangeError(`plotSvg: ${name} has a non-finite ${what} at index ${i} (${v})`);
      });
    };
    check(s.x, 'x');
    check(s.y, 'y');
    if (s.yErr !== undefined) {
      if (s.yErr.length !== s.y.length) throw new RangeError(`plotSvg: ${name} has ${s.yErr.length} error bars for ${s.y.length} points`);
      check(s.yErr, 'error bar');
      s.yErr.forEach((e: number, i: number) => { if (e < 0) throw new RangeError(`plotSvg: ${name} has a negative error bar at index ${i} (${e})`); });
    }
    if (s.style !== undefined && !['line', 'scatter', 'line+markers'].includes(s.style)) {
      throw new RangeError(`plotSvg: ${name} has style '${s.style}' (expected line, scatter or line+markers)`);
    }
  });
}

function checkRange(r: readonly [number, number] | undefined, what: string): void {
  if (r === undefined) return;
  if (r.length !== 2 || !Number.isFinite(r[0]) || !Number.isFinite(r[1]) || !(r[0] < r[1])) {
    throw new RangeError(`plotSvg: ${what} must be two finite numbers [lo, hi] with lo < hi, got [${r}]`);
  }
}

function extent(values: number[]): [number, number] {
  return [Math.min(...values), Math.max(...values)];
}

/** Fixed-precision coordinate (deterministic and compact). */
function c(v: number): string {
  return String(Math.round(v * 100) / 100);
}

/** A plot of one or more series as a standalone SVG document. Throws on empty series or non-finite values. */
export function plotSvg(series: readonly PlotSeries[], o: PlotOptions = {}): string {
  checkSeries(series);
  checkRange(o.xRange, 'xRange');
  checkRange(o.yRange, 'yRange');
  const width = o.width ?? 640;
  const height = o.height ?? 420;
  const legend = o.legend ?? true;
  const xs = series.flatMap((s) => [...s.x]);
  const ys = series.flatMap((s) => s.y.flatMap((v, i) => (s.yErr ? [v - s.yErr[i], v + s.yErr[i]] : [v])));
  const xt = o.xRange ? niceTicksWithin(o.xRange) : niceTicks(...extent(xs));
  const yt = o.yRange ? niceTicksWithin(o.yRange) : niceTicks(...extent(ys));

  const left = 72;
  const right = 24;
  const top = o.title ? 40 : 16;
  const bottom = 48 + (legend ? 8 + LEGEND_ROW * series.length : 0);
  const pw = width - left - right;
  const ph = height - top - bottom;
  if (pw < 40 || ph < 40) throw new RangeError(`plotSvg: a ${width}x${height} canvas leaves no room for the plot (${series.length} legend rows)`);
  const px = (v: number): number => left + ((v - xt.lo) / (xt.hi - xt.lo)) * pw;
  const py = (v: number): number => top + ph - ((v - yt.lo) / (yt.hi - yt.lo)) * ph;

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${FONT}" font-size="12">`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  if (o.title) out.push(`<text x="${c(left + pw / 2)}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(o.title)}</text>`);

  // Grid and ticks.
  for (let i = 0; i < xt.values.length; i++) {
    const x = px(xt.values[i]);
    out.push(`<line x1="${c(x)}" y1="${c(top)}" x2="${c(x)}" y2="${c(top + ph)}" stroke="#e6e6e6"/>`);
    out.push(`<line x1="${c(x)}" y1="${c(top + ph)}" x2="${c(x)}" y2="${c(top + ph + 5)}" stroke="#333333"/>`);
    out.push(`<text x="${c(x)}" y="${c(top + ph + 18)}" text-anchor="middle">${escapeXml(xt.labels[i])}</text>`);
  }
  for (let i = 0; i < yt.values.length; i++) {
    const y = py(yt.values[i]);
    out.push(`<line x1="${c(left)}" y1="${c(y)}" x2="${c(left + pw)}" y2="${c(y)}" stroke="#e6e6e6"/>`);
    out.push(`<line x1="${c(left - 5)}" y1="${c(y)}" x2="${c(left)}" y2="${c(y)}" stroke="#333333"/>`);
    out.push(`<text x="${c(left - 8)}" y="${c(y + 4)}" text-anchor="end">${escapeXml(yt.labels[i])}</text>`);
  }
  out.push(`<rect x="${c(left)}" y="${c(top)}" width="${c(pw)}" height="${c(ph)}" fill="none" stroke="#333333"/>`);
  if (o.xLabel) out.push(`<text x="${c(left + pw / 2)}" y="${c(top + ph + 38)}" text-anchor="middle" font-size="13">${escapeXml(o.xLabel)}</text>`);
  if (o.yLabel) {
    const cx = 18;
    const cy = top + ph / 2;
    out.push(`<text x="${c(cx)}" y="${c(cy)}" text-anchor="middle" font-size="13" transform="rotate(-90 ${c(cx)} ${c(cy)})">${escapeXml(o.yLabel)}</text>`);
  }

  // Data, clipped to the plot area (a forced range may cut it).
  // (Widened by a marker's size, so that points on the frame are drawn whole.)
  out.push(`<defs><clipPath id="plot-area"><rect x="${c(left - 6)}" y="${c(top - 6)}" width="${c(pw + 12)}" height="${c(ph + 12)}"/></clipPath></defs>`);
  out.push('<g clip-path="url(#plot-area)">');
  series.forEach((s, k) => {
    const color = escapeXml(s.color ?? PALETTE[k % PALETTE.length]);
    const style = s.style ?? 'line+markers';
    out.push(`<g class="series" data-label="${escapeXml(s.label)}">`);
    if (s.yErr) {
      s.y.forEach((v, i) => {
        const x = px(s.x[i]);
        const y1 = py(v - s.yErr![i]);
        const y2 = py(v + s.yErr![i]);
        out.push(`<path d="M${c(x)} ${c(y1)}V${c(y2)}M${c(x - 4)} ${c(y1)}H${c(x + 4)}M${c(x - 4)} ${c(y2)}H${c(x + 4)}" stroke="${color}" fill="none"/>`);
      });
    }
    if (style !== 'scatter' && s.x.length > 1) {
      const points = s.x.map((x, i) => `${c(px(x))},${c(py(s.y[i]))}`).join(' ');
      out.push(`<polyline points="${points}" fill="none" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    }
    if (style !== 'line' || s.x.length === 1) {
      s.x.forEach((x, i) => out.push(`<circle cx="${c(px(x))}" cy="${c(py(s.y[i]))}" r="3.5" fill="${color}"/>`));
    }
    out.push('</g>');
  });
  out.push('</g>');

  if (legend) {
    const y0 = top + ph + 48 + 8;
    series.forEach((s, k) => {
      const color = escapeXml(s.color ?? PALETTE[k % PALETTE.length]);
      const y = y0 + k * LEGEND_ROW;
      const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
      if ((s.style ?? 'line+markers') !== 'scatter') out.push(`<line x1="${c(left)}" y1="${c(y)}" x2="${c(left + 24)}" y2="${c(y)}" stroke="${color}" stroke-width="2"${dash}/>`);
      if ((s.style ?? 'line+markers') !== 'line') out.push(`<circle cx="${c(left + 12)}" cy="${c(y)}" r="3.5" fill="${color}"/>`);
      out.push(`<text x="${c(left + 32)}" y="${c(y + 4)}">${escapeXml(s.label)}</text>`);
    });
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Ticks for a forced range: nice values inside it, the range itself kept as the axis. */
function niceTicksWithin(r: readonly [number, number]): Ticks {
  const t = niceTicks(r[0], r[1]);
  const keep = t.values.map((v, i) => [v, t.labels[i]] as const).filter(([v]) => v >= r[0] - 1e-12 * t.step && v <= r[1] + 1e-12 * t.step);
  return { lo: r[0], hi: r[1], step: t.step, values: keep.map(([v]) => v), labels: keep.map(([, l]) => l) };
}

export interface SvgToPngOptions {
  /** Pixels per SVG unit (default 1: the PNG has the SVG's width and height). */
  scale?: number;
}

/** Renders an SVG document to PNG bytes with sharp (librsvg). */
export async function svgToPng(svg: string, o: SvgToPngOptions = {}): Promise<Buffer> {
  const scale = o.scale ?? 1;
  if (!(scale > 0) || !Number.isFinite(scale)) throw new RangeError(`svgToPng: scale must be a positive number, got ${scale}`);
  if (typeof svg !== 'string' || !/<svg[\s>]/.test(svg)) throw new TypeError('svgToPng: expected an SVG document (text containing an <svg> element)');
  try {
    // librsvg renders at 72 dpi: one SVG unit per pixel.
    return await sharp(Buffer.from(svg, 'utf8'), { density: 72 * scale }).png().toBuffer();
  } catch (e) {
    throw new Error(`svgToPng: sharp could not render the SVG: ${(e as Error).message}`, { cause: e });
  }
}
