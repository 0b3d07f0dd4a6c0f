import {
  canonicalModuleName,
  createModuleFileMatcher,
  type ModuleFileMatcher,
  type WantedModule,
} from '../../kernel/module-file.ts';
import { moduleNameOfFile } from '../kmod/compression.ts';
import { resolveDependencies, type ImageModuleTree } from '../kmod/dependencies.ts';
import { KmodError } from '../kmod/errors.ts';
import { inspectModule, type ModuleInspection } from '../kmod/inspect.ts';
import { modulesDepTextFromIndex } from '../kmod/modules-dep-bin.ts';
import { parseModulesDep, type ModulesDep } from '../kmod/modules-dep.ts';
import type { FileRef, ImageView } from '../layers/image-view.ts';
import { DEFAULT_LAYER_LIMITS, type LayerLimits } from '../layers/limits.ts';
import { baseNameOf, isAtOrUnder, normalizeImagePath } from '../layers/paths.ts';
import { LayerWalk } from '../layers/walk.ts';
import {
  ImageError,
  imageErrorAnswer,
  type Descriptor,
  type ImageSource,
  type Platform,
  type PullOptions,
  type ResolvedImage,
} from '../source.ts';
import { ImageStageCache, moduleFactsKey, type ModuleFacts } from './cache.ts';
import type {
  ImageVerdict,
  ImageVerifyRequest,
  InTreeModules,
  InTreeModuleSource,
  ModuleFinding,
} from './types.ts';
import { formatPlatform } from '../registry/manifest.ts';

export interface ImageStageDeps {
  readonly source: ImageSource;
  /** Keep one across checks so shared images and layers are read once; default: a fresh one per call. */
  readonly cache?: ImageStageCache;
  readonly limits?: Partial<LayerLimits>;
}

export const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };

/**
 * Other module files of the kernel directory kept while reading a layer, so a check of another module name in the
 * same image is answered from the layer cache; bounded so an image carrying a whole kernel's modules costs little.
 */
const EXTRA_MODULE_BYTES = 32 * 1024 * 1024;

/**
 * The Image stage: resolves the image (the tag every time: tags move), then answers from the verdict cache for that
 * manifest digest or scans its layers once, top-down, for everything the verdict needs: each module of
 * `modulesLoadingOrder`, depmod's index, the dependencies it names, the firmware directory and the kernel
 * directories present. Registry failures become verdicts (never throws for them); `definite` says whether to retry.
 */
export async function verifyModuleImage(
  deps: ImageStageDeps,
  request: ImageVerifyRequest,
): Promise<ImageVerdict> {
  const cache = deps.cache ?? new ImageStageCache();
  const platform = request.platform ?? DEFAULT_PLATFORM;
  const dirName = absoluteDir(request.modprobe.dirName ?? '/opt');
  const matcher = createModuleFileMatcher({
    dirName,
    kernel: request.kernel,
    ...(request.modprobe.moduleName === undefined ? {} : { moduleName: request.modprobe.moduleName }),
    ...(request.modprobe.modulesLoadingOrder
      ? { modulesLoadingOrder: request.modprobe.modulesLoadingOrder }
      : {}),
  });
  if (matcher.wanted.length === 0) {
    return unreadVerdict(request, {
      reason:
        'the Module names no kernel module (modprobe.moduleName or modulesLoadingOrder): nothing to look for in the image',
      definite: true,
      errorCode: null,
    });
  }
  const pull: PullOptions = {
    platform,
    ...(request.tls ? { tls: request.tls } : {}),
    ...(request.credentials === undefined ? {} : { credentials: request.credentials }),
    ...(request.signal ? { signal: request.signal } : {}),
  };
  const resolveKey = [
    request.reference,
    formatPlatform(platform),
    JSON.stringify(request.tls ?? {}),
    cache.credentialKey(request.credentials),
  ].join('\n');
  let image: ResolvedImage;
  try {
    image = await cache.resolve(resolveKey, () => deps.source.resolve(request.reference, pull));
  } catch (err) {
    if (err instanceof ImageError) return registryFailure(request, platform, err);
    throw err;
  }
  const verdictKey = [
    request.reference,
    image.digest,
    request.kernel,
    dirName,
    matcher.wanted.map((m) => m.canonicalName).join(','),
    request.modprobe.firmwarePath ?? '',
    request.requireSignature === true,
    formatPlatform(platform),
    request.inTreeModules?.description ?? '',
  ].join('\n');
  return cache.verdict(verdictKey, async () => {
    try {
      return await new ImageScan(deps, cache, image, request, matcher, dirName, platform, pull).verdict();
    } catch (err) {
      if (err instanceof ImageError) return registryFailure(request, platform, err, image);
      throw err;
    }
  });
}

/** One check's walk over one image and the verdict drawn from it. */
class ImageScan {
  readonly #walk: LayerWalk;
  readonly #request: ImageVerifyRequest;
  readonly #image: ResolvedImage;
  readonly #matcher: ModuleFileMatcher;
  readonly #dirName: string;
  readonly #platform: Platform;
  readonly #limits: LayerLimits;
  readonly #kernelDir: string;
  /** Dependencies learned during the walk (folded names), whose files the walk must keep too. */
  readonly #dependencyNames = new Set<string>();
  readonly #inspections = new Map<string, Promise<ModuleFacts>>();
  readonly #cache: ImageStageCache;
  readonly #parsedIndexes = new Map<string, Promise<ModulesDep>>();
  /** The in-tree list, asked once per scan and only when a dependency is not in the image. */
  #inTreeModules: Promise<InTreeModules> | undefined;
  /** The in-tree list could not be read for now: the verdict may change when asked again. */
  #inTreeTransient = false;

  constructor(
    deps: ImageStageDeps,
    cache: ImageStageCache,
    image: ResolvedImage,
    request: ImageVerifyRequest,
    matcher: ModuleFileMatcher,
    dirName: string,
    platform: Platform,
    pull: PullOptions,
  ) {
    this.#request = request;
    this.#image = image;
    this.#matcher = matcher;
    this.#dirName = dirName;
    this.#platform = platform;
    this.#limits = { ...DEFAULT_LAYER_LIMITS, ...deps.limits };
    this.#kernelDir = matcher.kernelDirectory.slice(0, -1);
    this.#cache = cache;
    let extraBytes = 0;
    this.#walk = new LayerWalk(deps.source, image, {
      want: (path, layer) => this.#wanted(path, layer),
      // Modules are inspected as they stream by and only their facts kept (in the stage cache, per layer digest):
      // the Module's own, its dependencies, and, within a budget, the others of the kernel directory, so checks
      // of other module names in the same image need no second read.
      peek: {
        wants: (path, entry, layer) => {
          const key = moduleFactsKey(layer.digest, path);
          if (!this.#isModuleFile(path) || this.#cache.moduleFacts.get(key)) return false;
          if (entry.size > this.#limits.maxFileBytes) {
            // Too big to read: that is the verdict on this module, not a failure to read the image.
            const limit = `${entry.size} bytes, over the ${this.#limits.maxFileBytes}-byte module size limit`;
            this.#cache.moduleFacts.set(key, {
              ok: false,
              error: new ImageError('LIMIT_EXCEEDED', `${baseNameOf(path)} is ${limit}`),
            });
            return false;
          }
          if (this.#isNeededModule(path)) return true;
          if (extraBytes + entry.size > EXTRA_MODULE_BYTES) return false;
          extraBytes += entry.size;
          return true;
        },
        take: async (path, bytes, layer) => {
          this.#cache.moduleFacts.set(moduleFactsKey(layer.digest, path), await this.#factsOf(path, bytes));
        },
      },
      satisfied: (view) => this.#answerKnown(view),
      cache: cache.layers,
      limits: this.#limits,
      pull,
    });
  }

  async verdict(): Promise<ImageVerdict> {
    await this.#walk.run();
    const view = this.#walk.view;
    const request = this.#request;
    const kernelDirectories = view.directoriesIn(this.#matcher.modulesRoot.slice(0, -1));
    const indexFile = view.lookupFile(`${this.#kernelDir}/modules.dep`);
    const binaryIndex = view.lookupFile(`${this.#kernelDir}/modules.dep.bin`);
    const depmod = indexFile.state === 'present' || binaryIndex.state === 'present';
    const problems: string[] = [];
    const notes: string[] = [];
    let modulesDep: ModulesDep | null = null;
    if (indexFile.state === 'present') {
      modulesDep = await this.#modulesDep(indexFile.file);
    } else if (binaryIndex.state === 'present') {
      try {
        modulesDep = await this.#modulesDep(binaryIndex.file);
        notes.push(
          `/${this.#kernelDir}/modules.dep is missing: read depmod's binary index modules.dep.bin instead`,
        );
      } catch (err) {
        if (!(err instanceof KmodError)) throw err;
        problems.push(
          `/${this.#kernelDir}/modules.dep.bin is not a usable depmod index (${err.message}): ` +
            `add \`RUN depmod -b ${this.#dirName} \${KERNEL_FULL_VERSION}\` to the Dockerfile`,
        );
      }
    }
    const moduleFiles = view
      .filesUnder(this.#kernelDir)
      .filter((f) => moduleNameOfFile(f.path) !== undefined);
    const tree: ImageModuleTree = {
      has: (relative) => view.lookupFile(`${this.#kernelDir}/${relative}`).state === 'present',
      pathOf: (name) => {
        const file = moduleFiles.find((f) => moduleNameOfFile(f.path) === name);
        return file ? this.#relative(file.path) : undefined;
      },
    };
    const findings: ModuleFinding[] = [];
    for (const wanted of this.#matcher.wanted) {
      const finding = await this.#checkModule(
        wanted,
        modulesDep,
        moduleFiles,
        tree,
        kernelDirectories,
        notes,
      );
      findings.push(finding);
      if (finding.problem !== null) problems.push(finding.problem);
    }
    // Without the kernel directory at all, "module not there" already says it; the index is the next fix.
    if (!depmod && (findings.some((f) => f.path !== null) || view.hasDirectory(this.#kernelDir))) {
      problems.push(
        `no depmod index (modules.dep) in /${this.#kernelDir}/, so \`modprobe -d ${this.#dirName}\` cannot find the module: ` +
          `add \`RUN depmod -b ${this.#dirName} \${KERNEL_FULL_VERSION}\` to the Dockerfile`,
      );
    }
    this.#checkFirmware(view, problems, notes);
    const first = findings[0];
    const verified = problems.length === 0;
    const summary = verified
      ? `verified: ${findings.map((f) => describeFound(f)).join('; ')}`
      : problems.join('; ');
    return {
      verified,
      reason: [summary, ...notes].join('; '),
      definite: !this.#inTreeTransient,
      image: this.#image.reference,
      digest: this.#image.digest,
      kernel: request.kernel,
      errorCode: null,
      path: first?.path ?? null,
      vermagic: first?.vermagic ?? null,
      signed: first?.signed ?? null,
      depmod,
      dependencies: first?.dependencies ?? null,
      modules: findings,
      kernelDirectories,
      notes,
    };
  }

  async #checkModule(
    wanted: WantedModule,
    modulesDep: ModulesDep | null,
    moduleFiles: readonly FileRef[],
    tree: ImageModuleTree,
    kernelDirectories: readonly string[],
    notes: string[],
  ): Promise<ModuleFinding> {
    const view = this.#walk.view;
    const candidates = moduleFiles.filter((f) => this.#matcher.match(f.path)?.module === wanted.name);
    const preferred = candidates.find((f) => f.path === wanted.kmmExactPath) ?? candidates[0];
    const none: ModuleFinding = {
      name: wanted.name,
      path: null,
      vermagic: null,
      signed: null,
      signer: null,
      dependencies: null,
      problem: null,
    };
    let file: FileRef | undefined;
    let indexProblem: string | null = null;
    if (modulesDep) {
      const indexed = modulesDep.byName.get(wanted.canonicalName);
      const lookup = indexed === undefined ? undefined : view.lookupFile(`${this.#kernelDir}/${indexed}`);
      if (lookup?.state === 'present') file = lookup.file;
      else if (indexed !== undefined && preferred) {
        indexProblem = `modules.dep names /${this.#kernelDir}/${indexed} but the image holds /${preferred.path}: run depmod after the module is in place`;
      } else if (indexed === undefined && preferred) {
        indexProblem = `modules.dep in /${this.#kernelDir}/ does not list ${wanted.name} (the image holds /${preferred.path}): run depmod after the module is in place`;
      } else if (indexed !== undefined) {
        const notFound = this.#notFound(wanted, kernelDirectories);
        return { ...none, problem: `${notFound} (modules.dep still names /${this.#kernelDir}/${indexed})` };
      }
    } else {
      file = preferred;
    }
    if (file === undefined && indexProblem === null) {
      return { ...none, problem: this.#notFound(wanted, kernelDirectories) };
    }
    const inspected = file ?? preferred;
    if (inspected === undefined) return { ...none, problem: indexProblem };
    const path = `/${inspected.path}`;
    let info: ModuleInspection;
    try {
      info = await this.#inspect(inspected);
    } catch (err) {
      if (isModuleFault(err)) {
        return {
          ...none,
          path,
          problem: indexProblem ?? `${path} is not a loadable kernel module: ${err.message}`,
        };
      }
      throw err;
    }
    const problems: string[] = indexProblem === null ? [] : [indexProblem];
    const release = info.kernelRelease;
    if (release === undefined) problems.push(`${path} has no vermagic in .modinfo: modprobe would refuse it`);
    else if (release !== this.#request.kernel) {
      problems.push(
        `${path} was built for ${release}, not ${this.#request.kernel} (vermagic "${(info.vermagic ?? '').trim()}")`,
      );
    }
    if (info.architecture !== this.#platform.architecture) {
      const built = info.architecture === undefined ? '' : `${info.architecture} `;
      problems.push(
        `${path} is built for ${built}(ELF machine ${info.machine}), but the nodes are ${this.#platform.architecture}`,
      );
    }
    if (this.#request.requireSignature && info.signature === null) {
      problems.push(`${path} is not signed, but a sign section applies to kernel ${this.#request.kernel}`);
    }
    if (inspected.path.endsWith('.ko.gz')) {
      notes.push(
        `${path} is gzip-compressed: a kmod built without zlib cannot load .ko.gz (prefer .ko.xz or .ko.zst)`,
      );
    }
    const inTreeSource = this.#request.inTreeModules;
    const report = await resolveDependencies(
      { name: wanted.name, path: this.#relative(inspected.path), depends: info.depends },
      modulesDep,
      tree,
      {
        kernel: this.#request.kernel,
        kernelDirectory: `/${this.#kernelDir}/`,
        ...(inTreeSource === undefined ? {} : { inTreeModules: () => this.#loadInTree(inTreeSource) }),
      },
    );
    for (const missing of report.missing) problems.push(missing.reason);
    if (report.inTreeUnknown !== undefined) {
      const several = report.assumedInTree.length > 1;
      notes.push(
        `note: ${wanted.name} depends on ${report.assumedInTree.join(', ')}, not in the image: assumed ` +
          `${several ? 'to be in-tree modules' : 'to be an in-tree module'} of ${this.#request.kernel}, unverified ` +
          `(${report.inTreeUnknown.why})`,
      );
      if (report.inTreeUnknown.transient) this.#inTreeTransient = true;
    }
    return {
      name: wanted.name,
      path,
      vermagic: info.vermagic ?? null,
      signed: info.signature !== null,
      signer: info.signature?.signer ?? null,
      dependencies: {
        found: report.found,
        missing: report.missing.map((m) => m.name),
        inTree: report.inTree,
        assumedInTree: report.assumedInTree,
      },
      problem: problems.length === 0 ? null : problems.join('; '),
    };
  }

  #notFound(wanted: WantedModule, kernelDirectories: readonly string[]): string {
    const modulesRoot = `/${this.#matcher.modulesRoot}`;
    const where =
      kernelDirectories.length === 0
        ? `the image has no ${modulesRoot} directory`
        : kernelDirectories.includes(this.#request.kernel)
          ? `the image's ${modulesRoot}${this.#request.kernel}/ holds no such module`
          : `the image has modules for: ${kernelDirectories.join(', ')}`;
    return (
      `module ${wanted.name} is not at /${wanted.kmmExactPath} ` +
      `(nor under /${this.#kernelDir}/ as .ko/.ko.xz/.ko.zst/.ko.gz with - or _): ${where}`
    );
  }

  #checkFirmware(view: ImageView, problems: string[], notes: string[]): void {
    const firmwarePath = this.#request.modprobe.firmwarePath;
    if (firmwarePath === undefined || firmwarePath === '') return;
    const dir = normalizeImagePath(firmwarePath);
    if (view.filesUnder(dir).length > 0) return;
    if (view.hasDirectory(dir)) {
      notes.push(
        `warning: firmwarePath /${dir} is empty in the image: KMM will copy no firmware to the node`,
      );
    } else {
      problems.push(`firmwarePath /${dir} does not exist in the image`);
    }
  }

  /**
   * Content the verdict needs from the kernel directory: depmod's index, and the Module's modules and their
   * dependencies unless their facts are already known for this layer.
   */
  #wanted(path: string, layer: Descriptor): boolean {
    if (path === `${this.#kernelDir}/modules.dep` || path === `${this.#kernelDir}/modules.dep.bin`)
      return true;
    return (
      this.#isNeededModule(path) &&
      this.#cache.moduleFacts.get(moduleFactsKey(layer.digest, path)) === undefined
    );
  }

  #isModuleFile(path: string): boolean {
    return isAtOrUnder(path, this.#kernelDir) && moduleNameOfFile(baseNameOf(path)) !== undefined;
  }

  #isNeededModule(path: string): boolean {
    if (!isAtOrUnder(path, this.#kernelDir)) return false;
    if (this.#matcher.match(path)) return true;
    const name = moduleNameOfFile(baseNameOf(path));
    return name !== undefined && this.#dependencyNames.has(name);
  }

  /**
   * After each layer: is everything the verdict depends on decided? The index, the file it names for each module,
   * the files of their dependencies, and some firmware. Anything missing so far may still be in a lower layer.
   */
  async #answerKnown(view: ImageView): Promise<boolean> {
    const index = view.lookupFile(`${this.#kernelDir}/modules.dep`);
    if (index.state !== 'present') return false;
    const modulesDep = await this.#modulesDep(index.file);
    for (const wanted of this.#matcher.wanted) {
      const relative = modulesDep.byName.get(wanted.canonicalName);
      if (relative === undefined) return false;
      const module = view.lookupFile(`${this.#kernelDir}/${relative}`);
      if (module.state !== 'present') return false;
      const dependencyPaths = [...(modulesDep.entries.get(relative) ?? [])];
      let info: ModuleInspection;
      try {
        info = await this.#inspect(module.file);
      } catch (err) {
        if (isModuleFault(err)) return true; // the verdict is "not a module" whatever lies below
        throw err;
      }
      for (const name of info.depends) {
        const indexed = modulesDep.byName.get(canonicalModuleName(name));
        if (indexed !== undefined) dependencyPaths.push(indexed);
      }
      for (const dependency of dependencyPaths) {
        const name = moduleNameOfFile(dependency);
        if (name !== undefined) this.#dependencyNames.add(name);
        if (view.lookupFile(`${this.#kernelDir}/${dependency}`).state === 'unknown') return false;
      }
    }
    const firmwarePath = this.#request.modprobe.firmwarePath;
    return (
      firmwarePath === undefined ||
      firmwarePath === '' ||
      view.filesUnder(normalizeImagePath(firmwarePath)).length > 0
    );
  }

  /** The facts of a module file: from the stage cache (learnt while its layer streamed by), else read back now. */
  async #inspect(file: FileRef): Promise<ModuleInspection> {
    const layer = this.#image.manifest.layers[file.layerIndex];
    const key = moduleFactsKey(layer?.digest ?? '', file.storedPath);
    let facts: Promise<ModuleFacts> | ModuleFacts | undefined =
      this.#cache.moduleFacts.get(key) ?? this.#inspections.get(key);
    if (facts === undefined) {
      const pending = this.#content(file).then(async (bytes) => {
        const learnt = await this.#factsOf(file.storedPath, bytes);
        this.#cache.moduleFacts.set(key, learnt);
        return learnt;
      });
      this.#inspections.set(key, pending);
      facts = pending;
    }
    const known = await facts;
    if (!known.ok) throw known.error;
    return known.inspection;
  }

  async #factsOf(path: string, bytes: Buffer): Promise<ModuleFacts> {
    try {
      return { ok: true, inspection: await inspectModule(path, bytes, this.#limits.maxFileBytes) };
    } catch (err) {
      if (isModuleFault(err)) return { ok: false, error: err };
      throw err;
    }
  }

  #loadInTree(source: InTreeModuleSource): Promise<InTreeModules> {
    this.#inTreeModules ??= source.load();
    return this.#inTreeModules;
  }

  #modulesDep(file: FileRef): Promise<ModulesDep> {
    const key = `${file.layerIndex}:${file.storedPath}`;
    let parsed = this.#parsedIndexes.get(key);
    if (!parsed) {
      parsed = this.#content(file).then((bytes) =>
        parseModulesDep(
          file.path.endsWith('.bin') ? modulesDepTextFromIndex(bytes) : bytes.toString('utf8'),
          { kernel: this.#request.kernel, root: normalizeImagePath(this.#dirName) },
        ),
      );
      this.#parsedIndexes.set(key, parsed);
    }
    return parsed;
  }

  async #content(file: FileRef): Promise<Buffer> {
    const content = (await this.#walk.contents([file])).get(file.path);
    if (!content)
      throw new ImageError('INVALID_MANIFEST', `/${file.path} could not be read back from its layer`);
    return content;
  }

  #relative(path: string): string {
    return path.slice(this.#kernelDir.length + 1);
  }
}

/** The file itself is why it would not load (not a module, or over the module size limit), not the registry. */
function isModuleFault(err: unknown): err is KmodError | ImageError {
  return err instanceof KmodError || (err instanceof ImageError && err.code === 'LIMIT_EXCEEDED');
}

function describeFound(finding: ModuleFinding): string {
  const signed = finding.signed ? `signed${finding.signer ? ` by ${finding.signer}` : ''}` : 'unsigned';
  const release = finding.vermagic?.trim().split(/\s+/)[0] ?? 'unknown kernel';
  const found = finding.dependencies?.found ?? [];
  const inTree = finding.dependencies?.inTree ?? [];
  const deps =
    (found.length > 0 ? `, with ${found.join(', ')}` : '') +
    (inTree.length > 0 ? `, with in-tree ${inTree.join(', ')}` : '');
  return `${finding.name} at ${finding.path ?? '?'} (built for ${release}, ${signed}${deps})`;
}

function registryFailure(
  request: ImageVerifyRequest,
  platform: Platform,
  err: ImageError,
  image?: ResolvedImage,
): ImageVerdict {
  const reference = image?.reference ?? request.reference;
  // Who was denied (anonymous, which user, a token) is the registry client's to say: it knows what it sent.
  const denied = `access to ${reference} denied`;
  // Each lead names the image once; the registry's answer follows without the image name and without the words
  // the lead already says.
  const reasons: Partial<Record<ImageError['code'], readonly [lead: string, said: string]>> = {
    NOT_FOUND: [`image ${reference} does not exist`, 'not found'],
    UNAUTHORIZED: [denied, 'access denied'],
    DENIED: [denied, 'access denied'],
    NO_PLATFORM: [
      `no image for ${formatPlatform(platform)} in ${reference}`,
      `no image for ${formatPlatform(platform)}`,
    ],
    UNREACHABLE: [`registry unreachable for ${reference}`, ''],
    TIMEOUT: [`registry timed out for ${reference}`, ''],
  };
  const [lead, said] = reasons[err.code] ?? [`cannot read ${reference}`, ''];
  const answer = imageErrorAnswer(err, reference);
  const rest = said !== '' && answer.startsWith(said) ? answer.slice(said.length) : `: ${answer}`;
  return unreadVerdict(request, {
    reason: `${lead}${rest}`,
    definite: err.definite,
    errorCode: err.code,
    ...(image ? { image } : {}),
  });
}

function unreadVerdict(
  request: ImageVerifyRequest,
  outcome: { reason: string; definite: boolean; errorCode: ImageError['code'] | null; image?: ResolvedImage },
): ImageVerdict {
  return {
    verified: false,
    reason: outcome.reason,
    definite: outcome.definite,
    image: outcome.image?.reference ?? request.reference,
    digest: outcome.image?.digest ?? null,
    kernel: request.kernel,
    errorCode: outcome.errorCode,
    path: null,
    vermagic: null,
    signed: null,
    depmod: null,
    dependencies: null,
    modules: [],
    kernelDirectories: [],
    notes: [],
  };
}

/** `opt`, `/opt/`, `./opt` → `/opt`; '' or `/` → `/`. */
function absoluteDir(dirName: string): string {
  return `/${normalizeImagePath(dirName === '' ? '/opt' : dirName)}`;
}
