import { expect } from 'chai';
import { useBerth } from '../helpers/berth.ts';
import { errorCode } from '../helpers/registry.ts';
import { waitFor } from '../helpers/wait.ts';

describe('base endpoint, health and metrics', () => {
  const suite = useBerth();
  const registry = suite.registry;

  it('GET /v2/ answers 200 with the API version header', async () => {
    const res = await registry.request('GET', '/v2/');
    expect(res.status).to.equal(200);
    expect(res.headers['docker-distribution-api-version']).to.equal('registry/2.0');
  });

  it('GET /v2 without the trailing slash works too', async () => {
    const res = await registry.request('GET', '/v2');
    expect(res.status).to.equal(200);
  });

  it('GET /healthz reports ok', async () => {
    const res = await registry.request('GET', '/healthz');
    expect(res.status).to.equal(200);
    expect(res.json).to.deep.equal({ status: 'ok' });
  });

  it('exposes Prometheus metrics for requests, latency, bytes and uploads', async () => {
    await registry.pushBlob('metrics/probe', 'some bytes for the metrics');
    const res = await registry.request('GET', '/metrics');
    expect(res.status).to.equal(200);
    expect(res.text).to.match(/berth_http_requests_total\{method="GET",route="base",status="200"\} \d+/);
    expect(res.text).to.match(/berth_http_requests_total\{method="POST",route="uploads",status="201"\} 1/);
    expect(res.text).to.include('berth_http_request_duration_seconds_bucket');
    expect(res.text).to.match(/berth_http_received_bytes_total \d+/);
    expect(res.text).to.match(/berth_http_received_bytes_total [1-9]/);
    expect(res.text).to.include('berth_http_sent_bytes_total');
    expect(res.text).to.include('berth_uploads_in_progress 0');
    expect(res.text, 'bytes written with O_DIRECT').to.match(/^berth_blob_direct_written_bytes \d+$/m);
  });

  it('exposes the process metrics (prom-client defaults, CPU counted from the process start)', async () => {
    const res = await registry.request('GET', '/metrics');
    for (const name of ['berth_process_start_time_seconds', 'berth_process_resident_memory_bytes', 'berth_nodejs_eventloop_lag_p99_seconds', 'berth_nodejs_heap_size_used_bytes', 'berth_nodejs_version_info', 'berth_process_open_fds']) {
      expect(res.text).to.match(new RegExp(`^${name}(\\{[^}]*\\})? \\d`, 'm'), name);
    }
    const cpu = (name: string) => Number(new RegExp(`^berth_${name} (\\S+)$`, 'm').exec(res.text)?.[1]);
    // The server loaded its modules and answered requests before this scrape: CPU was spent.
    expect(cpu('process_cpu_seconds_total')).to.be.greaterThan(0.1);
    expect(cpu('process_cpu_seconds_total')).to.be.closeTo(cpu('process_cpu_user_seconds_total') + cpu('process_cpu_system_seconds_total'), 1e-6);
  });

  it('every request gets a request id, echoed when the client sent a valid one', async () => {
    const own = await registry.request('GET', '/v2/', { headers: { 'X-Request-Id': 'trace-abc.123' } });
    expect(own.headers['x-request-id']).to.equal('trace-abc.123');
    const generated = await registry.request('GET', '/v2/', { headers: { 'X-Request-Id': 'bad id with spaces' } });
    expect(generated.headers['x-request-id']).to.match(/^[0-9a-f-]{36}$/);
    const logged = await waitFor(
      () => suite.berth.logs.map((l) => JSON.parse(l)).find((e) => e.reqId === 'trace-abc.123'),
      'the request log line',
    );
    expect(logged).to.include({ method: 'GET', path: '/v2/', status: 200, msg: 'request' });
  });

  it('an unknown endpoint under /v2 answers a spec-shaped 404', async () => {
    const res = await registry.request('GET', '/v2/foo/bar/baz');
    expect(res.status).to.equal(404);
    expect(errorCode(res)).to.equal('UNSUPPORTED');
  });

  it('a method the endpoint does not have answers 405 UNSUPPORTED with Allow', async () => {
    const res = await registry.request('PATCH', '/v2/some/repo/manifests/latest');
    expect(res.status).to.equal(405);
    expect(errorCode(res)).to.equal('UNSUPPORTED');
    expect(res.headers.allow).to.include('GET');
  });
});
