/**
 * Prometheus' text exposition format, version 0.0.4: what a scrape of /metrics returns. Pure:
 * families in, text out (and back, for tests). See
 * https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
 */

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type MetricType = 'counter' | 'gauge' | 'histogram';
export type Labels = Readonly<Record<string, string>>;
/** A bigint prints exactly (the sleeve's counters are u64). */
export type Value = number | bigint;

export interface Sample {
  /** Appended to the family's name: a histogram's `_bucket`, `_sum` and `_count`. */
  suffix?: '_bucket' | '_sum' | '_count';
  labels: Labels;
  value: Value;
}

export interface Family {
  name: string;
  help: string;
  type: MetricType;
  samples: readonly Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Throws for a name the format cannot carry; `__` label names are Prometheus' own. */
export function checkNames(name: string, labelNames: readonly string[]): void {
  if (!METRIC_NAME.test(name)) throw new Error(`${JSON.stringify(name)} is not a Prometheus metric name`);
  for (const l of labelNames) {
    if (!LABEL_NAME.test(l) || l.startsWith('__')) throw new Error(`${name}: ${JSON.stringify(l)} is not a label name`);
  }
}

/** How many of `values` have each set of labels: a gauge sample per distinct set, in order of first appearance. */
export function countBy<V>(values: Iterable<V>, labelsOf: (v: V) => Labels): Sample[] {
  const counts = new Map<string, { labels: Labels; value: number }>();
  for (const v of values) {
    const labels = labelsOf(v);
    const key = JSON.stringify(labels);
    const c = counts.get(key);
    if (c) c.value++;
    else counts.set(key, { labels, value: 1 });
  }
  return [...counts.values()];
}

/** One sample per value of `label` (each of `values`, zeros too), counting the items that have it. */
export function countEach<T>(label: string, values: readonly string[], items: readonly T[], valueOf: (t: T) => string): Sample[] {
  return values.map((v) => ({ labels: { [label]: v }, value: items.filter((t) => valueOf(t) === v).length }));
}

/** HELP text escapes backslash and line feed; label values also the double quote. */
const escapeHelp = (s: string): string => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
const escapeLabel = (s: string): string => escapeHelp(s).replace(/"/g, '\\"');

/** Go's spelling of the special floats; integers without exponent or point. */
export function formatValue(v: Value): string {
  if (typeof v === 'bigint') return v.toString();
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function formatLabels(labels: Labels): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return pairs.length === 0 ? '' : `{${pairs.join(',')}}`;
}

/**
 * Every family once, HELP and TYPE first, then its samples; the text ends with a line feed.
 * Names are checked here too, so what a collector made up cannot break the format.
 */
export function render(families: readonly Family[]): string {
  const seen = new Set<string>();
  const lines: string[] = [];
  for (const f of families) {
    if (seen.has(f.name)) throw new Error(`metric ${f.name} rendered twice`);
    seen.add(f.name);
    checkNames(f.name, []);
    lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      checkNames(f.name, Object.keys(s.labels));
      lines.push(`${f.name}${s.suffix ?? ''}${formatLabels(s.labels)} ${formatValue(s.value)}`);
    }
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$/;

/**
 * The samples of an exposition, keyed by series as written (`name{a="x",b="y"}`), values as
 * numbers. For tests and tools reading our own output, not a general parser (no timestamps).
 */
export function parseSamples(text: string): Record<string, number> {
  const out: Array<[string, number]> = [];
  for (const line of text.split('\n')) {
    const m = line.startsWith('#') ? null : SAMPLE_LINE.exec(line);
    if (!m) continue;
    const v = m[3]!;
    out.push([`${m[1]}${m[2] ?? ''}`, v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v)]);
  }
  return Object.fromEntries(out);
}

/** The series key parseSamples uses, for a name and labels in the order they are written. */
export const series = (name: string, labels: Labels = {}): string => `${name}${formatLabels(labels)}`;
