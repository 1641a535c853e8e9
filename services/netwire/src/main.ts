import { runService } from '@weave/config';
import { NetwireEnv } from './env';
import { LinuxKernel } from './kernel-linux';
import { startNetwire } from './service';

void runService('netwire', NetwireEnv, async ({ env, log, nc }) => {
  const kernel = new LinuxKernel({ netns: env.WEAVE_NETNS ?? null });
  const running = await startNetwire({ nc, host: env.WEAVE_HOST, kernel, log, mtu: env.WEAVE_MTU ?? null, replicas: env.WEAVE_KV_REPLICAS });
  return running.stop;
});
