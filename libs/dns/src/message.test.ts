import { answerAddresses, DnsFormatError, encodeAnswer, encodeQuery, formatErrorReply, parseQuery, Rcode, RecordType } from './message';
import { TcpFramer, tcpFrame } from './stream';

describe('parseQuery', () => {
  it('reads the id, the question in lower case and the recursion flag', () => {
    const q = parseQuery(encodeQuery(0x1234, 'Web.Weave.Local.', RecordType.AAAA));
    expect(q).toMatchObject({ id: 0x1234, recursionDesired: true, question: { name: 'web.weave.local', type: RecordType.AAAA, class: 1 } });
  });

  it('ignores an EDNS record after the question', () => {
    const q = encodeQuery(7, 'web', RecordType.A);
    q.writeUInt16BE(1, 10);
    const opt = Buffer.from([0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    expect(parseQuery(Buffer.concat([q, opt])).question.name).toBe('web');
  });

  it.each<[string, Buffer, number | null]>([
    ['a short header', Buffer.alloc(5), null],
    ['a response', Buffer.from(encodeQuery(9, 'a', 1).map((b, i) => (i === 2 ? b | 0x80 : b))), 9],
    ['two questions', Buffer.from(encodeQuery(9, 'a', 1).map((b, i) => (i === 5 ? 2 : b))), 9],
    ['an inverse query', Buffer.from(encodeQuery(9, 'a', 1).map((b, i) => (i === 2 ? b | 0x08 : b))), 9],
    ['a truncated name', encodeQuery(9, 'abcdef', 1).subarray(0, 15), 9],
    ['no type and class', encodeQuery(9, 'abc', 1).subarray(0, 17), 9],
    ['a compression pointer', Buffer.concat([encodeQuery(9, 'a', 1).subarray(0, 12), Buffer.from([0xc0, 12, 0, 1, 0, 1])]), 9],
    ['a name over 255 bytes', encodeQuery(9, Array.from({ length: 5 }, () => 'x'.repeat(60)).join('.'), 1), 9],
  ])('refuses %s', (_what, msg, id) => {
    let err: unknown;
    try {
      parseQuery(msg);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DnsFormatError);
    expect((err as DnsFormatError).id).toBe(id);
  });
});

describe('encodeAnswer', () => {
  it('answers with the addresses, pointing at the question', () => {
    const q = parseQuery(encodeQuery(42, 'web', RecordType.A));
    const msg = encodeAnswer(q, { rcode: Rcode.noError, authoritative: true, answers: [{ address: '10.32.0.5', ttl: 5 }, { address: '10.32.0.9', ttl: 5 }] });
    expect(answerAddresses(msg)).toEqual({ id: 42, rcode: 0, addresses: ['10.32.0.5', '10.32.0.9'] });
    expect(msg.readUInt16BE(2) & 0x8400).toBe(0x8400);
    expect(msg.readUInt16BE(12 + q.questionBytes.length)).toBe(0xc00c);
  });

  it('writes IPv6 addresses as AAAA', () => {
    const q = parseQuery(encodeQuery(1, 'web', RecordType.AAAA));
    expect(answerAddresses(encodeAnswer(q, { rcode: Rcode.noError, authoritative: true, answers: [{ address: 'fd12:3456::5', ttl: 5 }] })).addresses).toEqual(['fd12:3456::5']);
  });

  it('says NXDOMAIN with no records', () => {
    const q = parseQuery(encodeQuery(3, 'gone.weave.local', RecordType.A));
    expect(answerAddresses(encodeAnswer(q, { rcode: Rcode.nxDomain, authoritative: true }))).toEqual({ id: 3, rcode: Rcode.nxDomain, addresses: [] });
  });

  it('answers a malformed query with FORMERR when its id is known', () => {
    expect(formatErrorReply(new DnsFormatError('x', 77))!.readUInt16BE(0)).toBe(77);
    expect(formatErrorReply(new DnsFormatError('x', null))).toBeNull();
  });
});

describe('TcpFramer', () => {
  it('cuts a stream into messages, across chunk boundaries', () => {
    const a = encodeQuery(1, 'a', 1);
    const b = encodeQuery(2, 'bb', 1);
    const wire = Buffer.concat([tcpFrame(a), tcpFrame(b)]);
    const f = new TcpFramer();
    expect(f.push(wire.subarray(0, 1))).toEqual([]);
    expect(f.push(wire.subarray(1, 2 + a.length))).toEqual([a]);
    expect(f.push(wire.subarray(2 + a.length))).toEqual([b]);
  });
});
