import { Family, parseSamples, render, series } from '../src/exposition';
import { Registry, serviceRegistry } from '../src/registry';

describe('render', () => {
  it('writes HELP and TYPE once per family, then its samples, escaping help text and label values', () => {
    const families: Family[] = [
      { name: 'weave_x_total', help: 'A help with a \\ backslash\nand a second line', type: 'counter', samples: [{ labels: {}, value: 3 }] },
      {
        name: 'weave_y',
        help: 'Quotes "stay" in help',
        type: 'gauge',
        samples: [
          { labels: { peer: 'a"b\\c\nd', path: 'sleeve' }, value: 1.5 },
          { labels: { peer: 'big', path: 'sleeve' }, value: 18446744073709551615n },
          { labels: { peer: 'odd', path: 'sleeve' }, value: NaN },
          { labels: { peer: 'up', path: 'sleeve' }, value: Infinity },
          { labels: { peer: 'down', path: 'sleeve' }, value: -Infinity },
        ],
      },
      { name: 'weave_empty', help: 'Nothing yet', type: 'gauge', samples: [] },
    ];
    expect(render(families)).toBe(
      [
        '# HELP weave_x_total A help with a \\\\ backslash\\nand a second line',
        '# TYPE weave_x_total counter',
        'weave_x_total 3',
        '# HELP weave_y Quotes "stay" in help',
        '# TYPE weave_y gauge',
        'weave_y{peer="a\\"b\\\\c\\nd",path="sleeve"} 1.5',
        'weave_y{peer="big",path="sleeve"} 18446744073709551615',
        'weave_y{peer="odd",path="sleeve"} NaN',
        'weave_y{peer="up",path="sleeve"} +Inf',
        'weave_y{peer="down",path="sleeve"} -Inf',
        '# HELP weave_empty Nothing yet',
        '# TYPE weave_empty gauge',
        '',
      ].join('\n'),
    );
  });

  it('refuses names the format cannot carry, and a family twice', () => {
    const f = (name: string, labels: Record<string, string> = {}): Family => ({ name, help: 'h', type: 'gauge', samples: [{ labels, value: 1 }] });
    expect(() => render([f('weave-x')])).toThrow(/not a Prometheus metric name/);
    expect(() => render([f('weave_x', { 'bad-label': 'v' })])).toThrow(/not a label name/);
    expect(() => render([f('weave_x', { __reserved: 'v' })])).toThrow(/not a label name/);
    expect(() => render([f('weave_x'), f('weave_x')])).toThrow(/twice/);
    expect(render([])).toBe('');
  });
});

describe('Registry', () => {
  it('renders counters, gauges, histograms (cumulative buckets, +Inf, _sum, _count) and collected families in order', async () => {
    const r = serviceRegistry('router', 'h1');
    const calls = r.counter({ name: 'weave_calls_total', help: 'Calls', labels: ['method'] });
    const idle = r.counter({ name: 'weave_idle_total', help: 'Never incremented' });
    const temp = r.gauge({ name: 'weave_level', help: 'A level', labels: ['where'] });
    const took = r.histogram({ name: 'weave_took_seconds', help: 'Durations', labels: ['method'], buckets: [0.1, 1, 2.5] });
    r.collect(async () => [{ name: 'weave_peers', help: 'Peers', type: 'gauge', samples: [{ labels: { state: 'connected' }, value: 2 }] }]);
    calls.inc({ method: 'a' });
    calls.inc({ method: 'b' }, 2);
    calls.inc({ method: 'a' });
    temp.set({ where: 'x' }, -4);
    for (const v of [0.05, 0.1, 0.7, 3]) took.observe({ method: 'a' }, v);
    expect(idle.name).toBe('weave_idle_total');
    expect(await r.text()).toBe(`# HELP weave_service_info Always 1: the service and host these metrics are from
# TYPE weave_service_info gauge
weave_service_info{service="router",host="h1"} 1
# HELP weave_calls_total Calls
# TYPE weave_calls_total counter
weave_calls_total{method="a"} 2
weave_calls_total{method="b"} 2
# HELP weave_idle_total Never incremented
# TYPE weave_idle_total counter
weave_idle_total 0
# HELP weave_level A level
# TYPE weave_level gauge
weave_level{where="x"} -4
# HELP weave_took_seconds Durations
# TYPE weave_took_seconds histogram
weave_took_seconds_bucket{method="a",le="0.1"} 2
weave_took_seconds_bucket{method="a",le="1"} 3
weave_took_seconds_bucket{method="a",le="2.5"} 3
weave_took_seconds_bucket{method="a",le="+Inf"} 4
weave_took_seconds_sum{method="a"} 3.85
weave_took_seconds_count{method="a"} 4
# HELP weave_peers Peers
# TYPE weave_peers gauge
weave_peers{state="connected"} 2
`);
  });

  it('keeps label values in declared order whatever order they are given in', async () => {
    const r = new Registry();
    const c = r.counter({ name: 'weave_drops_total', help: 'Drops', labels: ['path', 'reason'] });
    c.inc({ reason: 'runt', path: 'sleeve' });
    expect(parseSamples(await r.text())[series('weave_drops_total', { path: 'sleeve', reason: 'runt' })]).toBe(1);
  });

  it('refuses what would make a wrong exposition', () => {
    const r = new Registry();
    expect(() => r.counter({ name: 'weave_calls', help: 'h' })).toThrow(/ends in _total/);
    const c = r.counter({ name: 'weave_calls_total', help: 'h', labels: ['method'] });
    expect(() => r.gauge({ name: 'weave_calls_total', help: 'h' })).toThrow(/twice/);
    expect(() => c.inc({ method: 'a' }, -1)).toThrow(/cannot go down/);
    expect(() => c.inc({ method: 'a', extra: 'x' } as never)).toThrow(/takes the labels \[method\]/);
    expect(() => r.histogram({ name: 'weave_h_seconds', help: 'h', buckets: [1, 0.5] })).toThrow(/ascending/);
    expect(() => r.histogram({ name: 'weave_h_seconds', help: 'h', labels: ['le'] })).toThrow(/"le"/);
  });
});

test('parseSamples reads back what render wrote', () => {
  const text = render([
    { name: 'weave_a', help: 'h', type: 'gauge', samples: [{ labels: { x: 'y' }, value: 2.5 }, { labels: {}, value: Infinity }] },
  ]);
  expect(parseSamples(text)).toEqual({ 'weave_a{x="y"}': 2.5, weave_a: Infinity });
});
