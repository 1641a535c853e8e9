import type { Rng } from './rng';
import { Raw, Tree } from './tree';

/**
 * Hostile values, by what they attack. Lists rather than random noise: a named bad value says in
 * the case's description what was wrong, and random noise rarely hits a boundary.
 */

export const BAD_CIDRS = [
  '10.0.0.0/33', '10.0.0.1/24', '10.0.0.0/-1', '10.0.0.0', '10.0.0.0/', '/24', '10.0.0.0/24/24', '256.0.0.0/8',
  '10.0.0.0/08', '::/129', 'fe80::1/64', 'fe80::/10x', ' 10.0.0.0/24', '10.0.0.0/24 ', '10.0.0.0\u0000/24',
  '1.2.3.4.5/32', '010.0.0.0/8', '10.0.0.0/ 24', '\uff11\uff10.0.0.0/8', '10.0.0.0/24\n', '0x0a.0.0.0/8', '::ffff:10.0.0.0/200',
];
export const BAD_IPS = [
  '256.1.1.1', '1.2.3', '1.2.3.4/24', '::g', '1:2:3:4:5:6:7:8:9', '01.2.3.4', '1.2.3.4 ', '0x7f000001', '::ffff:1.2.3.256',
  'fe80::1%eth0', '1.2.3.-4', '1..2.3', '2130706433', 'localhost', '1.2.3.4\u0000',
];
export const BAD_IDS = [
  'c'.repeat(63), 'c'.repeat(65), 'C'.repeat(64), 'g'.repeat(64), `${'../'.repeat(21)}x`, `${'0'.repeat(64)}\n`,
  ` ${'a'.repeat(63)}`, `${'a'.repeat(32)}\u0000${'a'.repeat(31)}`, 'weave:10.0.0.0/24:', 'weave:', 'weave:10.0.0.1/24',
  'weave:10.0.0.0/24:10.1.0.0/25', 'weave:999.0.0.0/24', 'weave:10.0.0.0/24:10.0.0.0/16', 'weave:fe80::/10.', 'weave:weave:10.0.0.0/24',
];
export const BAD_MACS = ['02:42:0a:00:00', 'zz:42:0a:00:00:02', '02-42-0a-00-00-02', '02:42:0a:00:00:02:03', '0242.0a00.0002', ':::::'];
export const BAD_HOSTS = ['', 'a.b', 'a b', 'a*', '>', 'h'.repeat(65), 'h\u0000', '\u00e9t\u00e9'];
/** Out of every range a field of ours has: ports, MTUs, sequence numbers, prefix lengths. */
export const BAD_NUMBERS: Tree[] = [
  -1, 0, 1, 575, 65536, 65535.5, 2 ** 31, 2 ** 32, 2 ** 53 + 2, -(2 ** 53), 1e308, -1e-300,
  new Raw('1e999'), new Raw('-1e999'), new Raw('-0'), new Raw('1E-400'), new Raw('123456789012345678901234567890'),
];
export const ODD_STRINGS = [
  '', ' ', '\u0000', 'a\u0000b', '\ud800', '\udfff', '\u202eevil', '\ud83d\udca5', '\uffff', '\r\n', '\\', '"', '%00', '../../etc/passwd',
  '${jndi:ldap://x}', '<script>', 'null', 'true', '0', '-1', 'NaN', 'Infinity', '__proto__', 'constructor', 'toString',
  '\u0085', '\u2028\u2029', '\t', 'A\u030a', '\u0000'.repeat(64),
];
/** Keys that mean something to JavaScript objects, and keys no schema knows. */
export const ODD_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '', ' ', '\u0000', 'Err', 'ok', 'then', 'x'];

/** One value of each JSON type; `wrongType` picks one whose type differs from the original. */
const ONE_OF_EACH: Tree[] = [null, true, false, 0, -7, 3.5, '', 'x', [], [1, 'a'], {}, { a: 1 }];

export function typeOf(t: Tree | undefined): string {
  if (t === undefined) return 'absent';
  if (t === null) return 'null';
  if (Array.isArray(t)) return 'array';
  if (t instanceof Raw) return 'number';
  return typeof t;
}

export function wrongType(r: Rng, original: Tree | undefined): Tree {
  return r.pick(ONE_OF_EACH.filter((v) => typeOf(v) !== typeOf(original)));
}

/** A string of `n` copies of one character; the ones JSON escapes make the body grow 6×. */
export function hugeString(r: Rng, maxBytes: number): string {
  const unit = r.pick(['a', '\u0000', '"', '\\', '\u00e9', '\ud83d\udca5', '\n', '\u2028']);
  const escaped = JSON.stringify(unit).length - 2;
  const sizes = [1024, 16 * 1024, 64 * 1024, 256 * 1024, 900 * 1024].filter((s) => s <= maxBytes);
  const bytes = r.pick(sizes.length > 0 ? sizes : [1024]);
  return unit.repeat(Math.max(1, Math.floor(bytes / Math.max(escaped, Buffer.byteLength(unit)))));
}

/** Arrays or objects nested `depth` deep, as text: building them as objects would be as deep. */
export function deepNesting(r: Rng): Raw {
  const depth = r.pick([64, 1000, 10_000, 100_000]);
  return r.chance(0.5) ? new Raw(`${'['.repeat(depth)}${']'.repeat(depth)}`) : new Raw(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`);
}

/** A value wrong for what the field holds, chosen by the field's name and current value. */
export function badValueFor(r: Rng, key: string | number, original: Tree | undefined): Tree {
  const k = String(key).toLowerCase();
  if (typeof original === 'number' || k === 'port' || k === 'mtu' || k === 'seq' || k === 'v') return r.pick(BAD_NUMBERS);
  if (k.includes('pool') || k.includes('subnet') || k.endsWith('range')) return r.pick(r.chance(0.3) ? BAD_IDS : BAD_CIDRS);
  if (k.includes('address') || k.includes('gateway')) return r.pick(BAD_IPS.concat(BAD_CIDRS));
  if (k.endsWith('id')) return r.pick(BAD_IDS);
  if (k.includes('mac')) return r.pick(BAD_MACS);
  if (k === 'host' || k === 'boot' || k === 'service' || k === 'kind') return r.pick(BAD_HOSTS.concat(ODD_STRINGS));
  return r.pick(ODD_STRINGS);
}
