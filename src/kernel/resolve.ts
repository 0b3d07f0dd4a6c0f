import type { LocalObjectReference, StringMap } from '../api/meta.ts';
import { DEFAULT_MODPROBE_DIR } from './constants.ts';
import type {
  BuildArg,
  BuildSpec,
  ImagePullPolicy,
  KernelMapping,
  ModprobeSpec,
  Module,
  ModuleLoaderContainer,
  RegistryTLS,
  SignSpec,
} from '../api/module.ts';
import { parseImageReference } from '../image/reference.ts';
import { failure } from './errors.ts';
import type { KernelResult } from './errors.ts';
import { findKernelMapping } from './mapping.ts';
import { RegexpCache } from './regexp.ts';
import { containerImageVariables, kernelVariables, substitute } from './substitute.ts';
import type { Variables } from './substitute.ts';
import { parseKernelVersion } from './version.ts';
import type { KernelVersion } from './version.ts';

/**
 * Everything preflight needs to validate one Module for one kernel: the matching kernel mapping merged over the
 * Module's container defaults, with variables substituted (KMM's ModuleLoaderData, kmm-anchor.md 1.5-1.6).
 */
export interface ModuleLoaderData {
  readonly name: string;
  readonly namespace: string;
  /** The kernel as given (trimmed): what mappings matched and where modprobe looks. */
  readonly kernel: string;
  readonly kernelVersion: KernelVersion;
  /** Index of the kernel mapping that matched. */
  readonly mappingIndex: number;
  /** Mapping's image, else the Module's, with variables substituted. Parses as an image reference. */
  readonly containerImage: string;
  /** Mapping's registryTLS, else the Module's (empty object when neither is set, as KMM). */
  readonly registryTLS: RegistryTLS;
  /** Present iff the Module or the mapping has a build section (merged). */
  readonly build?: BuildSpec;
  /** Present iff the Module or the mapping has a sign section (merged; unsignedImage and filesToSign substituted). */
  readonly sign?: SignSpec;
  /** The Module's modprobe, with `dirName` defaulted to /opt. */
  readonly modprobe: ModprobeSpec & { readonly dirName: string };
  readonly imageRepoSecret?: LocalObjectReference;
  readonly inTreeModulesToRemove?: readonly string[];
  readonly imagePullPolicy?: ImagePullPolicy;
  readonly version?: string;
  readonly selector: StringMap;
  readonly serviceAccountName?: string;
}

export interface ResolveOptions {
  /** Compiled-regexp cache; share one across calls (the webhook and runner resolve many Modules). */
  readonly regexps?: RegexpCache;
}

const defaultRegexps = new RegexpCache();

/**
 * Resolves a Module for a kernel: parse the kernel, find the mapping (first match wins), merge it over the Module,
 * substitute variables and check that the resulting image parses. Never throws on bad input: every failure is a
 * definite KernelError (INVALID_KERNEL, NO_MODULE_LOADER, NO_MAPPING, INVALID_REGEXP, NO_CONTAINER_IMAGE,
 * INVALID_SUBSTITUTION, INVALID_IMAGE).
 */
export function resolveModuleForKernel(
  module: Module,
  kernel: string,
  options: ResolveOptions = {},
): KernelResult<ModuleLoaderData> {
  const parsedKernel = parseKernelVersion(kernel);
  if (!parsedKernel.ok) return parsedKernel;
  const kernelVersion = parsedKernel.data;

  const container = module.spec.moduleLoader?.container;
  if (container === undefined) {
    return failure(
      'NO_MODULE_LOADER',
      'the Module has no spec.moduleLoader.container: there is no kernel module to load',
    );
  }
  const found = findKernelMapping(
    container.kernelMappings,
    kernelVersion.raw,
    options.regexps ?? defaultRegexps,
  );
  if (!found.ok) return found;
  const { index, mapping } = found.data;

  const imageTemplate =
    mapping.containerImage !== undefined && mapping.containerImage !== ''
      ? mapping.containerImage
      : container.containerImage;
  if (imageTemplate === undefined || imageTemplate === '') {
    return failure(
      'NO_CONTAINER_IMAGE',
      `no container image for kernel ${kernelVersion.raw}: set spec.moduleLoader.container.kernelMappings[${index}]` +
        '.containerImage or spec.moduleLoader.container.containerImage',
    );
  }
  const image = substitute(
    imageTemplate,
    containerImageVariables(kernelVersion, module.metadata.name, module.metadata.namespace),
  );
  if (!image.ok) return image;
  const reference = parseImageReference(image.data);
  if (!reference.ok) {
    return failure('INVALID_IMAGE', `kernelMappings[${index}] gives ${reference.error.message}`);
  }

  const sign = mergeSign(container.sign, mapping.sign, kernelVariables(kernelVersion));
  if (sign !== undefined && !sign.ok) return sign;
  const build = mergeBuild(container.build, mapping.build);
  const inTreeModulesToRemove = mergeInTreeModulesToRemove(container, mapping);
  const registryTLS = mapping.registryTLS ?? container.registryTLS;

  const data: ModuleLoaderData = {
    name: module.metadata.name,
    namespace: module.metadata.namespace,
    kernel: kernelVersion.raw,
    kernelVersion,
    mappingIndex: index,
    containerImage: image.data,
    registryTLS: registryTLS === undefined ? {} : structuredClone(registryTLS),
    ...(build === undefined ? {} : { build }),
    ...(sign === undefined ? {} : { sign: sign.data }),
    modprobe: {
      ...structuredClone(container.modprobe),
      dirName:
        container.modprobe.dirName === undefined || container.modprobe.dirName === ''
          ? DEFAULT_MODPROBE_DIR
          : container.modprobe.dirName,
    },
    ...optional('imageRepoSecret', module.spec.imageRepoSecret),
    // Already a fresh array.
    ...(inTreeModulesToRemove === undefined ? {} : { inTreeModulesToRemove }),
    ...optional('imagePullPolicy', container.imagePullPolicy),
    ...optional('version', container.version),
    selector: { ...module.spec.selector },
    ...optional('serviceAccountName', module.spec.moduleLoader?.serviceAccountName),
  };
  return { ok: true, data };
}

/** `{ key: copy of value }`, or `{}` when value is undefined. Strings need no copy (structuredClone is not cheap). */
function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  if (value === undefined) return {};
  return { [key]: typeof value === 'object' ? structuredClone(value) : value } as { [P in K]?: V };
}

/**
 * KMM's build merge: the Module's build, with the mapping's dockerfileConfigMap (if set) replacing it, the
 * mapping's buildArgs replacing same-named ones in place and the rest appended sorted by name, and the mapping's
 * secrets appended. Either side alone is used as is.
 */
export function mergeBuild(moduleBuild?: BuildSpec, mappingBuild?: BuildSpec): BuildSpec | undefined {
  if (moduleBuild === undefined)
    return mappingBuild === undefined ? undefined : structuredClone(mappingBuild);
  const merged = structuredClone(moduleBuild);
  if (mappingBuild === undefined) return merged;
  if (mappingBuild.dockerfileConfigMap !== undefined) {
    merged.dockerfileConfigMap = structuredClone(mappingBuild.dockerfileConfigMap);
  }
  const buildArgs = overrideBuildArgs(merged.buildArgs ?? [], mappingBuild.buildArgs ?? []);
  if (buildArgs.length > 0) merged.buildArgs = buildArgs;
  const secrets = [...(merged.secrets ?? []), ...structuredClone(mappingBuild.secrets ?? [])];
  if (secrets.length > 0) merged.secrets = secrets;
  return merged;
}

function overrideBuildArgs(args: readonly BuildArg[], overrides: readonly BuildArg[]): BuildArg[] {
  // The last override of a name wins, as in KMM's map.
  const byName = new Map(overrides.map((arg) => [arg.name, arg]));
  const result = args.map((arg) => ({ ...(byName.get(arg.name) ?? arg) }));
  const used = new Set(args.map((arg) => arg.name));
  const unused = [...byName.keys()].filter((name) => !used.has(name)).sort();
  for (const name of unused) {
    const arg = byName.get(name);
    if (arg !== undefined) result.push({ ...arg });
  }
  return result;
}

/**
 * KMM's sign merge: the Module's sign, with the mapping's unsignedImage, keySecret and certSecret replacing it
 * when set and its filesToSign appended; then unsignedImage and filesToSign get the kernel variables (only).
 */
export function mergeSign(
  moduleSign: SignSpec | undefined,
  mappingSign: SignSpec | undefined,
  variables: Variables,
): KernelResult<SignSpec> | undefined {
  if (moduleSign === undefined && mappingSign === undefined) return undefined;
  const merged = structuredClone(moduleSign ?? mappingSign ?? {});
  if (moduleSign !== undefined && mappingSign !== undefined) {
    if (mappingSign.unsignedImage !== undefined && mappingSign.unsignedImage !== '') {
      merged.unsignedImage = mappingSign.unsignedImage;
    }
    if (mappingSign.keySecret !== undefined) merged.keySecret = structuredClone(mappingSign.keySecret);
    if (mappingSign.certSecret !== undefined) merged.certSecret = structuredClone(mappingSign.certSecret);
    const files = [...(merged.filesToSign ?? []), ...(mappingSign.filesToSign ?? [])];
    if (files.length > 0) merged.filesToSign = files;
  }
  if (merged.unsignedImage !== undefined) {
    const unsignedImage = substitute(merged.unsignedImage, variables);
    if (!unsignedImage.ok) return unsignedImage;
    merged.unsignedImage = unsignedImage.data;
  }
  if (merged.filesToSign !== undefined) {
    const files: string[] = [];
    for (const file of merged.filesToSign) {
      const substituted = substitute(file, variables);
      if (!substituted.ok) return substituted;
      files.push(substituted.data);
    }
    merged.filesToSign = files;
  }
  return { ok: true, data: merged };
}

/**
 * The mapping's inTreeModulesToRemove replaces the Module's when set (even empty); the deprecated single
 * inTreeModuleToRemove (mapping's, else the Module's) wins over both when set, as in KMM.
 */
export function mergeInTreeModulesToRemove(
  container: ModuleLoaderContainer,
  mapping: KernelMapping,
): string[] | undefined {
  const single =
    mapping.inTreeModuleToRemove !== undefined && mapping.inTreeModuleToRemove !== ''
      ? mapping.inTreeModuleToRemove
      : container.inTreeModuleToRemove;
  if (single !== undefined && single !== '') return [single];
  const list = mapping.inTreeModulesToRemove ?? container.inTreeModulesToRemove;
  return list === undefined ? undefined : [...list];
}
