import type { DnsAttachment, DnsDocker } from './docker-attachments';

/** An in-memory Docker for the DNS publisher: the endpoints it lists, and the events it emits. */
export class FakeDnsDocker implements DnsDocker {
  attachments: DnsAttachment[] = [];
  /** Makes listings fail, as a dockerd that is down would. */
  failing: Error | null = null;
  /** How many listings were asked for, and how many ran at once at most. */
  listings = 0;
  maxConcurrent = 0;
  /** A listing waits for this while set, so a test can hold a pass open. */
  gate: Promise<void> | null = null;
  private running = 0;
  private readonly watchers = new Set<(e: { type: string; action: string }) => void>();

  async dnsAttachments(): Promise<DnsAttachment[]> {
    this.listings++;
    this.maxConcurrent = Math.max(this.maxConcurrent, ++this.running);
    try {
      await this.gate;
      if (this.failing) throw this.failing;
      return structuredClone(this.attachments);
    } finally {
      this.running--;
    }
  }

  watchDnsChanges(_driver: string, onEvent: (e: { type: string; action: string }) => void): () => void {
    this.watchers.add(onEvent);
    return () => this.watchers.delete(onEvent);
  }

  emit(type: string, action: string): void {
    for (const w of this.watchers) w({ type, action });
  }
}
