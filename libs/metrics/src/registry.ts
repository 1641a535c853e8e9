import { checkNames, Family, Labels, render, Sample } from './exposition';

export interface InstrumentOptions<L extends string> {
  name: string;
  help: string;
  labels?: readonly L[];
}

/** Label values by name: every declared label, no other. */
export type LabelValues<L extends string> = Readonly<Record<L, string>>;

/** One series per combination of label values, kept in the declared label order. */
abstract class Instrument<L extends string, S> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  private readonly children = new Map<string, { labels: Labels; state: S }>();

  constructor(o: InstrumentOptions<L>) {
    this.name = o.name;
    this.help = o.help;
    this.labelNames = o.labels ?? [];
    checkNames(o.name, this.labelNames);
  }

  protected child(values: LabelValues<L>): S {
    const given = Object.keys(values);
    if (given.length !== this.labelNames.length || !this.labelNames.every((l) => typeof values[l] === 'string')) {
      throw new Error(`${this.name} takes the labels [${this.labelNames.join(', ')}], not [${given.join(', ')}]`);
    }
    const labels = Object.fromEntries(this.labelNames.map((l) => [l, values[l]]));
    const key = JSON.stringify(this.labelNames.map((l) => values[l]));
    let c = this.children.get(key);
    if (!c) this.children.set(key, (c = { labels, state: this.initial() }));
    return c.state;
  }

  protected abstract initial(): S;
  protected abstract samples(labels: Labels, state: S): Sample[];
  abstract readonly type: Family['type'];

  family(): Family {
    // An instrument without labels has its one series from the start, at zero.
    if (this.labelNames.length === 0) this.child({} as LabelValues<L>);
    return { name: this.name, help: this.help, type: this.type, samples: [...this.children.values()].flatMap((c) => this.samples(c.labels, c.state)) };
  }
}

/** One number per series. */
abstract class Scalar<L extends string> extends Instrument<L, { value: number }> {
  protected initial(): { value: number } {
    return { value: 0 };
  }
  protected samples(labels: Labels, s: { value: number }): Sample[] {
    return [{ labels, value: s.value }];
  }
}

/** Only goes up; its name ends in `_total`. */
export class Counter<L extends string = never> extends Scalar<L> {
  readonly type = 'counter';
  constructor(o: InstrumentOptions<L>) {
    if (!o.name.endsWith('_total')) throw new Error(`counter ${o.name}: a counter's name ends in _total`);
    super(o);
  }
  inc(labels: LabelValues<L> = {} as LabelValues<L>, by = 1): void {
    if (!(by >= 0)) throw new Error(`${this.name}: a counter cannot go down (inc by ${by})`);
    this.child(labels).value += by;
  }
}

export class Gauge<L extends string = never> extends Scalar<L> {
  readonly type = 'gauge';
  set(labels: LabelValues<L>, value: number): void {
    this.child(labels).value = value;
  }
}

interface HistogramState {
  /** Observations per bucket (not cumulative), the last for those above every bound. */
  counts: number[];
  sum: number;
  count: number;
}

/** Seconds, from a millisecond to half a minute: Docker calls, RPCs. */
export const LATENCY_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Cumulative `_bucket` series up to `le="+Inf"`, then `_sum` and `_count`. */
export class Histogram<L extends string = never> extends Instrument<L, HistogramState> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];

  constructor(o: InstrumentOptions<L> & { buckets?: readonly number[] }) {
    const buckets = o.buckets ?? LATENCY_BUCKETS;
    if (buckets.length === 0 || buckets.some((b, i) => !Number.isFinite(b) || (i > 0 && b <= buckets[i - 1]!))) {
      throw new Error(`histogram ${o.name}: buckets must be finite and ascending`);
    }
    if ((o.labels as readonly string[] | undefined)?.includes('le')) throw new Error(`histogram ${o.name}: "le" is the buckets' own label`);
    super(o);
    this.buckets = buckets;
  }

  observe(labels: LabelValues<L>, value: number): void {
    const s = this.child(labels);
    const i = this.buckets.findIndex((b) => value <= b);
    s.counts[i === -1 ? this.buckets.length : i]!++;
    s.sum += value;
    s.count++;
  }

  protected initial(): HistogramState {
    return { counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
  }

  protected samples(labels: Labels, s: HistogramState): Sample[] {
    let cumulative = 0;
    const buckets = this.buckets.map((le, i) => {
      cumulative += s.counts[i]!;
      return { suffix: '_bucket' as const, labels: { ...labels, le: String(le) }, value: cumulative };
    });
    return [
      ...buckets,
      { suffix: '_bucket', labels: { ...labels, le: '+Inf' }, value: s.count },
      { suffix: '_sum', labels, value: s.sum },
      { suffix: '_count', labels, value: s.count },
    ];
  }
}

/** Families computed at scrape time from state the service keeps anyway. */
export type Collector = () => Family[] | Promise<Family[]>;

/**
 * One service's metrics: instruments it updates as things happen, and collectors that read its
 * state when scraped. Rendered in the order registered.
 */
export class Registry {
  private readonly sources: Array<{ names: string[]; collect: Collector }> = [];

  counter<L extends string = never>(o: InstrumentOptions<L>): Counter<L> {
    return this.add(new Counter(o));
  }
  gauge<L extends string = never>(o: InstrumentOptions<L>): Gauge<L> {
    return this.add(new Gauge(o));
  }
  histogram<L extends string = never>(o: InstrumentOptions<L> & { buckets?: readonly number[] }): Histogram<L> {
    return this.add(new Histogram(o));
  }

  collect(collect: Collector): void {
    this.sources.push({ names: [], collect });
  }

  async families(): Promise<Family[]> {
    return (await Promise.all(this.sources.map((s) => s.collect()))).flat();
  }

  async text(): Promise<string> {
    return render(await this.families());
  }

  private add<I extends { name: string; family(): Family }>(i: I): I {
    if (this.sources.some((s) => s.names.includes(i.name))) throw new Error(`metric ${i.name} registered twice`);
    this.sources.push({ names: [i.name], collect: () => [i.family()] });
    return i;
  }
}

/** A service's registry, opening with `weave_service_info{service,host} 1`: whose metrics a scrape holds. */
export function serviceRegistry(service: string, host: string): Registry {
  const r = new Registry();
  r.gauge({ name: 'weave_service_info', help: 'Always 1: the service and host these metrics are from', labels: ['service', 'host'] }).set({ service, host }, 1);
  return r;
}
