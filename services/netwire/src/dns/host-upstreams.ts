import { readFileSync } from 'node:fs';
import type { Logger } from '@weave/log';
import { Upstreams, upstreamsOf } from './upstreams';

/**
 * What weave DNS stands in for on this host, from netwire's settings; null when it is off. Off
 * also when netwire works in another namespace (WEAVE_NETNS): its sockets would not be there.
 */
export function hostUpstreams(env: { WEAVE_DNS: 'on' | 'off'; WEAVE_RESOLV_CONF: string; WEAVE_NETNS?: string | undefined }, log: Logger): { upstreams: Upstreams } | null {
  if (env.WEAVE_DNS === 'off') return null;
  if (env.WEAVE_NETNS) {
    log.warn({ netns: env.WEAVE_NETNS }, 'weave DNS is off: netwire works in another network namespace than its own (WEAVE_NETNS)');
    return null;
  }
  let text = '';
  try {
    text = readFileSync(env.WEAVE_RESOLV_CONF, 'utf8');
  } catch (err) {
    log.warn({ err, path: env.WEAVE_RESOLV_CONF }, `cannot read ${env.WEAVE_RESOLV_CONF}: names outside the mesh will not resolve through weave DNS (set WEAVE_RESOLV_CONF)`);
  }
  const upstreams = upstreamsOf(text);
  if (upstreams.forwardTo.length === 0) log.warn({ path: env.WEAVE_RESOLV_CONF }, `${env.WEAVE_RESOLV_CONF} names no resolver: weave DNS answers the mesh's names only`);
  return { upstreams };
}
