// The runtime client as the berth command uses it: pull, run, images, rmi and login over one local
// store, with registry clients (and their cached tokens) made once per registry.
import { join } from 'node:path';
import { containerProcess, writeBundle, type ContainerProcess, type RunSettings } from './bundle.ts';
import { CredentialStore, type Credentials } from './credentials.ts';
import { ClientError } from './errors.ts';
import { formatPlatform, hostPlatform, parsePlatform, refuseForeignOs, type Platform } from './platform.ts';
import { createProgress } from './progress.ts';
import { pullImage, type ImageConfig } from './pull.ts';
import { formatReference, parseReference, type ImageReference } from './reference.ts';
import { RegistryClient, registryBaseUrl } from './registry.ts';
import { chooseRuntime, runContainer, type RuntimeChoice } from './runtime.ts';
import { LocalStore, type ContainerRecord, type ImageRecord } from './store.ts';
import { unpackLayers, type UnpackLimits } from './unpack.ts';
import { processLives } from '../platform/index.ts';

export interface ClientOptions {
  /** The local store's folder (blobs, images, containers, credentials). */
  home: string;
  /** Where one-part and other unqualified names are pulled from. */
  defaultRegistry: string;
  /** Registries spoken to over plain HTTP (loopback ones always are). */
  insecureRegistries: string[];
  runtime: RuntimeChoice;
  /** What one image may unpack to for berth run. */
  unpackLimits: UnpackLimits;
  /** Where progress goes (stderr). */
  progressStream?: NodeJS.WriteStream;
}

export interface RunOptions extends RunSettings {
  platform?: string;
  /** Remove the container's folder (bundle and root filesystem) when it exits. */
  remove: boolean;
}

export class Client {
  readonly store: LocalStore;
  readonly credentials: CredentialStore;
  private readonly registries = new Map<string, RegistryClient>();

  constructor(private readonly options: ClientOptions) {
    this.store = new LocalStore(options.home);
    this.credentials = new CredentialStore(join(options.home, 'credentials.json'));
  }

  parse(text: string): ImageReference {
    return parseReference(text, this.options.defaultRegistry);
  }

  registry(host: string, credentials = this.credentials.get(host)): RegistryClient {
    let client = this.registries.get(host);
    if (!client) {
      client = new RegistryClient({
        registry: host,
        baseUrl: registryBaseUrl(host, this.options.insecureRegistries),
        ...(credentials ? { credentials } : {}),
        userAgent: 'berth-client',
      });
      this.registries.set(host, client);
    }
    return client;
  }

  async pull(text: string, platformText?: string): Promise<ImageRecord> {
    const ref = this.parse(text);
    const platform = platformText ? parsePlatform(platformText) : hostPlatform();
    const progress = createProgress(this.options.progressStream);
    try {
      progress.note(`Pulling ${formatReference(ref)} (${formatPlatform(platform)})`);
      return await pullImage(ref, { client: this.registry(ref.registry), store: this.store, progress, platform });
    } finally {
      progress.stop();
    }
  }

  /** The local image a reference names, for the wanted platform when one is given. */
  find(ref: ImageReference, platform?: Platform): ImageRecord | undefined {
    const name = `${ref.registry}/${ref.repository}`;
    return this.store.images().find(
      (r) =>
        r.name === name &&
        (ref.digest ? r.digest === ref.digest || r.manifest === ref.digest : r.tag === ref.tag) &&
        (!platform || (r.platform.os === platform.os && r.platform.architecture === platform.architecture)),
    );
  }

  /** Runs an image (pulled first when not in the store); resolves with the container's exit code. */
  async run(text: string, options: RunOptions): Promise<number> {
    const ref = this.parse(text);
    const host = hostPlatform();
    const wanted = options.platform ? parsePlatform(options.platform) : host;
    const image = this.find(ref, options.platform ? wanted : undefined) ?? (await this.pull(text, options.platform));
    refuseForeignOs(formatReference(ref), image.platform, host);

    const config = JSON.parse(this.store.readBlob(image.config).toString()) as ImageConfig;
    const diffIds = config.rootfs?.diff_ids ?? [];
    // One diff_id per layer, as the image spec requires: a layer without one would go unchecked.
    if (diffIds.length !== image.layers.length) {
      throw new ClientError(`${formatReference(ref)}: the config lists ${diffIds.length} diff_ids for ${image.layers.length} layers`);
    }
    const { id, dir } = this.store.newContainerDir();
    let proc: ContainerProcess;
    try {
      const { skippedNodes } = await unpackLayers(
        image.layers.map((l, i) => ({ path: this.store.blobPath(l.digest), digest: l.digest, diffId: diffIds[i]! })),
        join(dir, 'rootfs'),
        this.options.unpackLimits,
      );
      // One line however many: the container gets its own /dev from the runtime, so it usually runs as well.
      if (skippedNodes > 0) {
        process.stderr.write(`berth: warning: skipped ${skippedNodes} device ${skippedNodes === 1 ? 'node or FIFO' : 'nodes and FIFOs'} of the image: making them is not permitted here\n`);
      }
      proc = containerProcess(config, { ...options, hostname: options.hostname ?? id }, join(dir, 'rootfs'));
      writeBundle(dir, proc, options.hostname ?? id);
    } catch (err) {
      // No container came to be: nothing of it stays, --rm or not.
      this.store.removeContainerDir(dir);
      throw err;
    }
    const record: ContainerRecord = {
      id,
      image: formatReference(ref),
      imageId: image.config,
      command: proc.args,
      created: new Date().toISOString(),
      runnerPid: process.pid,
    };
    if (!options.remove) this.store.writeContainer(record);
    let exitCode: number | undefined;
    try {
      const runtime = chooseRuntime(this.options.runtime);
      exitCode = await runContainer(runtime, { dir, id, stateDir: join(this.options.home, 'runtime', runtime.name), process: proc });
      return exitCode;
    } finally {
      if (options.remove) this.store.removeContainerDir(dir);
      else this.store.writeContainer({ ...record, ...(exitCode !== undefined ? { exitCode } : {}), finishedAt: new Date().toISOString() });
    }
  }

  /** The kept containers (run without --rm), newest first, with what they are doing. */
  containers(): Array<ContainerRecord & { running: boolean }> {
    return this.store.containers().map((c) => ({ ...c, running: c.finishedAt === undefined && processLives(c.runnerPid) }));
  }

  /** Removes kept containers by ID or unique ID prefix; a running one is refused. Returns the full IDs. */
  rm(prefix: string): string {
    const matches = this.containers().filter((c) => c.id.startsWith(prefix));
    if (matches.length === 0 || prefix.length === 0) throw new ClientError(`no such container: ${prefix}`);
    if (matches.length > 1) throw new ClientError(`${prefix} names ${matches.length} containers: give more of the ID`);
    const container = matches[0]!;
    if (container.running) throw new ClientError(`container ${container.id} is running (berth process ${container.runnerPid}): stop it first`);
    this.store.removeContainerDir(this.store.containerDir(container.id));
    return container.id;
  }

  images(): Array<ImageRecord & { size: number }> {
    return this.store.images().map((r) => ({ ...r, size: this.store.imageSize(r) }));
  }

  /** Removes an image by reference or by image ID (a prefix of its config digest), and the blobs nothing else uses. */
  rmi(text: string): { removed: ImageRecord[]; blobs: string[] } {
    const id = /^(sha256:)?[a-f0-9]{12,64}$/.test(text) ? text.replace(/^sha256:/, '') : undefined;
    if (id && this.store.images().some((r) => r.config.startsWith(`sha256:${id}`))) {
      return this.store.removeImage((r) => r.config.startsWith(`sha256:${id}`), text);
    }
    const ref = this.parse(text);
    const name = `${ref.registry}/${ref.repository}`;
    const matches = (r: ImageRecord) =>
      r.name === name && (ref.digest ? r.digest === ref.digest || r.manifest === ref.digest : r.tag === ref.tag);
    return this.store.removeImage(matches, formatReference(ref));
  }

  /** Checks the credentials against the registry (as docker login does) and stores them. */
  async login(registry: string, credentials: Credentials): Promise<void> {
    if (!registry || registry.includes('/')) throw new ClientError(`expected a registry host[:port], not ${JSON.stringify(registry)}`);
    const fresh = new RegistryClient({
      registry,
      baseUrl: registryBaseUrl(registry, this.options.insecureRegistries),
      credentials,
      userAgent: 'berth-client',
    });
    await fresh.ping();
    this.credentials.set(registry, credentials);
    this.registries.delete(registry);
  }
}
