import { IpamDriver, ipamRpc, NetworkDriver, netwireRpc, pluginApiRpc, routerRpc } from '@weave/contracts';
import { generateCase } from '../src/cases';
import { acceptsPluginBody, acceptsRpc } from '../src/oracle';
import { allTargets, Fixture, Target } from '../src/targets';
import { render } from '../src/tree';

const fixture: Fixture = {
  host: 'h1',
  routerHost: 'h1-r',
  pool: '10.251.21.0/24',
  poolId: 'weave:10.251.21.0/24',
  gateway: '10.251.21.1/24',
  address: '10.251.21.2/24',
  networkId: 'a'.repeat(64),
  endpointId: 'b'.repeat(64),
};
const targets = allTargets(fixture);
const byName = new Map(targets.map((t) => [t.name, t]));
const SAMPLE = 1000;
const cases = Array.from({ length: SAMPLE }, (_, i) => generateCase(7, i, targets));

test('a case is a function of the seed and its index alone', () => {
  for (const i of [0, 1, 17, SAMPLE - 1]) {
    const again = generateCase(7, i, targets);
    expect(again).toEqual(cases[i]);
  }
  expect(generateCase(8, 17, targets)).not.toEqual(cases[17]);
});

test('every RPC method of every service, and every Docker method with a body, is a target', () => {
  const names = new Set(targets.map((t) => t.name));
  for (const [svc, def] of [['ipam', ipamRpc], ['netwire', netwireRpc], ['router', routerRpc], ['plugin-api', pluginApiRpc]] as const) {
    for (const m of Object.keys(def.methods)) expect(names).toContain(`nats ${svc}.${m}`);
    expect(names).toContain(`nats ${svc}.<unknown method>`);
  }
  for (const m of Object.keys(NetworkDriver)) expect(names).toContain(`plugin NetworkDriver.${m}`);
  for (const m of Object.keys(IpamDriver)) expect(names).toContain(`plugin IpamDriver.${m}`);
  expect(names).toContain('nats presence');
});

test('seeds are valid requests, and the schema-valid refusals are valid too: what makes a case bad is its mutation', () => {
  for (const t of targets) {
    if (t.kind === 'plugin') {
      expect({ t: t.name, ok: acceptsPluginBody(t.schema, Buffer.from(render(t.seed))) }).toEqual({ t: t.name, ok: true });
      for (const d of t.dangling) expect({ t: t.name, d: d.what, ok: acceptsPluginBody(t.schema, Buffer.from(render(d.body))) }).toEqual({ t: t.name, d: d.what, ok: true });
    }
    if (t.kind === 'rpc' && Object.keys(t.seed as object).length > 0) {
      expect({ t: t.name, ok: acceptsRpc(t.schema, Buffer.from(render(t.seed)), undefined) }).toEqual({ t: t.name, ok: true });
      for (const d of t.dangling) expect({ t: t.name, d: d.what, ok: acceptsRpc(t.schema, Buffer.from(render(d.body)), undefined) }).toEqual({ t: t.name, d: d.what, ok: true });
    }
    if (t.kind === 'publish') expect({ t: t.name, ok: t.accepts(Buffer.from(render(t.seed))) }).toEqual({ t: t.name, ok: true });
  }
});

test('every generated payload is one the service must refuse', () => {
  const mustRefuse = (t: Target, c: (typeof cases)[number]): boolean => {
    if (c.what.startsWith('schema-valid but refused')) return true;
    if (t.kind === 'plugin' && c.to === 'plugin') return !acceptsPluginBody(t.schema, c.body) || !!t.refusedAnyway?.(JSON.parse(c.body.toString()));
    if (t.kind === 'rpc' && c.to === 'nats') return !acceptsRpc(t.schema, c.data, c.deadline) || !!t.refusedAnyway?.(JSON.parse(c.data.toString()));
    if (t.kind === 'publish' && c.to === 'nats') return !t.accepts(c.data);
    return true; // unknown paths, verbs and methods, broken HTTP: refused whatever the body
  };
  const accepted = cases.filter((c) => !mustRefuse(byName.get(c.target)!, c)).map((c) => `${c.index} ${c.target}: ${c.what}`);
  expect(accepted).toEqual([]);
});

test('the hostile kinds each occur', () => {
  const seen = cases.map((c) => c.what).join('\n');
  for (const kind of ['wrong type', 'missing', 'extra field', 'huge string', 'deep nesting', 'bad value', 'odd string', 'not JSON', 'truncated', 'empty', 'invalid UTF-8', 'raw NUL', 'Content-Type', 'schema-valid but refused', 'Weave-Deadline', 'no reply subject']) {
    expect({ kind, seen: seen.includes(kind) }).toEqual({ kind, seen: true });
  }
  expect(cases.some((c) => c.to === 'plugin' && c.body.length > 1 << 20)).toBe(true);
});
