// Integration test with the real SDKs (tests/check_npm.sh runs it; prints TAP).
// Starts `crmstream serve` on 127.0.0.1 with a free port and write keys, sends
// events through @segment/analytics-node 3.1.0 and @rudderstack/rudder-sdk-node
// 3.0.13 (gzip on, its default), and checks through the public API that every
// event was stored exactly once with the right account and type: each
// "Lead Created" track call must become exactly one lead (GET /api/v1/leads)
// with its account, and the server's own counters (GET /metrics) must show
// every event accepted, none duplicated, none rejected.
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Analytics: SegmentAnalytics } = require('@segment/analytics-node');
const RudderAnalytics = require('@rudderstack/rudder-sdk-node');

const bin = process.env.CRMSTREAM_BIN || path.resolve(__dirname, '../../build/crmstream');
const N = 40; // lead events per SDK
let n = 0, failed = 0;
function ok(cond, name, detail) {
  n++;
  if (cond) console.log(`ok ${n} - ${name}`);
  else { failed++; console.log(`not ok ${n} - ${name}`); if (detail !== undefined) console.log(`# ${JSON.stringify(detail)}`); }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, timeoutMs = 30000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25); // polling a condition with a deadline, not a sleep as synchronisation
  }
}

async function leads(base) {
  const all = [];
  let cursor = '';
  for (;;) {
    const r = await fetch(`${base}/api/v1/leads?limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
    const j = await r.json();
    all.push(...j.items);
    if (!j.next_cursor) return all;
    cursor = j.next_cursor;
  }
}

async function metrics(base) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = {};
  for (const line of text.split('\n')) {
    const [k, v] = line.split(' ');
    if (!k || k.startsWith('#')) continue;
    const name = k.split('{')[0]; // sum a family over its label sets
    m[name] = (m[name] || 0) + Number(v);
  }
  return m;
}

async function main() {
  console.log('1..9');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crmstream-npm-'));
  fs.writeFileSync(path.join(dir, 'config.yaml'), [
    'log:', '  partitions: 4',
    'auth:', '  write_keys:',
    '    - {name: segment-web, key: seg-key}',
    '    - {name: rudder-srv, key: rud-key}',
    'routing:', '  reps:', '    - {id: rep_a}', '    - {id: rep_b}', '',
  ].join('\n'));
  const data = path.join(dir, 'data');
  const log = fs.openSync(path.join(dir, 'serve.log'), 'a');
  const srv = spawn(bin, ['serve', '--config', path.join(dir, 'config.yaml'), '--data', data, '--http', '127.0.0.1:0'],
    { stdio: ['ignore', log, log] });
  let exited = null;
  srv.on('exit', (code, sig) => { exited = { code, sig }; });
  try {
    const addr = await until('http.addr', () => {
      if (exited) throw new Error(`server exited: ${JSON.stringify(exited)}`);
      try { return fs.readFileSync(path.join(data, 'http.addr'), 'utf8').trim(); } catch { return null; }
    });
    const base = `http://${addr}`;

    // A wrong key is refused: 401 with the JSON error.
    const bad = await fetch(`${base}/v1/batch`, { method: 'POST', headers: { Authorization: 'Basic ' + Buffer.from('nope:').toString('base64') }, body: '{"batch":[]}' });
    ok(bad.status === 401 && (await bad.json()).error.code === 'unauthorized', 'unknown write key gets 401');

    // Segment: Basic auth (and writeKey in the body), ungzipped JSON.
    const seg = new SegmentAnalytics({ writeKey: 'seg-key', host: base, path: '/v1/batch', maxEventsInBatch: 15, flushInterval: 50 });
    const segErrors = [];
    seg.on('error', (e) => segErrors.push(String(e && (e.reason || e.code || e))));
    for (let i = 0; i < N; i++) {
      seg.track({ userId: `seg_u${i}`, event: 'Lead Created', properties: { email: `seg${i}@segco.example`, company: 'SegCo' }, context: { groupId: 'acc_seg' } });
      seg.track({ userId: `seg_u${i}`, event: 'FeatureUsed', properties: { feature: 'export_csv' }, context: { groupId: 'acc_seg' } });
    }
    seg.identify({ userId: 'seg_u1', traits: { email: 'seg1@segco.example', title: 'CTO' }, context: { groupId: 'acc_seg' } });
    seg.group({ userId: 'seg_u1', groupId: 'acc_seg', traits: { name: 'SegCo', plan_tier: 'pro' } });
    await seg.closeAndFlush({ timeout: 20000 });
    ok(segErrors.length === 0, 'Segment SDK delivered without errors', segErrors);

    // RudderStack: gzip on (default), form content type, originalTimestamp + per-event sentAt.
    const rudErrors = [];
    const rud = new RudderAnalytics('rud-key', { dataPlaneUrl: base, flushAt: 15, flushInterval: 50, logLevel: 'error',
      errorHandler: (e) => rudErrors.push(String(e && e.message || e)) });
    ok(rud.gzip === true, 'RudderStack SDK gzips its bodies');
    for (let i = 0; i < N; i++) {
      rud.track({ anonymousId: `rud_a${i}`, event: 'Lead Created', properties: { email: `rud${i}@rudco.example` }, context: { groupId: 'acc_rud' } });
      rud.track({ userId: `rud_u${i}`, event: 'FeatureUsed', properties: { feature: 'reports' }, context: { groupId: 'acc_rud' } });
    }
    await new Promise((resolve, reject) => rud.flush((err) => (err ? reject(err) : resolve())));
    ok(rudErrors.length === 0, 'RudderStack SDK delivered without errors', rudErrors);

    // Exactly one lead per Lead Created call, with its account.
    const all = await until('leads', async () => { const l = await leads(base); return l.length >= 2 * N ? l : null; });
    const byEmail = new Map();
    for (const l of all) byEmail.set(l.email, (byEmail.get(l.email) || []).concat([l]));
    let dupes = 0, missing = 0, wrongAcc = 0;
    for (const [prefix, acc] of [['seg', 'acc_seg'], ['rud', 'acc_rud']])
      for (let i = 0; i < N; i++) {
        const got = byEmail.get(`${prefix}${i}@${prefix}co.example`) || [];
        if (got.length === 0) missing++;
        if (got.length > 1) dupes++;
        if (got.some((l) => l.account_id !== acc)) wrongAcc++;
      }
    ok(missing === 0 && all.length === 2 * N, `every Lead Created track call became a lead (${all.length})`, { missing, total: all.length });
    ok(dupes === 0, 'no lead twice');
    ok(wrongAcc === 0, 'each lead has the account from context.groupId');

    // The server's counters: every event accepted once, nothing duplicated or rejected.
    const m = await metrics(base);
    const sent = 2 * N + 2 + 2 * N;
    ok(m.crmstream_events_accepted_total === sent, `accepted = ${sent} events sent`, m);
    ok((m.crmstream_events_duplicate_total || 0) === 0 && (m.crmstream_events_rejected_total || 0) === 0,
      'no duplicates, no rejections', m);
  } catch (e) {
    failed++;
    console.log(`not ok ${++n} - ${e.message}`);
  } finally {
    srv.kill('SIGTERM');
    await until('server exit', () => exited !== null, 20000).catch(() => srv.kill('SIGKILL'));
    if (!failed) fs.rmSync(dir, { recursive: true, force: true });
    else console.log(`# server data and log kept in ${dir}`);
  }
  process.exit(failed ? 1 : 0);
}
main();
