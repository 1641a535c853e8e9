import { IpamDriver, NetworkDriver } from '@weave/contracts';
import type { Rng } from './rng';

/**
 * What Docker's HTTP around a body can vary in, and what it never sends: headers, paths and
 * verbs the plugin has no method for, and requests that are not valid HTTP at all.
 */

const CONTENT_TYPES = [
  null, null, 'application/json', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x',
  'application/vnd.docker.plugins.v1.2+json', 'application/json; charset=utf-16', 'image/png', '*/*', ';;;',
];
const HOSTS = [null, '', 'plugin.moby.localhost', 'evil.example', 'a'.repeat(300)];

/** Headers and URL details around a malformed body; Docker sends no Content-Type, so any is as good. */
export function pluginTransport(r: Rng): { headers: Record<string, string>; query: string; chunked: boolean; what: string } {
  const headers: Record<string, string> = {};
  const what: string[] = [];
  const type = r.pick(CONTENT_TYPES);
  if (type !== null) (headers['Content-Type'] = type), what.push(`Content-Type ${type}`);
  const host = r.pick(HOSTS);
  if (host !== null) (headers.Host = host), what.push(`Host ${JSON.stringify(host.slice(0, 20))}`);
  const query = r.chance(0.05) ? r.pick(['?', '?x=1', '?__proto__=1', '#frag']) : '';
  if (query) what.push(`query ${query}`);
  const chunked = r.chance(0.1);
  if (chunked) what.push('chunked');
  return { headers, query, chunked, what: what.join(', ') };
}

const KNOWN = [...Object.keys(NetworkDriver).map((m) => `/NetworkDriver.${m}`), ...Object.keys(IpamDriver).map((m) => `/IpamDriver.${m}`), '/Plugin.Activate', '/NetworkDriver.GetCapabilities'];
const UNKNOWN = [
  '/', '/NetworkDriver', '/NetworkDriver.', '/networkdriver.createnetwork', '/NetworkDriver.CreateNetwork/', '/NetworkDriver.CreateNetwork/x',
  '//NetworkDriver.CreateNetwork', '/IpamDriver.RequestPool%00', '/%2e%2e/%2e%2e', '/Plugin.Activate.x', `/${'A'.repeat(8000)}`, '/constructor',
  '/__proto__', '/toString', '/hasOwnProperty', '/valueOf', '/NetworkDriver.__proto__', '/VolumeDriver.Create', '/Plugin.Deactivate',
  '/NetworkDriver.GwAllocCheck', '/IpamDriver.RequestPool.', '/.IpamDriver.RequestPool', '/%49pamDriver.RequestPool', '*',
];
// HEAD is left out: its answer has no body by definition, so it cannot carry `Err`.
const VERBS = ['GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'PROPFIND', 'TRACE'];

/** A path the plugin does not serve, or a served path with a verb other than POST. */
export function strayPath(r: Rng): { verb: string; path: string; body: Buffer; what: string } {
  const body = Buffer.from(r.pick(['', '{}', '{"NetworkID":1}', 'x']));
  if (r.chance(0.5)) {
    const path = r.pick(UNKNOWN);
    return { verb: 'POST', path, body, what: `POST ${path.slice(0, 40)}` };
  }
  const verb = r.pick(VERBS);
  const path = r.pick(KNOWN);
  return { verb, path, body, what: `${verb} ${path}` };
}

// With a Host header (empty, as Docker 20.10 sends it), so that each template breaks one thing only.
const RP = 'POST /IpamDriver.RequestPool HTTP/1.1\r\nHost: \r\n';
const BROKEN: Array<[string, string]> = [
  ['Content-Length not a number', `${RP}Content-Length: abc\r\n\r\n`],
  ['negative Content-Length', `${RP}Content-Length: -5\r\n\r\n`],
  ['two Content-Lengths', `${RP}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}`],
  ['chunked and Content-Length', `${RP}Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n0\r\n\r\n`],
  ['bad chunk size', `${RP}Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`],
  ['unknown HTTP version', 'POST /IpamDriver.RequestPool HTTP/9.9\r\n\r\n'],
  ['space in the path', 'POST /Ipam Driver.RequestPool HTTP/1.1\r\n\r\n'],
  ['control bytes', '\u0000\u0001\u0002 / HTTP/1.1\r\n\r\n'],
  ['space in a header name', `${RP}Bad Header: x\r\n\r\n`],
  ['NUL in a header value', `${RP}X: a\u0000b\r\n\r\n`],
  ['folded header', `${RP}X: a\r\n folded\r\n\r\n`],
  ['headers too large', `${RP}X-Long: ${'a'.repeat(100_000)}\r\n\r\n`],
  ['not HTTP', 'hello\r\n\r\n'],
  ['no Host header, empty body', 'POST /IpamDriver.RequestPool HTTP/1.1\r\nContent-Length: 0\r\n\r\n'],
  ['TLS handshake', '\u0016\u0003\u0001\u0002\u0000\u0001\u0000\u0001\u00fc\u0003\u0003\r\n\r\n'],
];

/** Bytes that are not a valid HTTP request; Docker's client never sends them. */
export function brokenHttp(r: Rng): { bytes: Buffer; what: string } {
  const [what, text] = r.pick(BROKEN);
  return { bytes: Buffer.from(text, 'latin1'), what };
}
