import type { EventEnvelope } from '@weave/contracts';

/** Aligned columns, the way `docker ps` prints them. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** One event on one line: time, where it came from, what happened, the details. */
export function eventLine(e: EventEnvelope): string {
  const data = e.data && typeof e.data === 'object' ? Object.entries(e.data).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ') : '';
  return `${e.time}  ${e.host}  ${e.service}  ${e.kind}  ${data}`.trimEnd();
}

/**
 * What `weave rmpeer` shows while ipam works (on stderr: stdout keeps the result alone): each
 * block, address and pool reference as it is released, from this host's ipam events. Null for
 * events that are not steps of a reclaim.
 */
export function rmpeerProgressLine(e: EventEnvelope): string | null {
  if (e.service !== 'ipam') return null;
  const d = (e.data ?? {}) as Record<string, unknown>;
  switch (e.kind) {
    case 'block.released':
      return `released block ${String(d.block)}`;
    case 'address.released':
      return `released address ${String(d.address)}`;
    case 'pool.released':
      return `dropped a reference to pool ${String(d.poolId)}`;
    case 'host.reclaimed':
      return `reclaimed ${String(d.host)} (epoch ${String(d.epoch)})`;
    default:
      return null;
  }
}
