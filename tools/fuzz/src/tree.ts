/**
 * JSON documents as the fuzzer builds them: plain values, plus `Raw` fragments spliced in as text
 * (numbers JSON.stringify cannot write, such as 1e999, and nesting too deep to build as objects).
 */
export class Raw {
  constructor(readonly text: string) {}
}

export type Tree = null | boolean | number | string | Raw | Tree[] | { [key: string]: Tree };
export type Path = ReadonlyArray<string | number>;

export const isObject = (t: Tree | undefined): t is { [key: string]: Tree } =>
  t !== null && typeof t === 'object' && !Array.isArray(t) && !(t instanceof Raw);

/** JSON text of `t`; only as deep as the tree's own objects, since deep nesting comes as Raw. */
export function render(t: Tree): string {
  if (t instanceof Raw) return t.text;
  if (Array.isArray(t)) return `[${t.map(render).join(',')}]`;
  if (isObject(t)) return `{${Object.entries(t).map(([k, v]) => `${JSON.stringify(k)}:${render(v)}`).join(',')}}`;
  return JSON.stringify(t);
}

/** A deep copy (Raw fragments are immutable and shared). */
export function copy<T extends Tree>(t: T): T {
  if (Array.isArray(t)) return t.map(copy) as T;
  if (isObject(t)) {
    const o: { [key: string]: Tree } = {};
    for (const [k, v] of Object.entries(t)) setKey(o, k, copy(v));
    return o as T;
  }
  return t;
}

/**
 * Sets an own property, also for keys such as `__proto__` that plain assignment would turn into
 * a prototype change instead of a field: hostile keys must reach the wire as keys.
 */
export function setKey(o: { [key: string]: Tree }, key: string, value: Tree): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Every path into `t` (objects' keys and arrays' indexes), the root excluded. */
export function pathsOf(t: Tree, prefix: Path = []): Path[] {
  const children: Array<[string | number, Tree]> = Array.isArray(t) ? t.map((v, i) => [i, v]) : isObject(t) ? Object.entries(t) : [];
  return children.flatMap(([k, v]) => [[...prefix, k], ...pathsOf(v, [...prefix, k])]);
}

export function getAt(t: Tree, path: Path): Tree | undefined {
  let cur: Tree | undefined = t;
  for (const k of path) {
    if (Array.isArray(cur) && typeof k === 'number') cur = cur[k];
    else if (isObject(cur) && typeof k === 'string' && Object.hasOwn(cur, k)) cur = cur[k];
    else return undefined;
  }
  return cur;
}

/** Replaces the value at `path` (creating the last key if absent); `undefined` removes it. */
export function updateAt(t: Tree, path: Path, value: Tree | undefined): void {
  const parent = getAt(t, path.slice(0, -1));
  const key = path[path.length - 1]!;
  if (Array.isArray(parent) && typeof key === 'number') {
    if (value === undefined) parent.splice(key, 1);
    else parent[key] = value;
  } else if (isObject(parent) && typeof key === 'string') {
    if (value === undefined) delete parent[key];
    else setKey(parent, key, value);
  }
}
