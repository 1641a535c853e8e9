import { DockerScope } from './docker-scope';
import { ProcessStack } from './stack';

/** Subnets the end-to-end suites own: default subnets come from here, never from 10.32.0.0/12. */
export const E2E_ENV = { WEAVE_IPAM_RANGE: '10.251.128.0/17' };

/**
 * A weave stack and a Docker scope for the tests of one file: the stack starts before them; the
 * containers and networks the tests made, then the stack, go after them, also when they fail.
 */
export function useStack(onReady: (stack: ProcessStack) => void, env: Record<string, string> = E2E_ENV): DockerScope {
  const scope = new DockerScope();
  let stack: ProcessStack | undefined;
  beforeAll(async () => {
    stack = await new ProcessStack(env).start();
    onReady(stack);
  });
  afterAll(async () => {
    await scope.cleanup();
    await stack?.stop();
  });
  return scope;
}
