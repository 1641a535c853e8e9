import { WeaveError } from '@weave/errors';
import type { Counter, Histogram, Registry } from './registry';

export interface CallMetricNames {
  /** `…_total`, labelled by method and outcome. */
  calls: string;
  /** `…_seconds`, a histogram labelled by method. */
  duration: string;
  /** What a call is, for the HELP text ("Docker plugin calls"). */
  what: string;
}

/** Calls per method and outcome, and how long they took per method. */
export class CallMetrics {
  private readonly calls: Counter<'method' | 'outcome'>;
  private readonly duration: Histogram<'method'>;

  constructor(registry: Registry, n: CallMetricNames) {
    this.calls = registry.counter({ name: n.calls, help: `${n.what} handled, by method and outcome`, labels: ['method', 'outcome'] });
    this.duration = registry.histogram({ name: n.duration, help: `How long ${n.what} took, by method`, labels: ['method'] });
  }

  observe(method: string, seconds: number, outcome: string): void {
    this.calls.inc({ method, outcome });
    this.duration.observe({ method }, seconds);
  }
}

/** `weave_<service>_rpc_calls_total` and `weave_<service>_rpc_duration_seconds`: the NATS requests a service handled. */
export const rpcCallMetrics = (registry: Registry, service: string): CallMetrics => {
  const prefix = `weave_${service.replace(/-/g, '_')}_rpc`;
  return new CallMetrics(registry, { calls: `${prefix}_calls_total`, duration: `${prefix}_duration_seconds`, what: `${service} RPC requests` });
};

type Handler = (...args: never[]) => Promise<unknown>;

/**
 * The same handlers, each call counted and timed under its method name; the outcome is `ok` or
 * the error's code (`invalid`, `conflict`, …; `internal` for anything else). Without metrics,
 * the handlers themselves.
 */
export function timedHandlers<H extends { [method: string]: Handler }>(handlers: H, m: CallMetrics | undefined): H {
  if (!m) return handlers;
  const timed = Object.entries(handlers).map(([method, handle]) => {
    const wrapped = async (...args: never[]): Promise<unknown> => {
      const started = performance.now();
      const done = (outcome: string): void => m.observe(method, (performance.now() - started) / 1000, outcome);
      try {
        const result = await handle(...args);
        done('ok');
        return result;
      } catch (e) {
        done(e instanceof WeaveError ? e.code : 'internal');
        throw e;
      }
    };
    return [method, wrapped];
  });
  return Object.fromEntries(timed) as H;
}
