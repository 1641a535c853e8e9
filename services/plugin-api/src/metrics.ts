import { CallMetrics, type Registry } from '@weave/metrics';
import type { CallObserver } from './server';

/**
 * Docker's calls to the plugin, per method and outcome, and their latency per method. The
 * outcome is `ok`, `refused` (answered with an error Docker shows the user: `Err`/`Error`) or
 * `failed` (a broken request: a non-200 status). Paths that are no method of ours count as
 * `other`, so a caller sending junk cannot make up series.
 */
export function dockerCallMetrics(registry: Registry, methods: readonly string[]): CallObserver {
  const m = new CallMetrics(registry, { calls: 'weave_plugin_api_calls_total', duration: 'weave_plugin_api_call_duration_seconds', what: 'Docker plugin calls' });
  const known = new Set(methods);
  return (c) => m.observe(known.has(c.method) ? c.method : 'other', c.ms / 1000, c.status !== 200 ? 'failed' : c.error !== undefined ? 'refused' : 'ok');
}
