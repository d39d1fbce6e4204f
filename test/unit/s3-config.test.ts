import { expect } from 'chai';
import { createDriver } from '../../server/app.ts';
import { ConfigError, loadConfig } from '../../server/config.ts';
import { FilesystemDriver } from '../../storage/index.ts';
import { S3Driver } from '../../storage/s3.ts';

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
    expect(config).to.include({
      s3Bucket: 'registry-blobs',
      s3Endpoint: 'http://127.0.0.1:9000',
      s3Region: 'us-east-1',
      s3Prefix: 'team/registry',
      s3ForcePathStyle: true,
      s3PartSize: 16 * 1024 * 1024,
    });
    const driver = await createDriver(config);
    expect(driver.name).to.equal('s3');
    expect((driver as S3Driver).bucket).to.equal('registry-blobs');
    expect((driver as S3Driver).objectKey('/blobs/x')).to.equal('team/registry/blobs/x');
    (driver as S3Driver).client.destroy();
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
