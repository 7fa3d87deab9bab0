// Integration test of POST /v1/cloudevents with the real npm `cloudevents`
// 10.0.0 SDK (tests/check_cloudevents.sh runs it; prints TAP). Starts
// `crmstream serve` on 127.0.0.1 with a free port and a write key, emits
// events with emitterFor(httpTransport(...)) in binary mode (ce-* headers,
// chunked body: the SDK's transport sends no Content-Length) and structured
// mode, plus one batch (application/cloudevents-batch+json built from the
// SDK's CloudEvent objects), and checks through the public API that every
// event was stored exactly once with the right account, user and type:
// LeadCreated events become leads (GET /api/v1/leads) with their account;
// the other types are counted in crmstream_events_accepted_total with
// source="cloudevents" and their type label; nothing duplicated or rejected.
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { CloudEvent, emitterFor, httpTransport, Mode, HTTP } = require('cloudevents');

const bin = process.env.CRMSTREAM_BIN || path.resolve(__dirname, '../../build/crmstream');
const N = 20; // events per type and mode
const AUTH = { Authorization: 'Basic ' + Buffer.from('ce-key:').toString('base64') };
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

// Metric samples as { 'name{labels}': value }.
async function metrics(base) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return m;
}
const sum = (m, prefix) => Object.entries(m).filter(([k]) => k.startsWith(prefix)).reduce((s, [, v]) => s + v, 0);

async function main() {
  console.log('1..11');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crmstream-ce-'));
  fs.writeFileSync(path.join(dir, 'config.yaml'), [
    'log:', '  partitions: 4',
    'auth:', '  write_keys:', '    - {name: ce-emitter, key: ce-key}',
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
    const sink = `${base}/v1/cloudevents`;
    const binary = emitterFor(httpTransport(sink), { binding: HTTP, mode: Mode.BINARY });
    const structured = emitterFor(httpTransport(sink), { binding: HTTP, mode: Mode.STRUCTURED });

    // The SDK's binary message: what goes on the wire.
    const probe = HTTP.binary(new CloudEvent({ source: '/probe', type: 'x.T', accountid: 'a', data: { k: 1 } }));
    ok(probe.headers['ce-accountid'] === 'a' && probe.headers['ce-specversion'] === '1.0' &&
       /json/.test(probe.headers['content-type']), 'SDK binary mode puts attributes in ce-* headers', probe.headers);

    // No key: 401 (through the SDK's transport, which resolves with the answer).
    const noKey = await binary(new CloudEvent({ source: '/web', type: 'com.example.TrialActivated', accountid: 'acc_x', data: {} }));
    ok(/"unauthorized"/.test(noKey.body), 'an emitter without the write key gets 401', noKey.body);

    const answers = [];
    const lead = (mode, i) => new CloudEvent({
      source: `/signup/${mode}`, type: 'com.example.LeadCreated', accountid: `acc_${mode}`, userid: `${mode}_u${i}`,
      data: { email: `${mode}${i}@${mode}co.example`, company: `${mode} Co` },
    });
    const feature = (mode, i) => new CloudEvent({
      source: `/app/${mode}`, type: 'com.example.FeatureUsed', accountid: `acc_${mode}`, userid: `${mode}_u${i}`,
      data: { feature: 'export_csv' },
    });
    let first = null;
    for (let i = 0; i < N; i++) {
      const ev = lead('bin', i);
      if (!first) first = ev;
      answers.push(await binary(ev, { headers: AUTH }));
      answers.push(await binary(feature('bin', i), { headers: AUTH }));
      answers.push(await structured(lead('str', i), { headers: AUTH }));
      answers.push(await structured(feature('str', i), { headers: AUTH }));
    }
    const accepted = answers.filter((a) => { try { return JSON.parse(a.body).accepted === 1; } catch { return false; } });
    ok(accepted.length === 4 * N, `every emitted event answered accepted=1 (${accepted.length}/${4 * N})`,
      answers.filter((a) => !accepted.includes(a)).slice(0, 3).map((a) => a.body));

    // A batch of SDK events (the SDK has no batch emitter; its events serialize as JSON).
    const batch = [];
    for (let i = 0; i < N; i++) batch.push(new CloudEvent({
      source: '/billing', type: 'com.example.SubscriptionUpgraded', accountid: 'acc_bat', userid: `bat_u${i}`,
      data: { plan_tier: 'pro', mrr: 99 },
    }));
    const r = await fetch(sink, { method: 'POST', headers: { ...AUTH, 'Content-Type': 'application/cloudevents-batch+json' },
      body: JSON.stringify(batch) });
    const rj = await r.json();
    ok(r.status === 200 && rj.accepted === N && rj.rejected.length === 0, 'batch mode: every event accepted', rj);

    // Redelivery of the same events (same source + id): duplicates, no effect.
    const again = JSON.parse((await binary(first, { headers: AUTH })).body);
    const re = await fetch(sink, { method: 'POST', headers: { ...AUTH, 'Content-Type': 'application/cloudevents-batch+json' },
      body: JSON.stringify(batch) });
    const rej = await re.json();
    ok(rej.duplicates === N && rej.accepted === 0 && again.duplicates === 1,
      'the same events again (batch and binary): all duplicates', { rej, again });

    // A bad specversion through the SDK's structured message: 422 naming the attribute.
    const msg = HTTP.structured(new CloudEvent({ source: '/x', type: 'x.T', accountid: 'a' }));
    const badBody = JSON.parse(msg.body);
    badBody.specversion = '0.3';
    const bad = await fetch(sink, { method: 'POST', headers: { ...msg.headers, ...AUTH }, body: JSON.stringify(badBody) });
    const bj = await bad.json();
    ok(bad.status === 422 && bj.error.field === 'specversion', 'specversion 0.3 is refused naming specversion', bj);

    // Exactly one lead per LeadCreated event, with its account and email.
    const all = await until('leads', async () => { const l = await leads(base); return l.length >= 2 * N ? l : null; });
    const byEmail = new Map();
    for (const l of all) byEmail.set(l.email, (byEmail.get(l.email) || []).concat([l]));
    let dupes = 0, missing = 0, wrongAcc = 0;
    for (const mode of ['bin', 'str'])
      for (let i = 0; i < N; i++) {
        const got = byEmail.get(`${mode}${i}@${mode}co.example`) || [];
        if (got.length === 0) missing++;
        if (got.length > 1) dupes++;
        if (got.some((l) => l.account_id !== `acc_${mode}`)) wrongAcc++;
      }
    ok(missing === 0 && all.length === 2 * N, `every LeadCreated event became one lead (${all.length})`, { missing, total: all.length });
    ok(dupes === 0 && wrongAcc === 0, 'no lead twice; each lead has the account from the accountid extension', { dupes, wrongAcc });

    // The server's counters, by source and type.
    const m = await metrics(base);
    const acc = (type) => m[`crmstream_events_accepted_total{source="cloudevents",type="${type}"}`] || 0;
    ok(acc('LeadCreated') === 2 * N && acc('FeatureUsed') === 2 * N && acc('SubscriptionUpgraded') === N,
      'accepted by type with source="cloudevents": LeadCreated, FeatureUsed, SubscriptionUpgraded',
      Object.fromEntries(Object.entries(m).filter(([k]) => k.startsWith('crmstream_events_accepted_total'))));
    ok(sum(m, 'crmstream_events_accepted_total') === 5 * N, `nothing else accepted (${5 * N})`);
    ok(sum(m, 'crmstream_events_duplicate_total{source="cloudevents"') === N + 1 &&
       sum(m, 'crmstream_events_rejected_total{source="cloudevents"') === 1,
      'duplicates: the redelivered batch and event; rejected: the bad specversion only',
      Object.fromEntries(Object.entries(m).filter(([k]) => /events_(duplicate|rejected)/.test(k))));
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
