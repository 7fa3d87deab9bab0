// A webhook receiver for crmstream's tests (T16): verifies every request with
// the independent npm `standardwebhooks` library (pinned in package.json).
//
//   node receiver.js SECRET     listens on 127.0.0.1, a free port; prints the
//                               port on stdout; exits when stdin closes.
//
// POST /verify  verify the body as received          -> 200 {"ok":true,"id":..}
// POST /tamper  flip one byte of the body, then verify -> must be 400
// Any failure: 400 {"error":"<the library's message>"}.
// GET /log      every verification so far: [{path,id,ok,error}]
"use strict";
const http = require("http");
const { Webhook } = require("standardwebhooks");

const secret = process.argv[2];
if (!secret) {
  process.stderr.write("usage: node receiver.js SECRET\n");
  process.exit(2);
}
const wh = new Webhook(secret);
const log = [];
const MAX_BODY = 1 << 20;

const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/log") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(log));
    return;
  }
  const chunks = [];
  let size = 0;
  req.on("data", (c) => {
    size += c.length;
    if (size <= MAX_BODY) chunks.push(c);
  });
  req.on("end", () => {
    let body = Buffer.concat(chunks);
    const path = req.url;
    if (path === "/tamper" && body.length > 0) {
      body = Buffer.from(body); // a copy: the original stays as received
      body[body.length - 2] ^= 0x01;
    }
    const rec = { path, id: req.headers["webhook-id"] || null, ok: false, error: null };
    try {
      wh.verify(body.toString("utf8"), req.headers);
      rec.ok = true;
    } catch (e) {
      rec.error = String(e && e.message ? e.message : e);
    }
    log.push(rec);
    if (rec.ok) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ ok: true, id: rec.id }));
    } else {
      res.writeHead(400, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: rec.error }));
    }
  });
});

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(server.address().port + "\n");
});
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
