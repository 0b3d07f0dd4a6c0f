import { expect } from 'chai';
import { Copy, DockerfileParser, type Instruction } from 'dockerfile-ast';
import { validate } from 'dockerfile-utils';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';

// hadolint is not packaged for Debian or npm; dockerfile-utils (the linter behind the Docker language server) lints
// the Dockerfile, and dockerfile-ast parses it for the checks of its stages.
const root = resolve(import.meta.dirname, '../..');

interface Stage {
  readonly image: string;
  readonly name: string | null;
  readonly instructions: readonly Instruction[];
}

function stagesOf(text: string): Stage[] {
  const stages: { image: string; name: string | null; instructions: Instruction[] }[] = [];
  for (const instruction of DockerfileParser.parse(text).getInstructions()) {
    if (instruction.getKeyword() === 'FROM') {
      const [image = '', , name = null] = instruction.getArguments().map((argument) => argument.getValue());
      stages.push({ image, name, instructions: [] });
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  return stages;
}

function argumentsOf(stage: Stage, keyword: string): string[] {
  return stage.instructions
    .filter((instruction) => instruction.getKeyword() === keyword)
    .map((instruction) => instruction.getArgumentsContent() ?? '');
}

/** The COPY instructions of a stage: the stage they copy from (null: the build context) and their paths. */
function copiesOf(stage: Stage): { from: string | null; paths: string[] }[] {
  return stage.instructions
    .filter((instruction): instruction is Copy => instruction instanceof Copy)
    .map((copy) => ({
      from: copy.getFromFlag()?.getValue() ?? null,
      paths: copy.getArguments().map((argument) => argument.getValue()),
    }));
}

describe('Dockerfile', () => {
  let text: string;
  let stages: Stage[];
  let runtime: Stage;

  before(async () => {
    text = await readFile(resolve(root, 'Dockerfile'), 'utf8');
    stages = stagesOf(text);
    const last = stages.at(-1);
    if (last === undefined) throw new Error('the Dockerfile has no FROM');
    runtime = last;
  });

  it('lints clean', () => {
    const diagnostics = validate(text).map(
      (d) => `line ${d.range.start.line + 1}: ${typeof d.message === 'string' ? d.message : d.message.value}`,
    );
    expect(diagnostics).to.deep.equal([]);
  });

  it('is multi-stage, every stage on Node 24', () => {
    expect(stages.length).to.be.at.least(2);
    for (const stage of stages) expect(stage.image).to.match(/^node:24(\.|-|$)/);
  });

  it('installs production dependencies only, from the lockfile, in a stage of their own', () => {
    const installs = stages.filter((stage) =>
      argumentsOf(stage, 'RUN').some((run) => /\bnpm ci\b/.test(run)),
    );
    expect(installs).to.have.length(1);
    const install = installs[0];
    expect(argumentsOf(install!, 'RUN').join(' ')).to.match(/npm ci [^&]*--omit=dev/);
    expect(install).to.not.equal(runtime);
    expect(copiesOf(runtime)).to.deep.include({
      from: install!.name,
      paths: ['/app/node_modules', './node_modules'],
    });
    // The final stage only removes: each of its commands is an `rm` (no install, no package manager).
    for (const run of argumentsOf(runtime, 'RUN')) {
      for (const command of run.split('&&').map((c) => c.replace(/\\\s*\n/g, ' ').trim()))
        expect(command, 'the final stage installs nothing').to.match(/^rm -r?f /);
    }
  });

  it('deletes only type declarations and source maps from the dependency tree: node never reads them', () => {
    const install = stages.find((stage) => argumentsOf(stage, 'RUN').some((run) => /\bnpm ci\b/.test(run)));
    const finds = argumentsOf(install!, 'RUN')
      .join(' && ')
      .split('&&')
      .filter((command) => /\bfind\b/.test(command));
    expect(finds).to.have.length(1);
    expect(finds[0]).to.match(/^\s*find node_modules -type f .* -delete\s*$/s);
    const patterns = [...finds[0]!.matchAll(/-name '([^']+)'/g)].map((match) => match[1]);
    expect(patterns).to.have.members(['*.d.ts', '*.d.mts', '*.d.cts', '*.map']);
  });

  it('leaves npm and corepack out of the final stage: nothing runs them', () => {
    const removed = argumentsOf(runtime, 'RUN').join(' ');
    for (const path of [
      '/usr/local/lib/node_modules/npm',
      '/usr/local/lib/node_modules/corepack',
      '/usr/local/bin/npm',
      '/usr/local/bin/npx',
      '/usr/local/bin/corepack',
    ])
      expect(removed, path).to.contain(path);
    expect(argumentsOf(runtime, 'ENTRYPOINT').join(' ')).to.not.match(/\bnpm\b|\bnpx\b|corepack/);
  });

  it('copies the sources the CLI loads, and each exists in the checkout and passes .dockerignore', async () => {
    const copied = copiesOf(runtime)
      .filter((copy) => copy.from === null)
      .flatMap((copy) => copy.paths.slice(0, -1));
    expect(copied).to.include.members(['package.json', 'bin', 'src', 'webhook', 'certs']);
    const dockerignore = await readFile(resolve(root, '.dockerignore'), 'utf8');
    for (const path of copied) {
      expect(existsSync(resolve(root, path)), `${path} exists`).to.equal(true);
      expect(dockerignore, `.dockerignore lets ${path} in`).to.match(new RegExp(`^!${path}/?$`, 'm'));
    }
    expect(dockerignore.split('\n')).to.include('*');
  });

  it('runs as a non-root numeric user, so runAsNonRoot can be enforced', () => {
    const user = argumentsOf(runtime, 'USER').at(-1);
    expect(user, 'the final stage sets USER').to.be.a('string');
    const uid = user!.split(':')[0]!;
    expect(uid).to.match(/^\d+$/);
    expect(Number(uid)).to.be.greaterThan(0);
  });

  it('has one entrypoint, the kmm-preflight CLI in exec form, for runner, webhook and the CLI', () => {
    const entrypoints = argumentsOf(runtime, 'ENTRYPOINT');
    expect(entrypoints).to.have.length(1);
    expect(JSON.parse(entrypoints[0]!)).to.deep.equal(['node', '/app/bin/kmm-preflight.js']);
  });
});
