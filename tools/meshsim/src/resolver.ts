/**
 * The simulated hosts' upstream resolver (`nameserver` of every host's /etc/resolv.conf, see
 * mesh.ts withResolver): answers `<anything>.upstream.test` with a fixed TEST-NET-1 address and
 * everything else with NXDOMAIN, and writes each query as a JSON line to its log, so a test can
 * tell which names reached the host's resolver and from where. Nothing outside the simulation is
 * ever asked.
 *
 *   node --import tsx resolver.ts <address> <log file>
 */
import { createSocket } from 'node:dgram';
import { appendFileSync } from 'node:fs';
import { DnsFormatError, encodeAnswer, parseQuery, Rcode, RecordType } from '@weave/dns';

export const UPSTREAM_DOMAIN = 'upstream.test';
export const UPSTREAM_ANSWER = '192.0.2.53';

const [address, logFile] = process.argv.slice(2);
if (require.main === module || process.argv[1]?.endsWith('resolver.ts')) {
  if (!address || !logFile) throw new Error('usage: resolver.ts <address> <log file>');
  const s = createSocket('udp4');
  s.on('message', (msg, from) => {
    try {
      const q = parseQuery(msg);
      const ours = q.question.name.endsWith(`.${UPSTREAM_DOMAIN}`);
      appendFileSync(logFile, JSON.stringify({ from: from.address, name: q.question.name, type: q.question.type }) + '\n');
      const answers = ours && q.question.type === RecordType.A ? [{ address: UPSTREAM_ANSWER, ttl: 1 }] : [];
      s.send(encodeAnswer(q, { rcode: ours ? Rcode.noError : Rcode.nxDomain, authoritative: true, answers }), from.port, from.address);
    } catch (e) {
      if (!(e instanceof DnsFormatError)) throw e;
    }
  });
  s.bind(53, address, () => appendFileSync(logFile, JSON.stringify({ ready: true }) + '\n'));
}
