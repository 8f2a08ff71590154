// A Node.js HTTP server that knows nothing of stallwatch: GET /busy computes
// for 300 ms on the event loop (libuv's epoll), which stallwatch-watch
// reports (its head line names a JIT address: V8's code has no symbols);
// GET /quit ends the server.
//
//   stallwatch-watch -- node node_busy_server.js PORT
const http = require('http');

function busy(ms) {
  const end = Date.now() + ms;
  let x = 0;
  while (Date.now() < end) x += Math.sqrt(x + 1);
  return x;
}

const server = http.createServer((req, res) => {
  if (req.url === '/busy') {
    busy(300);
    res.end('busy done\n');
  } else if (req.url === '/quit') {
    res.end('bye\n');
    server.close();
  } else {
    res.end('ok\n');
  }
});
server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
