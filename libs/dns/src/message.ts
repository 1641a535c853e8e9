import { formatIp, Ip, parseIp } from '@weave/netaddr';

/**
 * The part of the DNS wire format (RFC 1035) a stub-facing name server needs: reading one
 * question and writing address answers. Deliberately small: anything it does not understand is
 * either refused as malformed (FORMERR) or, by the server, passed on to a full resolver.
 */

export const RecordType = { A: 1, PTR: 12, AAAA: 28 } as const;
export const CLASS_IN = 1;
export const Rcode = { noError: 0, formErr: 1, servFail: 2, nxDomain: 3, notImp: 4, refused: 5 } as const;
export type Rcode = (typeof Rcode)[keyof typeof Rcode];

const HEADER = 12;
const MAX_NAME = 255;
const MAX_LABEL = 63;
/** A UDP answer beyond this is truncated without EDNS (RFC 1035 4.2.1). */
export const MAX_UDP_PLAIN = 512;

export class DnsFormatError extends Error {
  /** The query's id when the header could be read: a FORMERR answer then goes back to it. */
  constructor(
    message: string,
    readonly id: number | null,
  ) {
    super(message);
  }
}

export interface DnsQuestion {
  /** Lower case, without the final dot; '' is the root. */
  name: string;
  type: number;
  class: number;
}

export interface DnsQuery {
  id: number;
  recursionDesired: boolean;
  question: DnsQuestion;
  /** The question as it came, echoed in the answer. */
  questionBytes: Buffer;
}

/**
 * Reads a standard query with exactly one question; throws DnsFormatError otherwise. Answers,
 * authority and additional records (an EDNS OPT) are allowed and ignored.
 */
export function parseQuery(msg: Buffer): DnsQuery {
  if (msg.length < HEADER) throw new DnsFormatError(`${msg.length} bytes is shorter than a DNS header`, null);
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  if (flags & 0x8000) throw new DnsFormatError('a response, not a query', id);
  const opcode = (flags >> 11) & 0xf;
  if (opcode !== 0) throw new DnsFormatError(`opcode ${opcode} is not a standard query`, id);
  const qdcount = msg.readUInt16BE(4);
  if (qdcount !== 1) throw new DnsFormatError(`${qdcount} questions (one is supported)`, id);
  const labels: string[] = [];
  let at = HEADER;
  let length = 1;
  for (;;) {
    if (at >= msg.length) throw new DnsFormatError('the question name runs past the message', id);
    const n = msg[at]!;
    if (n === 0) break;
    // A question has nothing before it to point to: a compression pointer here is malformed.
    if (n > MAX_LABEL) throw new DnsFormatError(`label length ${n} (at most ${MAX_LABEL}; no compression in a question)`, id);
    if (at + 1 + n > msg.length) throw new DnsFormatError('a label runs past the message', id);
    length += n + 1;
    if (length > MAX_NAME) throw new DnsFormatError(`the name is longer than ${MAX_NAME} bytes`, id);
    labels.push(msg.toString('latin1', at + 1, at + 1 + n).toLowerCase());
    at += 1 + n;
  }
  at += 1;
  if (at + 4 > msg.length) throw new DnsFormatError('the question has no type and class', id);
  const question = { name: labels.join('.'), type: msg.readUInt16BE(at), class: msg.readUInt16BE(at + 2) };
  return { id, recursionDesired: (flags & 0x0100) !== 0, question, questionBytes: msg.subarray(HEADER, at + 4) };
}

export interface Answer {
  /** An address of the question's family: A for IPv4, AAAA for IPv6. */
  address: string;
  ttl: number;
}

/**
 * The answer to `q`: its addresses (all of the question's type) with `rcode`. `authoritative`
 * for names the server owns. Every answer names the question by a pointer to it.
 */
export function encodeAnswer(q: DnsQuery, o: { rcode: Rcode; authoritative: boolean; answers?: readonly Answer[] }): Buffer {
  const answers = (o.answers ?? []).map((a) => ({ ttl: a.ttl, ip: parseIp(a.address) }));
  const rdata = (ip: Ip): Buffer => {
    const bytes = ip.family === 4 ? 4 : 16;
    const out = Buffer.alloc(bytes);
    for (let i = 0; i < bytes; i++) out[i] = Number((ip.value >> BigInt(8 * (bytes - 1 - i))) & 0xffn);
    return out;
  };
  const records = answers.map(({ ttl, ip }) => {
    const data = rdata(ip);
    const rr = Buffer.alloc(12 + data.length);
    rr.writeUInt16BE(0xc000 | HEADER, 0);
    rr.writeUInt16BE(ip.family === 4 ? RecordType.A : RecordType.AAAA, 2);
    rr.writeUInt16BE(CLASS_IN, 4);
    rr.writeUInt32BE(Math.max(0, Math.min(ttl, 0x7fff_ffff)), 6);
    rr.writeUInt16BE(data.length, 10);
    data.copy(rr, 12);
    return rr;
  });
  const header = Buffer.alloc(HEADER);
  header.writeUInt16BE(q.id, 0);
  // QR, AA as asked, RD echoed, RA: the server passes on what it does not answer itself.
  header.writeUInt16BE(0x8000 | (o.authoritative ? 0x0400 : 0) | (q.recursionDesired ? 0x0100 : 0) | 0x0080 | o.rcode, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(records.length, 6);
  return Buffer.concat([header, q.questionBytes, ...records]);
}

/** FORMERR for a message whose header could be read, echoing its id; null when nothing can be answered. */
export function formatErrorReply(err: DnsFormatError): Buffer | null {
  if (err.id === null) return null;
  const header = Buffer.alloc(HEADER);
  header.writeUInt16BE(err.id, 0);
  header.writeUInt16BE(0x8000 | 0x0080 | Rcode.formErr, 2);
  return header;
}

/** Reads the addresses of an answer (for tests and tools): the A and AAAA records' data. */
export function answerAddresses(msg: Buffer): { id: number; rcode: number; addresses: string[] } {
  if (msg.length < HEADER) throw new DnsFormatError('short answer', null);
  const id = msg.readUInt16BE(0);
  const rcode = msg.readUInt16BE(2) & 0xf;
  const qd = msg.readUInt16BE(4);
  const an = msg.readUInt16BE(6);
  let at = HEADER;
  const skipName = (): void => {
    for (;;) {
      const n = msg[at];
      if (n === undefined) throw new DnsFormatError('name runs past the answer', id);
      if ((n & 0xc0) === 0xc0) return void (at += 2);
      at += 1 + n;
      if (n === 0) return;
    }
  };
  for (let i = 0; i < qd; i++) (skipName(), (at += 4));
  const addresses: string[] = [];
  for (let i = 0; i < an; i++) {
    skipName();
    if (at + 10 > msg.length) throw new DnsFormatError('record runs past the answer', id);
    const type = msg.readUInt16BE(at);
    const len = msg.readUInt16BE(at + 8);
    at += 10;
    if (at + len > msg.length) throw new DnsFormatError('record data runs past the answer', id);
    if ((type === RecordType.A && len === 4) || (type === RecordType.AAAA && len === 16)) {
      let value = 0n;
      for (let b = 0; b < len; b++) value = (value << 8n) | BigInt(msg[at + b]!);
      addresses.push(formatIp({ family: len === 4 ? 4 : 6, value }));
    }
    at += len;
  }
  return { id, rcode, addresses };
}

/** A query for `name` (tests and tools). */
export function encodeQuery(id: number, name: string, type: number): Buffer {
  const labels = name.replace(/\.$/, '').split('.').filter((l) => l.length > 0);
  const parts = labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')]));
  const header = Buffer.alloc(HEADER);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2);
  header.writeUInt16BE(1, 4);
  const tail = Buffer.alloc(5);
  tail.writeUInt16BE(type, 1);
  tail.writeUInt16BE(CLASS_IN, 3);
  return Buffer.concat([header, ...parts, tail]);
}
