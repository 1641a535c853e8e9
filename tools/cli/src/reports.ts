import type { NatsConnection } from '@nats-io/transport-node';
import { rpcClient } from '@weave/bus';
import { ipamRpc, netwireRpc, pluginApiRpc, routerRpc } from '@weave/contracts';
import { describeError, UnavailableError } from '@weave/errors';
import type { HostReport } from './views';

const TIMEOUT_MS = 3000;

/**
 * One host's status from its three services, each asked on its own: a service that is down
 * leaves its part empty and says so, rather than failing the whole report. A host without a
 * router (a single host run without one) is not a problem.
 */
export async function reportOf(nc: NatsConnection, host: string): Promise<HostReport> {
  const problems: string[] = [];
  const ask = async <T>(what: string, f: () => Promise<T>, quietWhenAbsent = false): Promise<T | null> => {
    try {
      return await f();
    } catch (e) {
      if (!(quietWhenAbsent && e instanceof UnavailableError)) problems.push(`${what} of ${host} did not answer: ${describeError(e)}`);
      return null;
    }
  };
  const o = { timeoutMs: TIMEOUT_MS };
  const [ipam, netwire, router, pluginApi] = await Promise.all([
    ask('ipam', () => rpcClient(nc, host, ipamRpc, o).status({})),
    ask('netwire', () => rpcClient(nc, host, netwireRpc, o).status({})),
    ask('the router', () => rpcClient(nc, host, routerRpc, o).status({}), true),
    // Quiet when absent: a plugin-api older than its status (or not running) has nothing to add here.
    ask('plugin-api', () => rpcClient(nc, host, pluginApiRpc, o).status({}), true),
  ]);
  return { host, ipam, netwire, router, pluginApi, problems };
}

/** This host and every peer its router has heard of, connected or not, each with its report. */
export async function meshReports(nc: NatsConnection, self: string): Promise<HostReport[]> {
  const mine = await reportOf(nc, self);
  const others = (mine.router?.peers ?? []).map((p) => p.host).sort();
  return [mine, ...(await Promise.all(others.map((h) => reportOf(nc, h))))];
}
