// Preloaded with `node --import`: writes to stderr, when the process exits, every npm package it loaded, one line
// `loaded packages: a b c`. Lets a test see what a command pulls in without instrumenting the code under test.
import { registerHooks } from 'node:module';

const loaded = new Set<string>();
registerHooks({
  resolve(specifier, context, nextResolve) {
    const resolved = nextResolve(specifier, context);
    const packageName = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(resolved.url)?.[1];
    if (packageName !== undefined) loaded.add(packageName);
    return resolved;
  },
});
process.on('exit', () => process.stderr.write(`loaded packages: ${[...loaded].sort().join(' ')}\n`));
