import type { InTreeModules } from '../kmod/dependencies.ts';
import type { ImageErrorCode, Platform, RegistryTLS } from '../source.ts';

/** The modprobe settings of a Module (`spec.moduleLoader.container.modprobe`) that decide where modules must be. */
export interface ModprobeTarget {
  readonly moduleName?: string;
  /** `modprobe -d`; default `/opt`. */
  readonly dirName?: string;
  readonly modulesLoadingOrder?: readonly string[];
  /** Directory in the image KMM copies to the node's firmware path. */
  readonly firmwarePath?: string;
}

export interface ImageVerifyRequest {
  readonly reference: string;
  /** Target kernel release (`uname -r` of the upgraded nodes). */
  readonly kernel: string;
  readonly modprobe: ModprobeTarget;
  /** A sign section applies for this kernel: the module must carry a signature. */
  readonly requireSignature?: boolean;
  /** Target nodes' platform; default linux/amd64. */
  readonly platform?: Platform;
  readonly tls?: RegistryTLS;
  /** Opaque credentials for the source (see src/image/source.ts PullOptions). */
  readonly credentials?: unknown;
  readonly signal?: AbortSignal;
  /**
   * The target kernel's in-tree modules, for dependencies the image does not hold. Without it (an offline kernel),
   * such dependencies are assumed in-tree and said so.
   */
  readonly inTreeModules?: InTreeModuleSource;
}

export type { InTreeModules };

/**
 * Where the target kernel's in-tree module list comes from (the release's driver-toolkit image). Read on demand:
 * only when some module depends on a module its image does not hold.
 */
export interface InTreeModuleSource {
  /** What the list is read from, e.g. `driver-toolkit image quay.io/...@sha256:...`; part of the verdict cache key. */
  readonly description: string;
  load(): Promise<InTreeModules>;
}

/** A module's dependencies as the Image stage classified them (folded names). */
export interface DependencyFindings {
  /** In the image under the same kernel directory. */
  readonly found: readonly string[];
  /** Neither in the image nor (when the in-tree list is known) in-tree: modprobe would fail. */
  readonly missing: readonly string[];
  /** Not in the image, but in-tree modules of the target kernel. */
  readonly inTree: readonly string[];
  /** Not in the image, and the in-tree list is unknown: assumed in-tree, not verified. */
  readonly assumedInTree: readonly string[];
}

/** What was found for one module of `modulesLoadingOrder` (or the one `moduleName`). */
export interface ModuleFinding {
  readonly name: string;
  /** Image path of the file modprobe would load (absolute, e.g. `/opt/lib/modules/<k>/extra/m.ko.xz`), or null. */
  readonly path: string | null;
  readonly vermagic: string | null;
  /** True when it carries a PKCS#7 signature trailer; null when the file was not read. */
  readonly signed: boolean | null;
  readonly signer: string | null;
  /** Its dependencies; null when the module was not read. */
  readonly dependencies: DependencyFindings | null;
  /** Why this module would not load, or null. */
  readonly problem: string | null;
}

/**
 * The Image stage's answer. `reason` is one sentence (or several joined by `; `) a person can act on; `definite`
 * false means asking again later may change it (unreachable registry, timeout). Values unknown are null.
 */
export interface ImageVerdict {
  readonly verified: boolean;
  readonly reason: string;
  readonly definite: boolean;
  /** The reference as the source normalised it (as given, when it did not resolve). */
  readonly image: string;
  readonly digest: string | null;
  readonly kernel: string;
  /** Set when the image itself could not be read (the registry's answer), else null. */
  readonly errorCode: ImageErrorCode | null;
  /** The first module's facts (the Module's moduleName), as `kmm-preflight image -o json` prints them. */
  readonly path: string | null;
  readonly vermagic: string | null;
  readonly signed: boolean | null;
  /** depmod's index for the kernel is in the image (true), is not (false), or the image was not read (null). */
  readonly depmod: boolean | null;
  readonly dependencies: DependencyFindings | null;
  readonly modules: readonly ModuleFinding[];
  /** Kernel directories the image has under `<dirName>/lib/modules/` (when the image was read). */
  readonly kernelDirectories: readonly string[];
  /** Warnings that do not block loading: in-tree dependencies assumed, empty firmware directory, `.ko.gz`. */
  readonly notes: readonly string[];
}
