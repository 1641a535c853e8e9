import { execFileSync } from 'node:child_process';
import { DockerScope } from './docker-scope';
import { weaveLinkDetails } from './host-state';
import { PrivateDockerd } from './private-dockerd';
import { ProcessStack } from './stack';

export interface PrivateDockerdStack {
  dockerd: PrivateDockerd;
  stack: ProcessStack;
  scope: DockerScope;
}

/**
 * For the tests of one file: a dockerd of their own (PrivateDockerd, with the workload image,
 * which a test may kill and start again) and a weave stack as processes that reconciles with it
 * (`env` on top), made before them. After them, also when they failed: what they made on that
 * dockerd, the dockerd (started once more if a test left it down, so that it can remove it), the
 * stack, and the links and firewall rules netwire may have left for the stack's host.
 */
export function usePrivateDockerd(env: Record<string, string>, onReady: (t: PrivateDockerdStack) => void): void {
  let t: Partial<PrivateDockerdStack> = {};
  beforeAll(async () => {
    const dockerd = (t.dockerd = new PrivateDockerd());
    await dockerd.start();
    await dockerd.loadImages(['weave-bbox:local']);
    const stack = (t.stack = await new ProcessStack({ ...env, WEAVE_DOCKER_SOCKET: dockerd.socket }).start());
    onReady({ dockerd, stack, scope: (t.scope = new DockerScope(dockerd.cli)) });
  }, 120_000);
  afterAll(async () => {
    const { dockerd, stack, scope } = t;
    t = {};
    if (dockerd && !dockerd.alive()) await dockerd.start().catch(() => undefined);
    await scope?.cleanup();
    await dockerd?.destroy();
    await stack?.stop();
    if (stack) removeLinksOf(stack.host);
  }, 120_000);
}

/** Only after a failure: the links and firewall rules netwire made for this stack's host, if any are left. */
function removeLinksOf(host: string): void {
  const links = weaveLinkDetails().filter((l) => l.owner === host);
  for (const l of links) execFileSync('ip', ['link', 'del', l.name], { stdio: 'ignore' });
  for (const bridge of links.filter((l) => l.kind === 'bridge').map((l) => l.name)) {
    for (const table of ['filter', 'nat']) {
      const rules = execFileSync('iptables', ['-t', table, '-S'], { encoding: 'utf8' }).split('\n').filter((r) => r.startsWith('-A ') && r.includes(`weave:${bridge}`));
      for (const rule of rules) execFileSync('sh', ['-c', `iptables -t ${table} ${rule.replace(/^-A/, '-D')}`], { stdio: 'ignore' });
    }
  }
}
