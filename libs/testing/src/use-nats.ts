import { connect, NatsConnection } from '@nats-io/transport-node';
import { NatsServer, startNatsServer } from './nats-server';

/**
 * A real nats-server with JetStream and a connection to it, for all the tests of a file (or for
 * each test): started before, closed and removed after, also when the tests fail.
 */
export function useNats(onReady: (server: NatsServer, nc: NatsConnection) => void, per: 'file' | 'test' = 'file'): void {
  let server: NatsServer | undefined;
  let nc: NatsConnection | undefined;
  const [before, after] = per === 'file' ? [beforeAll, afterAll] : [beforeEach, afterEach];
  before(async () => {
    server = await startNatsServer();
    nc = await connect({ servers: server.url });
    onReady(server, nc);
  });
  after(async () => {
    await nc?.close();
    await server?.stop();
  });
}
