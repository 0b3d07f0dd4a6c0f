#!/usr/bin/env node
// The installed entry point. Node 24 runs the TypeScript sources directly (type stripping), so there is no build
// step between a checkout and a working command. An older Node cannot load them: say so instead of a stack trace.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `kmm-preflight needs Node.js 24 or newer (this is ${process.version}). ` +
      'Run it as `npx kmm-preflight` or through `npm run`: both use the Node 24 that `npm ci` installs.\n',
  );
  process.exit(2);
}
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
