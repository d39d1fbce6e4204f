import { expect } from 'chai';
import { createDriver } from '../../server/app.ts';
import { ConfigError, loadClientConfig, loadConfig } from '../../server/config.ts';
import { onBaseUrl } from '../../server/distribution/blobs.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { directIO, FilesystemDriver } from '../../storage/index.ts';
import { S3Driver } from '../../storage/driver/s3/index.ts';

// The SDK's one warning that its 2027 releases need Node 22: true, and noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

describe('configuration: the S3 driver', () => {
  it('BERTH_S3_BUCKET selects the S3 driver, with region, endpoint, prefix and path style', async () => {
    const config = loadConfig({
      BERTH_S3_BUCKET: 'registry-blobs',
      BERTH_S3_ENDPOINT: 'http://127.0.0.1:9000',
      BERTH_S3_PREFIX: 'team/registry',
      BERTH_S3_FORCE_PATH_STYLE: 'true',
    });
    expect(config.s3).to.deep.equal({
      bucket: 'registry-blobs',
      endpoint: 'http://127.0.0.1:9000',
      region: 'us-east-1',
      prefix: 'team/registry',
      forcePathStyle: true,
      partSize: 16 * 1024 * 1024,
      requestTimeoutMs: 60_000,
      redirect: undefined,
    });
    const driver = await createDriver(config);
    expect(driver.name).to.equal('s3');
    expect((driver as S3Driver).bucket.name).to.equal('registry-blobs');
    expect((driver as S3Driver).keys.object('/blobs/x')).to.equal('team/registry/blobs/x');
    await driver.close!();
    expect(await createDriver(loadConfig({}))).to.be.instanceOf(FilesystemDriver);
  });

  for (const [variable, value, says] of [
    ['BERTH_S3_PART_SIZE', '1048576', 'BERTH_S3_PART_SIZE'],
    ['BERTH_S3_BUCKET', 'a', 'bucket name'],
    ['BERTH_S3_ENDPOINT', 'not a url', 'BERTH_S3_ENDPOINT'],
    ['BERTH_S3_PREFIX', '../up', 'BERTH_S3_PREFIX'],
    ['BERTH_S3_FORCE_PATH_STYLE', 'maybe', 'BERTH_S3_FORCE_PATH_STYLE'],
  ] as const) {
    it(`refuses ${variable}=${value} with a message that names it`, () => {
      expect(() => loadConfig({ BERTH_S3_BUCKET: 'registry-blobs', [variable]: value })).to.throw(ConfigError, says);
    });
  }
});

describe('configuration by concern', () => {
  it('the server reads its settings and S3\'s, and refuses a wrong S3 setting even without a bucket', () => {
    expect(loadConfig({}).s3).to.equal(undefined);
    expect(() => loadConfig({ BERTH_S3_REGION: 'bad region!' })).to.throw(ConfigError, /BERTH_S3_REGION: expected a region name/);
    expect(loadConfig({})).to.not.have.any.keys('s3Bucket', 's3Region', 'clientHome', 'runtime');
  });

  it('the runtime client reads only its own settings: a wrong server or S3 setting does not concern it', () => {
    const client = loadClientConfig({ BERTH_S3_REGION: 'bad region!', BERTH_LISTEN: 'nowhere', BERTH_DEFAULT_REGISTRY: 'registry.example:5000' });
    expect(client).to.include({ defaultRegistry: 'registry.example:5000', runtime: 'auto' });
    expect(client).to.not.have.any.keys('listen', 's3', 's3Region');
    expect(() => loadClientConfig({ BERTH_RUNTIME: 'docker' })).to.throw(ConfigError, /BERTH_RUNTIME/);
  });
});

describe('configuration: blob redirects to presigned S3 URLs', () => {
  const onS3 = { BERTH_S3_BUCKET: 'registry-blobs' };

  it('are off by default; on, their URLs live 300 seconds unless told otherwise', () => {
    expect(loadConfig(onS3).s3).to.deep.include({ bucket: 'registry-blobs', redirect: undefined });
    expect(loadConfig({ ...onS3, BERTH_S3_REDIRECT: 'true' }).s3).to.deep.include({ redirect: { ttlSeconds: 300, baseUrl: undefined } });
    const config = loadConfig({ ...onS3, BERTH_S3_REDIRECT: 'true', BERTH_S3_REDIRECT_TTL_SECONDS: '60', BERTH_S3_REDIRECT_BASE_URL: 'https://cdn.example.com' });
    expect(config.s3).to.deep.include({ redirect: { ttlSeconds: 60, baseUrl: 'https://cdn.example.com' } });
  });

  it('need S3 storage: without a bucket, start-up stops and says what to set', () => {
    expect(() => loadConfig({ BERTH_S3_REDIRECT: 'true' })).to.throw(ConfigError, /BERTH_S3_REDIRECT: .*need S3 storage: set BERTH_S3_BUCKET/);
  });

  for (const [variable, value, says] of [
    ['BERTH_S3_REDIRECT_TTL_SECONDS', '0', 'BERTH_S3_REDIRECT_TTL_SECONDS'],
    ['BERTH_S3_REDIRECT_TTL_SECONDS', '3601', 'BERTH_S3_REDIRECT_TTL_SECONDS'],
    ['BERTH_S3_REDIRECT_BASE_URL', 'https://cdn.example.com/registry', 'only a scheme and host'],
    ['BERTH_S3_REDIRECT_BASE_URL', 'https://cdn.example.com/?a=b', 'only a scheme and host'],
    ['BERTH_S3_REDIRECT_BASE_URL', 'ftp://cdn.example.com', 'BERTH_S3_REDIRECT_BASE_URL'],
  ] as const) {
    it(`refuses ${variable}=${value} with a message that names it`, () => {
      expect(() => loadConfig({ ...onS3, BERTH_S3_REDIRECT: 'true', [variable]: value })).to.throw(ConfigError, says);
    });
  }

  it('refuse a CDN base URL that would do nothing (redirects off)', () => {
    expect(() => loadConfig({ ...onS3, BERTH_S3_REDIRECT_BASE_URL: 'https://cdn.example.com' })).to.throw(
      ConfigError,
      'BERTH_S3_REDIRECT_BASE_URL: has no effect unless BERTH_S3_REDIRECT=true',
    );
  });

  it('refuse BERTH_DIRECT_IO=true with S3 (blobs are not in BERTH_DATA), default to auto, and the filesystem driver takes it', async () => {
    expect(() => loadConfig({ ...onS3, BERTH_DIRECT_IO: 'true' })).to.throw(ConfigError, 'BERTH_DIRECT_IO: has no effect with BERTH_S3_BUCKET');
    expect(loadConfig({}).directIo, 'by default the page cache\'s cost decides').to.equal('auto');
    expect(loadConfig(onS3).directIo).to.equal('auto');
    expect(loadConfig({ BERTH_DIRECT_IO: 'false' }).directIo).to.equal(false);
    expect(() => loadConfig({ BERTH_DIRECT_IO: 'sometimes' })).to.throw(ConfigError, 'BERTH_DIRECT_IO');
    const dir = await mkdtemp(join(tmpdir(), 'berth-direct-config-'));
    try {
      const driver = await createDriver(loadConfig({ BERTH_DIRECT_IO: 'true', BERTH_DATA: dir }));
      const before = directIO.bytesWritten;
      const writer = await driver.writer('/blob', false);
      await writer.write(Readable.from([Buffer.alloc(6 * 1024 * 1024, 1)]));
      await writer.commit();
      await writer.close();
      expect(directIO.bytesWritten - before, 'bytes written directly').to.be.at.least(4 * 1024 * 1024);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('move a presigned URL onto the CDN keeping its path and signed query byte for byte', () => {
    const presigned =
      'http://127.0.0.1:9000/bucket/team/blobs/sha256/ab/ab%2B~/data?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=00ff';
    expect(onBaseUrl(presigned, 'https://cdn.example.com:8443')).to.equal(
      'https://cdn.example.com:8443/bucket/team/blobs/sha256/ab/ab%2B~/data?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=00ff',
    );
    expect(onBaseUrl(presigned, 'https://cdn.example.com/')).to.match(/^https:\/\/cdn\.example\.com\/bucket\//);
  });
});
