import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { buildDemoWorkspace } from '../demo/workspace.ts';
import { main } from './main.ts';

/**
 * `npm run demo`: builds the demo workspace in a temporary directory and runs `kmm-preflight check` on it, exactly
 * as a user would, then says how to run it again. No cluster, no registry, no network.
 */
const dir = await mkdtemp(join(tmpdir(), 'kmm-preflight-demo-'));
process.stdout.write(`Building a demo release, module images and Module manifests in ${dir} ...\n`);
const workspace = await buildDemoWorkspace(dir);
process.stdout.write(
  `Release ${workspace.releaseImage} ships kernel ${workspace.kernel}.\n\n` +
    `$ kmm-preflight ${workspace.checkArgs.join(' ')}\n\n`,
);
const code = await main(workspace.checkArgs);
process.stdout.write(
  `\n(exit code ${code}: 0 when every Module is verified, 1 when any is not, 2 when there is no verdict.)\n` +
    `Try -o json, -o yaml or -o junit: npx kmm-preflight ${workspace.checkArgs.join(' ')} -o yaml\n` +
    `Remove the demo files with: rm -rf ${dir}\n`,
);
