import type { HostReport, RouterStatus } from './views';

/**
 * `weave status --graph`: the mesh as a picture. `meshGraph` reads the hosts' reports into hosts
 * and the links between them; `meshSvg` draws that. Both are pure, so the picture of a given
 * mesh is always the same bytes.
 */

type PeerView = RouterStatus['peers'][number];

export type LinkKind = 'sleeve' | 'fastpath' | 'down';

/** up: ipam and netwire answered; degraded: some of it did; unreachable: nothing did, or never asked. */
export type HostState = 'up' | 'degraded' | 'unreachable';

export interface GraphHost {
  host: string;
  address: string | null;
  state: HostState;
  problems: string[];
}

/** What one side counted going one way, as decimal strings; null when neither side counts it. */
export interface Flow {
  from: string;
  to: string;
  bytes: string | null;
  frames: string | null;
}

export interface GraphLink {
  /** The two hosts, a before b by name. */
  a: string;
  b: string;
  kind: LinkKind;
  /** The MTUs the two sides report (one when they agree). */
  mtu: number[];
  flows: Flow[];
}

export interface MeshGraph {
  hosts: GraphHost[];
  links: GraphLink[];
}

/** The hosts that answered, the peers they named, and one link per pair of hosts either side knows of. */
export function meshGraph(reports: readonly HostReport[]): MeshGraph {
  const views = new Map<string, Map<string, PeerView>>(); // pair key -> viewer -> its view of the other
  const addresses = new Map<string, string>();
  for (const r of reports) {
    if (r.router) addresses.set(r.host, r.router.address);
    for (const p of r.router?.peers ?? []) {
      if (!addresses.has(p.host)) addresses.set(p.host, p.address);
      const key = pairKey(r.host, p.host);
      views.set(key, (views.get(key) ?? new Map<string, PeerView>()).set(r.host, p));
    }
  }
  const byHost = new Map(reports.map((r) => [r.host, r]));
  const names = [...new Set([...byHost.keys(), ...addresses.keys()])].sort(byName);
  const hosts = names.map((host): GraphHost => {
    const r = byHost.get(host);
    return { host, address: addresses.get(host) ?? null, state: r ? stateOf(r) : 'unreachable', problems: r?.problems ?? ['not asked: known only as a peer of another host'] };
  });
  const links = [...views.entries()]
    .map(([key, seen]) => linkOf(key, seen))
    .sort((x, y) => byName(x.a, y.a) || byName(x.b, y.b));
  return { hosts, links };
}

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const pairKey = (x: string, y: string): string => [x, y].sort(byName).join('\n');

function stateOf(r: HostReport): HostState {
  if (r.ipam && r.netwire) return r.problems.length ? 'degraded' : 'up';
  return r.ipam || r.netwire || r.router ? 'degraded' : 'unreachable';
}

/** Down unless every side that speaks of the link has it connected with a path; fast only when all say so. */
function linkOf(key: string, seen: Map<string, PeerView>): GraphLink {
  const [a, b] = key.split('\n') as [string, string];
  const vs = [...seen.values()];
  const working = vs.every((v) => v.state === 'connected' && v.path !== null);
  const kind: LinkKind = !working ? 'down' : vs.every((v) => v.path === 'fastpath') ? 'fastpath' : 'sleeve';
  const mtu = [...new Set(vs.flatMap((v) => (v.mtu === null ? [] : [v.mtu])))].sort((x, y) => x - y);
  const flows = [flow(a, b, seen), flow(b, a, seen)].filter((f) => f.bytes !== null || f.frames !== null);
  return { a, b, kind, mtu, flows };
}

/** from → to as the sender counted it, else as the receiver did. */
function flow(from: string, to: string, seen: Map<string, PeerView>): Flow {
  const sent = seen.get(from)?.traffic;
  const got = seen.get(to)?.traffic;
  return { from, to, bytes: sent?.bytesTo ?? got?.bytesFrom ?? null, frames: sent?.framesTo ?? got?.framesFrom ?? null };
}

const COLOURS: Record<LinkKind, string> = { sleeve: '#d35400', fastpath: '#1e8449', down: '#c0392b' };
const FILLS: Record<HostState, string> = { up: '#d6eaf8', degraded: '#fdebd0', unreachable: '#eeeeee' };
const NODE_R = 30;
/** Room around the circle for the names and addresses under the hosts. */
const MARGIN = 150;
const LINE = 14;

/** The graph as a standalone SVG document: hosts on a circle, a line per link, a legend. */
export function meshSvg(g: MeshGraph): string {
  const n = g.hosts.length;
  // Neighbours about 200 px apart along the circle, whatever the number of hosts.
  const radius = n <= 1 ? 0 : Math.max(200, Math.round((260 * n) / (2 * Math.PI)));
  const size = 2 * (radius + MARGIN);
  const c = radius + MARGIN;
  const centre = { x: c, y: c };
  const at = new Map(g.hosts.map((h, i) => [h.host, onCircle(centre, radius, i, n)]));
  const body = [
    el('rect', { width: size, height: size, fill: '#ffffff' }),
    ...legend(g),
    ...g.links.flatMap((l) => linkSvg(l, at.get(l.a)!, at.get(l.b)!, centre)),
    ...g.hosts.flatMap((h) => hostSvg(h, at.get(h.host)!, centre)),
  ];
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" viewBox="0 0 ${size} ${size}" font-family="sans-serif" font-size="12">`,
    ...body.map((line) => `  ${line}`),
    '</svg>',
    '',
  ].join('\n');
}

interface Point {
  x: number;
  y: number;
}

/** The i-th of n points on the circle, the first at the top, clockwise; rounded to 0.1 px. */
function onCircle(centre: Point, radius: number, i: number, n: number): Point {
  const angle = -Math.PI / 2 + (2 * Math.PI * i) / n;
  return { x: round(centre.x + radius * Math.cos(angle)), y: round(centre.y + radius * Math.sin(angle)) };
}

/** `p` moved `by` px towards `q` (never past it), or away from it when `by` is negative (down, from `q` itself). */
function towards(p: Point, q: Point, by: number): Point {
  const d = Math.hypot(q.x - p.x, q.y - p.y);
  if (d === 0) return by < 0 ? { x: p.x, y: round(p.y - by) } : p;
  const k = Math.min(by, d) / d;
  return { x: round(p.x + (q.x - p.x) * k), y: round(p.y + (q.y - p.y) * k) };
}

const round = (v: number): number => Math.round(v * 10) / 10 || 0;

function legend(g: MeshGraph): string[] {
  const title = `weave mesh: ${g.hosts.length} host${g.hosts.length === 1 ? '' : 's'}, ${g.links.length} link${g.links.length === 1 ? '' : 's'}`;
  const kinds = (['sleeve', 'fastpath', 'down'] as const).flatMap((k, i) => [
    el('line', { x1: 16, y1: 44 + i * 18, x2: 52, y2: 44 + i * 18, ...stroke(k) }),
    el('text', { x: 60, y: 48 + i * 18 }, k),
  ]);
  return [el('text', { x: 16, y: 24, 'font-size': 14, 'font-weight': 'bold' }, title), ...kinds];
}

const stroke = (k: LinkKind): Attrs => ({ stroke: COLOURS[k], 'stroke-width': 3, ...(k === 'down' ? { 'stroke-dasharray': '6 4' } : {}) });

function linkSvg(l: GraphLink, p: Point, q: Point, centre: Point): string[] {
  const lines = [[l.kind, ...(l.mtu.length ? [`MTU ${l.mtu.join('/')}`] : [])].join(' · '), ...l.flows.map(flowText)];
  // Off the line's middle towards the circle's centre, where there is room, clear of the hosts.
  const mid = towards({ x: (p.x + q.x) / 2, y: (p.y + q.y) / 2 }, centre, (lines.length * LINE) / 2 + 8);
  const top = round(mid.y - ((lines.length - 1) * LINE) / 2 + 4);
  const tspans = lines.map((t, i) => el('tspan', { x: mid.x, y: round(top + i * LINE) }, t)).join('');
  return [
    `<g>${el('title', {}, `${l.a} – ${l.b}: ${lines.join('; ')}`)}${el('line', { x1: p.x, y1: p.y, x2: q.x, y2: q.y, ...stroke(l.kind) })}</g>`,
    // A white outline under the letters keeps the label legible where it crosses a line.
    rawEl('text', { 'text-anchor': 'middle', 'font-size': 11, fill: '#222222', stroke: '#ffffff', 'stroke-width': 3, 'paint-order': 'stroke' }, tspans),
  ];
}

function flowText(f: Flow): string {
  const parts = [f.bytes === null ? null : bytes(f.bytes), f.frames === null ? null : `${count(f.frames)} frames`].filter((s) => s !== null);
  return `${f.from} → ${f.to}: ${parts.join(', ')}`;
}

/** A host: its circle, and its name, address and state outside the ring, away from the links. */
function hostSvg(h: GraphHost, p: Point, centre: Point): string[] {
  const tip = [`${h.host}: ${h.state}`, ...h.problems].join('\n');
  const circle = el('circle', { cx: p.x, cy: p.y, r: NODE_R, fill: FILLS[h.state], stroke: '#2c3e50', 'stroke-width': 2, ...(h.state === 'unreachable' ? { 'stroke-dasharray': '4 3' } : {}) });
  const lines: Array<[string, Attrs]> = [
    [h.host, { 'font-weight': 'bold' }],
    [h.address ?? 'address unknown', { fill: '#555555' }],
    ...(h.state === 'up' ? [] : [[h.state, { fill: '#c0392b' }] as [string, Attrs]]),
  ];
  const out = towards(p, centre, -(NODE_R + 10));
  const dx = out.x - p.x;
  const dy = out.y - p.y;
  const anchor = Math.abs(dx) < NODE_R / 2 ? 'middle' : dx > 0 ? 'start' : 'end';
  // Above a host at the top, below one at the bottom, centred on one at the side.
  const first = dy < -NODE_R / 2 ? out.y - (lines.length - 1) * LINE : dy > NODE_R / 2 ? out.y + 10 : out.y + 4 - ((lines.length - 1) * LINE) / 2;
  const texts = lines.map(([t, a], i) => el('text', { x: out.x, y: round(first + i * LINE), 'text-anchor': anchor, ...a }, t));
  return [`<g>${el('title', {}, tip)}${circle}${texts.join('')}</g>`];
}

/** "117.7 MiB": a byte counter at a glance (1024-based, one decimal). */
export function bytes(decimal: string): string {
  return scaled(decimal, 1024, ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']);
}

/** "83.4k": a counter at a glance. */
export function count(decimal: string): string {
  return scaled(decimal, 1000, ['', 'k', 'M', 'G', 'T', 'P']).replace(' ', '');
}

function scaled(decimal: string, step: number, units: readonly string[]): string {
  let v = Number(decimal);
  let u = 0;
  while (v >= step && u < units.length - 1) (v /= step), u++;
  return u === 0 ? `${v} ${units[0]}`.trimEnd() : `${v.toFixed(1)} ${units[u]}`;
}

type Attrs = Record<string, string | number>;

/** An element whose text is escaped. */
function el(name: string, attrs: Attrs, text?: string): string {
  return rawEl(name, attrs, text === undefined ? undefined : escapeXml(text));
}

/** An element around markup already made safe. */
function rawEl(name: string, attrs: Attrs, inner?: string): string {
  const a = Object.entries(attrs)
    .map(([k, v]) => ` ${k}="${escapeXml(String(v))}"`)
    .join('');
  return inner === undefined ? `<${name}${a}/>` : `<${name}${a}>${inner}</${name}>`;
}

/** Text safe in XML content and attribute values; characters XML 1.0 cannot hold become U+FFFD. */
export function escapeXml(s: string): string {
  return s
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '\ufffd')
    .replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}
