import { z } from 'zod';
import { badValueFor, deepNesting, hugeString, ODD_KEYS, ODD_STRINGS, typeOf, wrongType } from './hostile';
import type { Rng } from './rng';
import { copy, getAt, isObject, Path, pathsOf, render, setKey, Tree, updateAt } from './tree';

/** A malformed payload and what was done to it, for the report and for a replay. */
export interface Payload {
  bytes: Buffer;
  what: string;
}

/**
 * The fields a schema declares, as paths (an array's element as index 0), so that optional
 * fields the seed leaves out are attacked too.
 */
export function schemaPaths(schema: z.ZodType, prefix: Path = []): Path[] {
  const s = unwrap(schema);
  if (s instanceof z.ZodObject) return Object.entries(s.shape as Record<string, z.ZodType>).flatMap(([k, v]) => [[...prefix, k], ...schemaPaths(v, [...prefix, k])]);
  if (s instanceof z.ZodArray) return schemaPaths(s.element as z.ZodType, [...prefix, 0]);
  return [];
}

function unwrap(s: z.ZodType): z.ZodType {
  if (s instanceof z.ZodOptional || s instanceof z.ZodNullable || s instanceof z.ZodDefault) return unwrap(s.unwrap() as z.ZodType);
  if (s instanceof z.ZodPipe) return unwrap(s.in as z.ZodType);
  return s;
}

const show = (path: Path): string => (path.length === 0 ? '(root)' : path.map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`)).join('').replace(/^\./, ''));
const brief = (t: Tree | undefined): string => {
  const s = t === undefined ? 'absent' : render(t);
  return s.length > 40 ? `${JSON.stringify(s.slice(0, 24))}… (${s.length} chars)` : s;
};

type FieldOp = (r: Rng, t: Tree, path: Path, maxBytes: number) => string;

const FIELD_OPS: Record<string, FieldOp> = {
  'wrong type': (r, t, p) => set(t, p, wrongType(r, getAt(t, p))),
  missing: (_r, t, p) => (updateAt(t, p, undefined), `${show(p)} removed`),
  'bad value': (r, t, p) => set(t, p, badValueFor(r, p[p.length - 1] ?? '', getAt(t, p))),
  'odd string': (r, t, p) => set(t, p, r.pick(ODD_STRINGS)),
  'huge string': (r, t, p, max) => set(t, p, hugeString(r, max)),
  'deep nesting': (r, t, p) => set(t, p, deepNesting(r)),
  null: (_r, t, p) => set(t, p, null),
  'extra field': (r, t, p) => {
    const parent = getAt(t, p.slice(0, -1));
    if (!isObject(parent)) return set(t, p, { [r.pick(ODD_KEYS)]: 1 });
    const key = r.chance(0.7) ? r.pick(ODD_KEYS) : hugeString(r, 64 * 1024);
    setKey(parent, key, r.pick<Tree>([1, 'x', null, {}, []]));
    return `extra field ${brief(key)} in ${show(p.slice(0, -1))}`;
  },
};

function set(t: Tree, p: Path, v: Tree): string {
  const before = getAt(t, p);
  updateAt(t, p, v);
  return `${show(p)}: ${typeOf(before)} ${brief(before)} → ${brief(v)}`;
}

/** The seed with one to three of its fields (or its whole self) made wrong. */
export function structural(r: Rng, schema: z.ZodType, seed: Tree, maxBytes: number): Payload {
  const doc = copy(seed);
  const paths = [...new Map([...pathsOf(seed), ...schemaPaths(schema)].map((p) => [JSON.stringify(p), p])).values()];
  const whats: string[] = [];
  const n = r.chance(0.75) ? 1 : r.between(2, 3);
  let root: Tree = doc;
  for (let i = 0; i < n; i++) {
    if (paths.length === 0 || r.chance(0.05)) {
      root = r.chance(0.5) ? wrongType(r, root) : [root];
      whats.push(`whole body → ${brief(root)}`);
      break;
    }
    const [name, op] = r.pick(Object.entries(FIELD_OPS));
    whats.push(`${name}: ${op(r, doc, r.pick(paths), maxBytes)}`);
  }
  return { bytes: Buffer.from(render(root)), what: whats.join('; ') };
}

const NOT_JSON = ['{', '}', '{"a":}', "{'a':1}", '{a:1}', '[1,]', 'undefined', 'NaN', '{"a":1}}', '/* c */{}', '{"a":"\\x41"}', '\u0000', '<xml/>', 'a=1&b=2', '--x\r\nContent-Disposition: form-data\r\n\r\n1\r\n--x--'];
const BAD_UTF8 = [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x80], [0xe2, 0x82]];

type BodyOp = (r: Rng, text: string, seed: Tree) => Payload;

/** Breakage of the encoding rather than of the fields. */
const BODY_OPS: Record<string, BodyOp> = {
  'not JSON': (r) => text(r.pick(NOT_JSON), 'not JSON'),
  truncated: (r, s) => {
    const at = r.between(1, Math.max(1, s.length - 1));
    return text(s.slice(0, at), `truncated at ${at} of ${s.length} chars`);
  },
  empty: (r) => text(r.pick(['', ' ', '\n', '\r\n\t ']), 'empty'),
  'not an object': (r, s) => {
    const v = r.pick(['null', 'true', '0', '"s"', '[]', `[${s}]`, '-1e999', JSON.stringify(s)]);
    return text(v, `not an object: ${brief(v)}`);
  },
  'invalid UTF-8': (r, s) => {
    const bytes = Buffer.from(s);
    const bad = r.pick(BAD_UTF8);
    const at = r.int(bytes.length + 1);
    return { bytes: Buffer.concat([bytes.subarray(0, at), Buffer.from(bad), bytes.subarray(at)]), what: `bytes ${Buffer.from(bad).toString('hex')} at ${at}` };
  },
  'raw NUL': (r, s) => {
    const at = r.int(s.length + 1);
    return text(s.slice(0, at) + '\u0000' + s.slice(at), `a raw NUL at ${at}`);
  },
  BOM: (_r, s) => text(`\ufeff${s}`, 'a byte-order mark first'),
  'trailing garbage': (r, s) => {
    const tail = r.pick(['}', ',', ' x', '\u0000', '{}', ']']);
    return text(s + tail, `trailing ${JSON.stringify(tail)}`);
  },
  'duplicate key': (r, s, seed) => {
    const keys = isObject(seed) ? Object.keys(seed) : [];
    if (!isObject(seed) || keys.length === 0) return text(`${s}${s}`, 'the body twice');
    const key = r.pick(keys);
    const dup = wrongType(r, seed[key]);
    return text(`${s.slice(0, -1)},${JSON.stringify(key)}:${render(dup)}}`, `${key} again, last as ${brief(dup)}`);
  },
};

function text(s: string, what: string): Payload {
  return { bytes: Buffer.from(s), what };
}

/** The seed, rendered, then broken as text or bytes. */
export function encodingBreak(r: Rng, seed: Tree): Payload {
  const [name, op] = r.pick(Object.entries(BODY_OPS));
  const p = op(r, render(seed), seed);
  return { bytes: p.bytes, what: `${name}: ${p.what}` };
}

/** A malformed payload for `schema`, from its seed: mostly fields made wrong, else encoding broken. */
export function malformed(r: Rng, schema: z.ZodType, seed: Tree, maxBytes: number): Payload {
  return r.chance(0.6) ? structural(r, schema, seed, maxBytes) : encodingBreak(r, seed);
}
