/**
 * DNS over TCP frames each message with a two-byte length (RFC 1035 4.2.2). Collects a stream's
 * chunks and hands out whole messages.
 */
export class TcpFramer {
  private buf: Buffer = Buffer.alloc(0);

  /** The whole messages completed by `chunk`. */
  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Buffer[] = [];
    while (this.buf.length >= 2) {
      const n = this.buf.readUInt16BE(0);
      if (this.buf.length < 2 + n) break;
      out.push(this.buf.subarray(2, 2 + n));
      this.buf = this.buf.subarray(2 + n);
    }
    return out;
  }
}

export const tcpFrame = (msg: Buffer): Buffer => {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(msg.length, 0);
  return Buffer.concat([len, msg]);
};
